"""Built-in artifacts: a run copied into the package with its manifest, loaded as builtin:NAME, and
refused in one line when a file no longer matches."""

import json

import pytest
import torch
from click.testing import CliRunner
from tiny import TINY_BASE, TINY_TOY

import amicl.common.artifacts as artifacts
from amicl.cli import amicl
from amicl.common.io import load_pickle, read_csv, save_torch


def run(*args):
    return CliRunner().invoke(amicl, [str(a) for a in args])


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "ROOT", tmp_path / "artifacts")
    return tmp_path / "artifacts"


def test_a_base_model_ships_and_loads_by_name(tmp_path, root):
    assert run("namm", "train-base", *TINY_BASE, "--out", tmp_path / "base").exit_code == 0
    r = run("artifacts", "add", "tiny-base", tmp_path / "base", "--files", "base.pt")
    assert r.exit_code == 0, r.output
    entry = artifacts.manifest(root)["tiny-base"]
    assert entry["kind"] == "namm-base" and set(entry["files"]) == {"config.json", "base.pt"}
    assert entry["command"] and len(entry["files"]["base.pt"]["sha256"]) == 64  # argv of the run (here pytest)
    assert "builtin:tiny-base  namm-base" in run("artifacts", "list").stdout
    shipped, trained = torch.load(root / "tiny-base" / "base.pt"), torch.load(tmp_path / "base" / "base.pt")
    assert "opt" in trained and not set(artifacts.RESUME_ONLY) & set(shipped)
    assert shipped["model"].keys() == trained["model"].keys()
    assert all(torch.equal(v, trained["model"][k]) for k, v in shipped["model"].items())
    ev = ["--policy", "tova", "--budget", 16, "--tasks", "needle", "--prompts", 2, "--context", 64, "--n-up", 32]
    r = run("namm", "eval", "--base", "builtin:tiny-base", *ev, "--metric", "prob", "--out", tmp_path / "ev")
    assert r.exit_code == 0, r.output
    (root / "tiny-base" / "base.pt").write_bytes(b"tampered")
    r = run("namm", "eval", "--base", "builtin:tiny-base", *ev, "--out", tmp_path / "ev2")
    assert r.exit_code == 2 and "does not match the manifest" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("namm", "eval", "--base", "builtin:nothing", *ev, "--out", tmp_path / "ev3")
    assert r.exit_code == 2 and "no built-in artifact 'nothing'" in r.stderr


def test_add_refuses_what_is_not_a_run(tmp_path, root):
    (tmp_path / "x").mkdir()
    r = run("artifacts", "add", "x", tmp_path / "x", "--files", "base.pt")
    assert r.exit_code == 2 and "has no config.json" in r.stderr
    for bad in ("../x", "manifest.json", "x" * 300, ".hidden", ""):
        r = run("artifacts", "add", bad, tmp_path / "x", "--files", "base.pt")
        assert r.exit_code == 2 and "plain words" in r.stderr and len(r.stderr.strip().splitlines()) == 1, bad


def test_add_never_overwrites_an_artifact_or_reads_outside_the_run(tmp_path, root):
    assert run("namm", "train-base", *TINY_BASE, "--out", tmp_path / "base").exit_code == 0
    assert run("artifacts", "add", "b", tmp_path / "base", "--files", "base.pt").exit_code == 0
    before = {p.name: p.read_bytes() for p in (root / "b").iterdir()}, (root / "manifest.json").read_bytes()
    r = run("artifacts", "add", "b", tmp_path / "base", "--files", "base.pt")
    assert r.exit_code == 2 and "already exists" in r.stderr
    r = run("artifacts", "add", "c", tmp_path / "base", "--files", "../base/base.pt")
    assert r.exit_code == 2 and "inside the run folder" in r.stderr and not (root / "c").exists()
    assert ({p.name: p.read_bytes() for p in (root / "b").iterdir()}, (root / "manifest.json").read_bytes()) == before


def test_the_recorded_command_holds_no_machine_path():
    argv = ["/x/.venv/bin/amicl", "namm", "evolve", "--base", "/runs/base", "--out", "/runs/evo", "--resume"]
    assert artifacts.relative_command(argv) == "amicl namm evolve --base ../base --out . --resume"
    assert artifacts.relative_command([]) is None


def test_a_trained_toy_ships_and_reproduces_its_history(tmp_path, root):
    r = run("transformer", "compare", "--streams", "none,V", "--steps", 4, *TINY_TOY, "--out", tmp_path / "toy")
    assert r.exit_code == 0, r.output
    assert run("artifacts", "add", "toy", tmp_path / "toy", "--files", "checkpoint.pt").exit_code == 0
    r = run("transformer", "evaluate", "builtin:toy", "--threads", 1, "--device", "cpu", "--out", tmp_path / "ev")
    assert r.exit_code == 0, r.output
    rows = read_csv(tmp_path / "ev" / "eval.csv")
    last = [h for h in read_csv(tmp_path / "toy" / "history.csv") if h["step"] == "4"]
    assert len(rows) == len(last) == 4  # 2 arms x 2 seeds
    for a, b in zip(rows, last):
        assert {k: a[k] for k in ("arm", "seed", "ic", "ic2", "iw")} == {
            k: b[k] for k in ("arm", "seed", "ic", "ic2", "iw")
        }
    assert r.output.count("| yes |") == 4 and "| no |" not in r.output
    # a checkpoint edited behind the package's back no longer matches its digest: refused, not evaluated
    state = torch.load(tmp_path / "toy" / "checkpoint.pt", weights_only=False)  # the digest stays in it
    for h in state["history"]:
        h["ic"] = -1.0
    torch.save(state, tmp_path / "toy" / "checkpoint.pt")
    r = run("transformer", "evaluate", tmp_path / "toy", "--threads", 1, "--device", "cpu", "--out", tmp_path / "ev2")
    assert r.exit_code == 2 and "no longer matches the digest" in r.stderr
    # a well-formed checkpoint whose history does not match its weights is reported, not hidden
    save_torch(tmp_path / "toy" / "checkpoint.pt", state)
    r = run("transformer", "evaluate", tmp_path / "toy", "--threads", 1, "--device", "cpu", "--out", tmp_path / "ev4")
    assert r.exit_code == 0 and r.output.count("| no |") == 4
    r = run("transformer", "evaluate", tmp_path / "ev", "--out", tmp_path / "ev3")
    assert r.exit_code == 2 and "streams" in r.stderr


def test_an_evolved_namm_ships_without_its_search_state_and_scores_the_same(tmp_path, root):
    base, evo = tmp_path / "base", tmp_path / "evo"
    assert run("namm", "train-base", *TINY_BASE, "--out", base).exit_code == 0
    small = ["--context", 64, "--n-up", 32, "--metric", "prob", "--threads", 1]
    args = ["--stages", "kv_retrieval", "--generations", 1, "--popsize", 3, "--prompts", 2, "--dev-prompts", 2]
    r = run("namm", "evolve", "--base", base, *args, "--dev-every", 1, *small, "--out", evo)
    assert r.exit_code == 0, r.output
    for name, folder, f in (("b", base, "base.pt"), ("n", evo, "evolution.pkl")):
        assert run("artifacts", "add", name, folder, "--files", f).exit_code == 0
    assert "engine" in load_pickle(evo / "evolution.pkl") and "engine" not in load_pickle(root / "n" / "evolution.pkl")
    assert artifacts.manifest(root)["n"]["files"]["evolution.pkl"]["bytes"] < (evo / "evolution.pkl").stat().st_size
    ev = ["--policy", "namm", "--tasks", "kv_retrieval", "--prompts", 2, *small]
    assert run("namm", "eval", "--base", base, "--namm", evo, *ev, "--out", tmp_path / "a").exit_code == 0
    r = run("namm", "eval", "--base", "builtin:b", "--namm", "builtin:n", *ev, "--out", tmp_path / "s")
    assert r.exit_code == 0, r.output
    assert read_csv(tmp_path / "a" / "eval.csv") == read_csv(tmp_path / "s" / "eval.csv")


def test_a_pending_artifact_is_refused_in_one_line_until_it_is_added(tmp_path, root):
    assert run("namm", "train-base", *TINY_BASE, "--out", tmp_path / "base").exit_code == 0
    (root / "p").mkdir(parents=True)
    (root / "p" / "config.json").write_text("{}")  # what a clone holds of an artifact whose weights are missing
    why = "its weights were never committed"
    (root / "manifest.json").write_text(
        json.dumps({"artifacts": {}, "pending": {"p": {"kind": "namm-base", "why": why}}})
    )
    assert f"builtin:p  namm-base  not shipped in this release: {why}" in run("artifacts", "list").stdout
    ev = ["--policy", "tova", "--budget", 16, "--tasks", "needle", "--prompts", 2, "--context", 64, "--n-up", 32]
    r = run("namm", "eval", "--base", "builtin:p", *ev, "--out", tmp_path / "ev")
    assert r.exit_code == 2 and f"builtin:p is not shipped in this release: {why}" in r.stderr
    assert run("artifacts", "add", "p", tmp_path / "base", "--files", "base.pt").exit_code == 0
    assert "p" in artifacts.manifest(root) and not artifacts.pending(root)
    assert run("namm", "eval", "--base", "builtin:p", *ev, "--metric", "prob", "--out", tmp_path / "ev2").exit_code == 0


def test_the_manifest_records_every_session_of_a_resumed_run(tmp_path, root, monkeypatch):
    import amicl.common.io as io

    out = tmp_path / "base"
    for started, extra in (("2099-01-01T00:00:00+0000", []), ("2099-01-02T00:00:00+0000", ["--resume"])):
        argv = ["/abs/bin/amicl", "namm", "train-base", "--steps", "1" if not extra else "2", "--out", str(out), *extra]
        monkeypatch.setattr(io.sys, "argv", argv)
        monkeypatch.setattr(io, "_PROCESS_STARTED", started)
        r = run("namm", "train-base", *TINY_BASE, "--steps", 1 if not extra else 2, "--out", out, *extra)
        assert r.exit_code == 0, r.output
    assert run("artifacts", "add", "two-sessions", out, "--files", "base.pt").exit_code == 0
    sessions = artifacts.manifest(root)["two-sessions"]["sessions"]
    assert [s["command"] for s in sessions] == [
        "amicl namm train-base --steps 1 --out .",
        "amicl namm train-base --steps 2 --out . --resume",
    ]
    assert all(s["commit"] == io.run_metadata()["git_sha"] and s["version"] for s in sessions)

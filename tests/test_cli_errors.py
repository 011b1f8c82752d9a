"""Everything a user can get wrong at the command line gives one line on stderr that names the option,
exit code 2 and no traceback, before any heavy work; folders of the wrong kind, damaged files and busy
folders included."""

import json
import os

import pytest
from click.testing import CliRunner
from tiny import TINY_BASE

from amicl.cli import amicl

TINY_TASK = ["--K", 8, "--L", 8, "--N", 2, "--Nmax", 2, "--D", 16, "--B", 0, "--p_B", 0, "--p_C", 0]
TINY_TRAIN = [
    *TINY_TASK,
    "--steps",
    2,
    "--eval-every",
    1,
    "--checkpoint-every",
    1,
    "--eval-size",
    10,
    "--batch",
    4,
    "--threads",
    1,
]


def run(*args):
    return CliRunner().invoke(amicl, [str(a) for a in args])


def one_line_error(r, needle: str, code: int = 2):
    assert r.exit_code == code, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], r.output
    assert "Traceback" not in r.output


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A real memory sweep, an empty folder, a plain file, and labelled folders of every other kind."""
    root = tmp_path_factory.mktemp("folders")
    r = run("memory", "sweep", "--trials", 10, "--grid", "a=1,2", "--out", root / "sweep")
    assert r.exit_code == 0, r.output
    (root / "empty").mkdir()
    (root / "afile").write_text("x")
    for kind in ("streams", "namm-base", "namm-evolve", "namm-eval", "theory-phase"):
        (root / kind).mkdir()
        (root / kind / "config.json").write_text(json.dumps({"kind": kind}))
    return root


CASES = [
    # memory
    (["memory", "run", "--a", "-1"], "a must be"),
    (["memory", "run", "--similarity", "cosine"], "--similarity"),
    (["memory", "run", "--test-set", "iw"], "--test-set does not apply"),
    (["memory", "run", "--task", "reddy", "--T", "20"], "--T does not apply"),
    (["memory", "run", "--D", "10000000"], "needs about"),
    (["memory", "run", "--trials", "0"], "--trials"),
    (["memory", "run", "--trials", "1000000000000"], "lower --trials"),
    (["memory", "sweep", "--out", "{tmp}/s", "--grid", "a=1", "--grid", "a=2"], "--grid names a twice"),
    (["memory", "sweep", "--out", "{tmp}/s", "--grid", "a=1,2", "--a", "5"], "--a is also swept"),
    (["memory", "sweep", "--out", "{tmp}/s", "--grid", "a=1,,"], "an empty item"),
    (["memory", "sweep", "--out", "{tmp}/s", "--grid", "zeta=1"], "cannot sweep"),
    (["memory", "sweep", "--out", "{f}/streams", "--grid", "a=1"], "holds a streams run"),
    (["memory", "sweep", "--out", "{f}/sweep", "--grid", "a=1"], "already holds a memory-sweep run"),
    (["memory", "sweep", "--out", "{f}/afile/sub", "--grid", "a=1"], "cannot create"),
    (["memory", "matrices", "--out", "{tmp}/m", "--T", "5"], "T must be even"),
    (["figures", "amicl", "{f}/streams"], "no AMICL result folders"),
    (["figures", "amicl", "/nonexistent"], "RESULTS"),
    (["reproduce", "amicl", "--trials", "0"], "--trials"),
    # transformer
    (["transformer", "train", "--out", "{tmp}/t", "--steps", "-5"], "steps must be"),
    (["transformer", "train", "--out", "{tmp}/t", "--lr", "0"], "lr must be"),
    (["transformer", "compare", "--out", "{tmp}/t", "--streams", "V,V"], "--streams"),
    (["transformer", "compare", "--out", "{tmp}/t", "--streams", "V,Z"], "--streams"),
    (["transformer", "compare", "--out", "{tmp}/t", "--streams", "V,,"], "--streams"),
    (["transformer", "train", "--out", "{tmp}/t", "--checkpoint-every", "300"], "multiple of eval_every"),
    (["transformer", "compare", "--out", "{tmp}/t", "--streams", "none,V:learn"], "run of their own"),
    (["transformer", "compare", "--out", "{tmp}/t", "--streams", "none,V:bogus"], "unknown option"),
    (["transformer", "compare", "--out", "{tmp}/t", "--streams", "none:detach"], "takes no options"),
    (["transformer", "compare", "--out", "{tmp}/t", "--streams", "V:lam=x"], "lam must be a number"),
    (["transformer", "train", "--out", "{tmp}/t", "--init", "jax"], "--init"),
    (["transformer", "train", "--out", "{tmp}/t", "--threshold", "1.5"], "threshold"),
    (["transformer", "compare", "--out", "{tmp}/t", "--streams", "none,V", "--stream-lambda", "nan"], "stream lambda"),
    (["transformer", "train", "--out", "{tmp}/t", "--stream-lambda", "0.5"], "--stream-lambda applies to stream arms"),
    (["transformer", "train", "--out", "{tmp}/t", "--K", "10"], "L must divide K"),
    (["transformer", "train", "--out", "{tmp}/t", "--device", "tpu"], "--device"),
    (["transformer", "train", "--out", "{tmp}/t", "--threads", "0"], "--threads"),
    (["transformer", "train", "--out", "{f}/empty", "--resume"], "--resume: no checkpoint.pt"),
    (["transformer", "train", "--out", "{f}/sweep"], "holds a memory-sweep run"),
    (["transformer", "join", "{f}/sweep", "{f}/streams", "--out", "{tmp}/j"], "expected a streams"),
    (["transformer", "join", "{f}/streams", "{f}/streams", "--out", "{tmp}/j"], "is given twice"),
    (["transformer", "join", "{f}/streams", "--out", "{tmp}/j"], "at least two"),
    (["figures", "streams", "{f}/sweep"], "holds a memory-sweep run; expected a streams"),
    (["figures", "phase", "{f}/theory-phase"], "has not finished (no phase.csv)"),
    # namm
    (["namm", "train-base", "--out", "{tmp}/b", "--steps", "0"], "steps must be"),
    (["namm", "train-base", "--out", "{tmp}/b", "--heads", "3"], "n_head must divide"),
    (["namm", "train-base", "--out", "{tmp}/b", "--tasks", "copy"], "unknown task"),
    (["namm", "train-base", "--out", "{tmp}/b", "--stream", "W"], "--stream"),
    (["namm", "train-base", "--out", "{tmp}/b", "--tasks", "needle,,"], "--tasks"),
    (["namm", "train-base", "--out", "{tmp}/b", "--min-context", "512", "--max-context", "128"], "min_context"),
    (["namm", "train-base", "--out", "{f}/namm-evolve"], "holds a namm-evolve run"),
    (["namm", "evolve", "--base", "{f}/empty", "--out", "{tmp}/e"], "holds no run"),
    (["namm", "evolve", "--base", "{f}/namm-evolve", "--out", "{tmp}/e"], "expected a namm-base"),
    (["namm", "evolve", "--base", "{f}/namm-base", "--out", "{tmp}/e", "--generations", "1,x"], "--generations"),
    (["namm", "evolve", "--base", "{f}/namm-base", "--out", "{tmp}/e", "--stages", "needle;"], "--stages"),
    (["namm", "evolve", "--base", "{f}/namm-base", "--out", "{tmp}/e", "--n-up", "40"], "multiple of 16"),
    (["namm", "evolve", "--base", "{f}/namm-base", "--out", "{tmp}/e", "--popsize", "1"], "popsize"),
    (["namm", "evolve", "--base", "{f}/namm-base", "--out", "{tmp}/e", "--scorer", "tcn"], "--scorer"),
    (["namm", "evolve", "--base", "{f}/namm-base", "--out", "{f}/streams"], "holds a streams run"),
    (["namm", "eval", "--base", "{f}/namm-base", "--out", "{tmp}/v", "--policy", "h2o"], "needs --budget"),
    (
        [
            "namm",
            "eval",
            "--base",
            "{f}/namm-base",
            "--out",
            "{tmp}/v",
            "--policy",
            "full",
            "--namm",
            "{f}/namm-evolve",
        ],
        "--namm RUN goes with --policy namm",
    ),
    (["namm", "eval", "--base", "{f}/namm-base", "--out", "{tmp}/v", "--policy", "namm"], "--namm RUN goes with"),
    (
        ["namm", "eval", "--base", "{f}/namm-base", "--out", "{tmp}/v", "--policy", "h2o", "--budget-fraction", "1.5"],
        "--budget-fraction",
    ),
    (
        [
            "namm",
            "eval",
            "--base",
            "{f}/namm-base",
            "--out",
            "{tmp}/v",
            "--policy",
            "h2o",
            "--budget",
            "10",
            "--budget-fraction",
            "0.5",
        ],
        "only one of",
    ),
    (["namm", "eval", "--base", "{f}/namm-base", "--out", "{tmp}/v", "--policy", "h2o", "--budget", "0"], "budget"),
    (["namm", "eval", "--base", "{f}/namm-base", "--out", "{tmp}/v", "--policy", "full", "--prompts", "0"], "prompts"),
    (
        ["namm", "eval", "--base", "{f}/namm-base", "--out", "{tmp}/v", "--policy", "snapkv", "--budget", "8"]
        + ["--kernel", "4"],
        "kernel must be odd",
    ),
    (["namm", "eval", "--base", "{f}/namm-base", "--out", "{tmp}/v", "--policy", "tova"], "needs --budget"),
    (["namm", "eval", "--base", "{f}/sweep", "--out", "{tmp}/v", "--policy", "full"], "expected a namm-base"),
    (
        ["namm", "eval", "--base", "{f}/namm-base", "--out", "{tmp}/v", "--policy", "h2o", "--match", "{f}/streams"],
        "expected a namm-eval",
    ),
    (["namm", "table", "{f}/sweep"], "expected a namm-eval"),
    (["namm", "table", "{f}/namm-eval", "{f}/namm-eval"], "given twice"),
    (["figures", "namm", "{f}/streams", "--out", "{tmp}/fig"], "expected a namm-evolve or namm-eval"),
    (["nope"], "No such command"),
]


@pytest.mark.parametrize("args, needle", CASES, ids=[" ".join(a[:2]) + f" [{i}]" for i, (a, _) in enumerate(CASES)])
def test_bad_input_gives_one_line_exit_2_and_writes_nothing(args, needle, folders, tmp_path):
    before = sorted(p.relative_to(folders) for p in folders.rglob("*"))
    r = run(*[a.format(f=folders, tmp=tmp_path) for a in args])
    one_line_error(r, needle)
    assert sorted(p.relative_to(folders) for p in folders.rglob("*") if p.name != ".lock") == [
        p for p in before if p.name != ".lock"
    ]
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def lock_holder(folder, kind: str, resume: bool = False):
    """A child process that claims ``folder`` and sleeps holding its lock (kill it to end)."""
    import subprocess
    import sys

    code = (
        "import time; from amicl.common.runs import claim_run_folder; "
        f"claim_run_folder({str(folder)!r}, {kind!r}, resume={resume}); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_not(tmp_path):
    from amicl.common.runs import RunFolderError, claim_run_folder, writer_pid

    out = tmp_path / "run"
    with claim_run_folder(out, "memory-sweep"):
        assert writer_pid(out) == os.getpid()
        with pytest.raises(RunFolderError, match=f"being written by process {os.getpid()}"):
            claim_run_folder(out, "memory-sweep")
        one_line_error(run("memory", "sweep", "--grid", "a=1", "--trials", 5, "--out", out), "being written by process")
    assert writer_pid(out) is None
    # a writer killed with SIGKILL leaves its lock file behind, but not its lock
    proc = lock_holder(out / "k", "memory-sweep")
    assert writer_pid(out / "k") == proc.pid
    one_line_error(run("memory", "sweep", "--grid", "a=1", "--trials", 5, "--out", out / "k"), f"process {proc.pid}")
    proc.kill()
    proc.wait()
    assert (out / "k" / ".lock").exists() and writer_pid(out / "k") is None
    r = run("memory", "sweep", "--grid", "a=1", "--trials", 5, "--out", out / "k")
    assert r.exit_code == 0, r.output


def test_a_reader_refuses_a_folder_being_written(folders):
    proc = lock_holder(folders / "streams", "streams", resume=True)
    try:
        one_line_error(run("figures", "streams", folders / "streams"), "is being written by process")
    finally:
        proc.kill()
        proc.wait()


def damage(path, how: str) -> None:
    import numpy as np

    data = path.read_bytes()
    path.write_bytes(
        {"empty": b"", "random bytes": np.random.default_rng(0).bytes(len(data)), "truncated": data[: len(data) // 2]}[
            how
        ]
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny stream run, base model and evolution, each a real checkpointed run folder."""
    root = tmp_path_factory.mktemp("runs")
    r = run("transformer", "train", *TINY_TRAIN, "--out", root / "streams")
    assert r.exit_code == 0, r.output
    r = run("namm", "train-base", *TINY_BASE, "--out", root / "base")
    assert r.exit_code == 0, r.output
    r = run("namm", "evolve", "--base", root / "base", *EVOLVE, "--out", root / "evolve")
    assert r.exit_code == 0, r.output
    return root


EVOLVE = [
    "--stages",
    "kv_retrieval",
    "--generations",
    2,
    "--popsize",
    4,
    "--prompts",
    1,
    "--dev-prompts",
    1,
    "--dev-every",
    1,
    "--context",
    64,
    "--n-up",
    16,
    "--metric",
    "prob",
    "--threads",
    1,
]


@pytest.mark.parametrize("how", ["empty", "random bytes", "truncated"])
@pytest.mark.parametrize("which", ["checkpoint.pt", "base.pt", "evolution.pkl"])
def test_damaged_checkpoints_are_named_with_what_to_do(runs, tmp_path, which, how):
    import shutil

    for name in ("streams", "base", "evolve"):
        shutil.copytree(runs / name, tmp_path / name)
    folder = {"checkpoint.pt": "streams", "base.pt": "base", "evolution.pkl": "evolve"}[which]
    damage(tmp_path / folder / which, how)
    if which == "checkpoint.pt":
        r = run("transformer", "train", *TINY_TRAIN, "--steps", 3, "--resume", "--out", tmp_path / "streams")
    elif which == "base.pt":
        r = run("namm", "evolve", "--base", tmp_path / "base", *EVOLVE, "--out", tmp_path / "e2")
    else:
        r = run("namm", "evolve", "--base", tmp_path / "base", *EVOLVE, "--resume", "--out", tmp_path / "evolve")
    one_line_error(r, f"{which} is damaged or truncated")
    assert "new --out" in r.output

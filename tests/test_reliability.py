"""Reliability, round 2: damaged language-model runs, writes that fail (a full disk, a read-only folder),
runs stopped before their first checkpoint, readers that combine runs, and option ranges. Each ends in
one line and exit code 2 (or succeeds correctly), and nothing that was there is lost."""

import errno
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from tiny import TINY_BASE

import amicl.common.io as io
from amicl.cli import amicl

TINY_LM = ["--stories", 300, "--steps", 4, "--batch", 4, "--context", 64, "--vocab", 400, "--eval-every", 2,
           "--val-batches", 1, "--threads", 1, "--device", "cpu"]  # fmt: skip
IOI = ["--prompts", 8, "--threads", 1, "--device", "cpu"]


def run(*args):
    return CliRunner().invoke(amicl, [str(a) for a in args])


def one_line_error(r, needle: str, code: int = 2):
    """The command ends in one error line (after any progress lines it printed), no traceback."""
    assert r.exit_code == code, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    assert errors == lines[-1:] and needle in errors[0], r.output
    assert "Traceback" not in r.output


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    r = run("lm", "train", *TINY_LM, "--out", root / "none")
    assert r.exit_code == 0, r.output
    return root / "none"


def copy(run_folder, tmp_path, name="r"):
    return shutil.copytree(run_folder, tmp_path / name)


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda f: (f / "tokenizer.json").write_bytes(b""), "tokenizer.json is damaged"),
        (
            lambda f: (f / "tokenizer.json").write_bytes(np.random.default_rng(0).bytes(500)),
            "tokenizer.json is damaged",
        ),
        (
            lambda f: (f / "tokenizer.json").write_text((f / "tokenizer.json").read_text()[:300]),
            "tokenizer.json is damaged",
        ),
        (lambda f: (f / "lm.pt").unlink(), "has no lm.pt"),
        (lambda f: (f / "history.csv").unlink(), "has no history.csv"),
        (lambda f: (f / "history.csv").write_text("step,val_loss\n0,5.1\n2"), "row 3 has fewer fields"),
        (lambda f: (f / "history.csv").write_text(""), "history.csv is damaged"),
        (lambda f: (f / "history.csv").write_text("step,val_loss\n"), "holds no evaluation"),
        (lambda f: (f / "config.json").write_text('{"kind": "namm-base"}'), "holds a namm-base run"),
        (lambda f: (f / "config.json").write_text('{"kind": "lm"}'), "config.json is damaged"),
    ],
    ids=[
        "empty tokenizer",
        "random tokenizer",
        "truncated tokenizer",
        "no lm.pt",
        "no history",
        "truncated history",
        "empty history",
        "header only",
        "wrong kind",
        "config without lm",
    ],  # fmt: skip
)
def test_a_damaged_lm_run_is_one_line_in_ioi(lm_run, tmp_path, damage, needle):
    folder = copy(lm_run, tmp_path)
    damage(folder)
    one_line_error(run("lm", "ioi", folder, *IOI, "--out", tmp_path / "ioi"), needle)


def test_a_foreign_tokenizer_and_an_edited_config_are_refused(lm_run, tmp_path):
    folder = copy(lm_run, tmp_path)
    r = run("lm", "train", *TINY_LM, "--vocab", 300, "--out", tmp_path / "other")
    assert r.exit_code == 0, r.output
    shutil.copy(tmp_path / "other" / "tokenizer.json", folder / "tokenizer.json")
    one_line_error(run("lm", "ioi", folder, *IOI, "--out", tmp_path / "i1"), "does not fit the model in lm.pt")
    folder = copy(lm_run, tmp_path, "edited")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["lm"]["stream"] = "V"  # the weights were trained without the stream
    (folder / "config.json").write_text(json.dumps(cfg))
    one_line_error(run("lm", "ioi", folder, *IOI, "--out", tmp_path / "i2"), "does not describe the model in lm.pt")


def test_ioi_refuses_a_run_twice_and_labels_runs_that_share_a_name_by_path(lm_run, tmp_path):
    one_line_error(run("lm", "ioi", lm_run, lm_run, *IOI, "--out", tmp_path / "i"), "is given twice")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = copy(lm_run, tmp_path / "a", "run"), copy(lm_run, tmp_path / "b", "run")
    r = run("lm", "ioi", one, two, *IOI, "--out", tmp_path / "i2")
    assert r.exit_code == 0, r.output
    labels = {row["run"] for row in io.read_csv(tmp_path / "i2" / "ioi.csv")}
    assert labels == {str(one), str(two)}


def test_an_lm_run_stopped_before_its_first_checkpoint_is_restarted_by_the_same_command(tmp_path, monkeypatch):
    import transformers_mini.lm.train as train

    def die(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.LMTrainer, "save", die)
    r = run("lm", "train", *TINY_LM, "--out", tmp_path / "r")
    assert r.exit_code != 0 and not (tmp_path / "r" / "lm.pt").exists()
    monkeypatch.undo()
    for extra in ([], ["--resume"]):  # the same command, with or without --resume, starts it afresh
        r = run("lm", "train", *TINY_LM, *extra, "--out", tmp_path / "r")
        assert r.exit_code == 0, r.output
        assert (tmp_path / "r" / "lm.pt").exists()
        shutil.rmtree(tmp_path / "r")
        r = run("lm", "train", *TINY_LM, "--out", tmp_path / "r")  # leaves a finished run for the next
        assert r.exit_code == 0
        (tmp_path / "r" / "lm.pt").unlink()


@pytest.mark.parametrize("fail_at", [1, 6], ids=["before the first checkpoint", "after it"])
@pytest.mark.parametrize("command", ["lm", "toy", "base"])
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, command,
                                                                                 fail_at):  # fmt: skip
    real, calls = io._write, []

    def full(path, data):
        calls.append(path)
        if len(calls) >= fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(io, "_write", full)
    out = tmp_path / "r"
    args = {
        "lm": ["lm", "train", *TINY_LM],
        "toy": ["transformer", "train", "--K", 8, "--L", 8, "--N", 2, "--Nmax", 2, "--D", 16, "--steps", 4,
                "--eval-every", 1, "--checkpoint-every", 1, "--eval-size", 10, "--batch", 4, "--threads", 1],
        "base": ["namm", "train-base", *TINY_BASE, "--steps", 4, "--eval-every", 2],
    }[command]  # fmt: skip
    r = run(*args, "--out", out)
    one_line_error(r, f"cannot write {calls[-1]}: No space left on device")
    monkeypatch.undo()
    marker = {"lm": "lm.pt", "toy": "checkpoint.pt", "base": "base.pt"}[command]
    if (out / marker).exists():  # the last checkpoint is intact: the run resumes from it
        assert run(*args, "--resume", "--out", out).exit_code == 0
    else:
        assert run(*args, "--out", out).exit_code == 0  # nothing was lost, and the folder is not a dead end
    assert not list(out.glob(".*.tmp"))


def test_figures_and_tables_into_a_folder_under_a_file_are_one_line(lm_run, tmp_path):
    (tmp_path / "afile").write_text("x")
    one_line_error(run("figures", "lm", lm_run, "--out", tmp_path / "afile" / "fig"), "cannot write")
    evals = ["results/namm/eval16/namm", "results/namm/eval16/match_h2o"]
    r = run("namm", "table", *evals, "--out", tmp_path / "afile" / "t")
    one_line_error(r, str(tmp_path / "afile" / "t"))


@pytest.mark.parametrize("vocab", [99999999999, 256])
def test_the_vocabulary_is_checked_before_the_tokenizer_library_sees_it(tmp_path, vocab):
    one_line_error(run("lm", "train", *TINY_LM, "--vocab", vocab, "--out", tmp_path / "r"), "vocab must be")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_a_checkpoint_with_one_changed_byte_is_refused_not_evaluated(tmp_path):
    toy = ["--K", 8, "--L", 8, "--N", 2, "--Nmax", 2, "--D", 16, "--steps", 2, "--eval-every", 1,
           "--checkpoint-every", 1, "--eval-size", 10, "--batch", 4, "--threads", 1, "--device", "cpu"]  # fmt: skip
    assert run("transformer", "train", *toy, "--out", tmp_path / "r").exit_code == 0
    path = tmp_path / "r" / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the weights: torch.load itself would not notice
    path.write_bytes(bytes(data))
    r = run("transformer", "evaluate", tmp_path / "r", "--threads", 1, "--device", "cpu", "--out", tmp_path / "ev")
    one_line_error(r, "no longer matches the digest written with it")


@pytest.mark.parametrize("bad, needle", [("--grid-B", "lists 2 twice"), ("--grid-epsilon", "lists 0.1 twice")])
def test_a_grid_value_given_twice_is_refused(tmp_path, bad, needle):
    values = {"--grid-B": "2,2", "--grid-epsilon": "0.1,0.1"}[bad]
    one_line_error(run("transformer", "phase", bad, values, "--steps", 2, "--out", tmp_path / "p"), needle)
    assert not (tmp_path / "p").exists()


def test_reproduce_refuses_a_trial_count_that_cannot_fit_before_writing(tmp_path):
    one_line_error(run("reproduce", "amicl", "--trials", 100_000_000_000, "--out", tmp_path), "lower --trials")
    assert not (tmp_path / "amicl").exists()


def test_a_jsonl_corpus_whose_texts_are_not_strings_is_one_line(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": i}) for i in range(20)))
    one_line_error(run("lm", "train", *TINY_LM, "--corpus", corpus, "--out", tmp_path / "r"), "not a string")


@pytest.mark.parametrize(
    "args",
    [
        ["transformer", "join", "results/streams/none_V_8seeds", "results/streams/none_V_8seeds/", "--out", "{tmp}/j"],
        ["namm", "table", "results/namm/eval16/namm", "./results/namm/eval16/namm"],
        ["figures", "namm", "results/namm/eval16/namm", "results/namm/eval16/namm", "--out", "{tmp}/f"],
    ],
    ids=["join", "namm table", "namm figures"],
)
def test_readers_that_combine_runs_refuse_one_given_twice(tmp_path, args):
    one_line_error(run(*[a.format(tmp=tmp_path) for a in args]), "is given twice")


def test_a_non_finite_loss_stops_a_language_model_at_its_step_before_anything_is_saved(tmp_path, monkeypatch):
    """The LM and NAMM-base steps return their loss on the device and never wait for it; the loop reads
    the losses at each evaluation, names the first non-finite step and keeps the last checkpoint."""
    import torch

    import transformers_mini.lm.train as lm_train

    step = lm_train.LMTrainer.train_step

    def poisoned(self):
        loss = step(self)
        return loss * float("nan") if self.step == 3 else loss

    monkeypatch.setattr(lm_train.LMTrainer, "train_step", poisoned)
    r = run("lm", "train", *TINY_LM, "--out", tmp_path / "lm")
    assert r.exit_code == 1 and r.stderr.strip().splitlines()[-1] == (
        "Stopped: non-finite loss at step 3; the checkpoint of step 2 is kept"
    ), r.output
    assert torch.load(tmp_path / "lm" / "lm.pt", weights_only=False)["step"] == 2
    assert (tmp_path / "lm" / "history.csv").read_text().count("\n") == 3  # header, steps 0 and 2


def test_a_finished_seed_group_without_its_checkpoint_is_kept_and_an_unfinished_one_retrained(tmp_path):
    """Results are committed without checkpoints: resuming a grouped compare in a fresh checkout must not
    retrain (and overwrite) a finished group, and must retrain one that was still training."""
    from tiny import TINY_TOY

    from amicl.common.io import read_csv, read_json, write_json

    args = ["transformer", "compare", "--streams", "none,V", "--steps", 4, *TINY_TOY, "--group-size", 1]
    out = tmp_path / "c"
    assert run(*args, "--out", out).exit_code == 0
    before = read_csv(out / "history.csv")
    g0, g1 = out / "groups" / "seeds0-0", out / "groups" / "seeds1-1"
    assert read_json(g0 / "config.json")["finished"] is True
    (g0 / "checkpoint.pt").unlink()
    (g1 / "checkpoint.pt").unlink()
    cfg = read_json(g1 / "config.json")
    write_json(g1 / "config.json", {**cfg, "finished": False})  # as if it had stopped mid-way
    kept = (g0 / "history.csv").stat().st_mtime_ns
    r = run(*args, "--out", out, "--resume")
    assert r.exit_code == 0, r.output
    assert "seeds0-0: finished at step 4" in r.stderr and "seeds1-1" not in r.stderr
    assert (g0 / "history.csv").stat().st_mtime_ns == kept and not (g0 / "checkpoint.pt").exists()
    assert (g1 / "checkpoint.pt").exists()  # retrained from step 0, to the same numbers
    assert read_csv(out / "history.csv") == before
    # a longer budget is not "finished": that group is trained again
    longer = list(args)
    longer[longer.index("--steps") + 1] = 6
    r = run(*longer, "--out", out, "--resume")
    assert r.exit_code == 0, r.output
    assert (g0 / "checkpoint.pt").exists() and {row["step"] for row in read_csv(out / "history.csv")} >= {"6"}

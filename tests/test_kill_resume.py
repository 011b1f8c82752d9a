"""kill -9 and Ctrl-C at random moments of every kind of long run (toy, language model, NAMM base,
evolution, phase grid, ``reproduce all``): every restart of the same command (with --resume once the folder holds a run)
continues from the last whole checkpoint, no stray temporary file survives, and the finished run's
history equals an uninterrupted one's."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny import TINY_BASE

CLI = [sys.executable, "-c", "from amicl.cli import main; main()"]
# ``reproduce all`` on tests/tiny.py's three-step plan (its steps are ordinary amicl processes of their own)
ALL_CLI = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import tiny, "
           "amicl.report as r; r.plan = tiny.kill_plan; from amicl.cli import main; main()"]  # fmt: skip
EVOLVE = [
    "--stages",
    "kv_retrieval;kv_retrieval,needle",
    "--generations",
    "3,3",
    "--popsize",
    "4",
    "--prompts",
    "1",
    "--dev-prompts",
    "2",
    "--dev-every",
    "2",
    "--context",
    "64",
    "--n-up",
    "16",
    "--metric",
    "prob",
    "--threads",
    "1",
]


def cli(*args, **kw):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("killbase") / "base"
    r = cli("namm", "train-base", *TINY_BASE, "--steps", 2, "--out", out)
    assert r.returncode == 0, r.stderr
    return out


# fmt: off
TOY = ["--K", 8, "--L", 8, "--N", 2, "--Nmax", 2, "--D", 16, "--batch", 8, "--eval-size", 20, "--threads", 1,
       "--device", "cpu"]
LM = ["--stories", 300, "--steps", 8, "--batch", 4, "--context", 64, "--vocab", 400, "--eval-every", 2,
      "--val-batches", 1, "--threads", 1, "--device", "cpu"]
PHASE = ["--grid-B", "1,2", "--grid-epsilon", "0.1", "--seeds", 1, "--eval-size", 20, "--steps", 6, "--eval-every", 1,
         "--checkpoint-every", 1, "--threads", 1, "--device", "cpu"]
COMMANDS = {  # kind -> (arguments, the files that must equal the uninterrupted run's[, the program])
    "toy": (["transformer", "train", *TOY, "--steps", 60, "--eval-every", 5, "--checkpoint-every", 5], ["history.csv"]),
    "lm": (["lm", "train", *LM], ["history.csv"]),
    "base": (["namm", "train-base", *TINY_BASE, "--steps", 40, "--eval-every", 4], ["history.csv"]),
    "evolve": (["namm", "evolve", "--base", "{base}", *EVOLVE], ["history.csv", "best_params.npy"]),
    "phase": (["transformer", "phase", *PHASE], ["phase.csv"]),
    "all": (["reproduce", "all"], ["steps.json", "streams/run/history.csv", "lm/none_seed0/history.csv"], ALL_CLI),
}
# fmt: on


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_kills_and_interrupts_at_random_moments_resume_exactly(kind, base, tmp_path):
    import signal

    args, files, program = (*COMMANDS[kind], CLI)[:3]
    args = [str(a).format(base=base) for a in args]
    t0 = time.monotonic()
    r = subprocess.run([*program, *args, "--out", str(tmp_path / "straight")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    duration = time.monotonic() - t0
    out, rng, stops = tmp_path / "stopped", np.random.default_rng(0), 0
    while True:
        resume = ["--resume"] if (out / "config.json").exists() and kind != "all" else []  # all: the same command
        proc = subprocess.Popen([*program, *args, *resume, "--out", str(out)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            proc.wait(timeout=rng.uniform(0.4, 1.0) * duration if stops < 2 else None)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL if stops == 0 else signal.SIGINT)  # kill -9, then Ctrl-C
            proc.wait()
            stops += 1
            continue
        assert proc.returncode == 0, proc.stderr.read()
        break
    assert not list(out.rglob(".*.tmp")), "a stopped atomic write left its temporary file behind"
    for name in files:
        if name.endswith(".npy"):
            assert np.array_equal(np.load(tmp_path / "straight" / name), np.load(out / name))
        else:
            assert (tmp_path / "straight" / name).read_bytes() == (out / name).read_bytes(), name

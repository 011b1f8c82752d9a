"""kill -9 at random moments of a short ``namm evolve``: every restart resumes from the last whole
checkpoint, no stray temporary file survives, and the finished run equals an uninterrupted one."""

import subprocess
import sys
import time

import numpy as np
import pytest
from tiny import TINY_BASE

CLI = [sys.executable, "-c", "from amicl.cli import main; main()"]
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


def test_kill_9_at_random_moments_resumes_exactly_and_leaves_no_stray_files(base, tmp_path):
    t0 = time.monotonic()
    r = cli("namm", "evolve", "--base", base, *EVOLVE, "--out", tmp_path / "straight")
    assert r.returncode == 0, r.stderr
    duration = time.monotonic() - t0
    out, rng, kills = tmp_path / "killed", np.random.default_rng(0), 0
    while True:
        resume = ["--resume"] if (out / "evolution.pkl").exists() else []
        proc = subprocess.Popen(
            [*CLI, "namm", "evolve", "--base", str(base), *EVOLVE, *resume, "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            proc.wait(timeout=rng.uniform(0.3, 1.0) * duration if kills < 3 else None)
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL: no handler runs, whatever the process was writing
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0, proc.stderr.read()
        break
    assert kills == 3
    assert not list(out.glob(".*.tmp")), "a killed atomic write left its temporary file behind"
    for name in ("history.csv", "best_params.npy"):
        straight, killed = (tmp_path / "straight" / name).read_bytes(), (out / name).read_bytes()
        if name == "history.csv":
            assert straight == killed
        else:
            assert np.array_equal(np.load(tmp_path / "straight" / name), np.load(out / name))

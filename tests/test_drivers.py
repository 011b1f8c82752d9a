"""The result drivers (results/*/drive.sh) skip finished runs in a fresh checkout and never delete one."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _drive(tmp_path, driver, plan_lines):
    """Run a driver on a plan with AMICL a stub that records its arguments; returns the recorded calls."""
    (tmp_path / "plan.txt").write_text("\n".join(plan_lines) + "\n")
    log = tmp_path / "calls.log"
    stub = tmp_path / "amicl-stub"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    stub.chmod(0o755)
    env = dict(os.environ, AMICL=str(stub))
    subprocess.run(["bash", str(ROOT / driver), "plan.txt", "0", "1"], cwd=tmp_path, env=env, check=True)
    return log.read_text().splitlines() if log.exists() else []


def _git(tmp_path, *args):
    subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)


def _lm_run(folder, last_step, steps=4000):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"kind": "lm", "lm": {"steps": steps}}))
    (folder / "history.csv").write_text(f"step,val_loss\n200,2.0\n{last_step},1.5\n")


def test_lm_driver_skips_an_uncommitted_finished_run_and_restarts_a_partial_one(tmp_path):
    _git(tmp_path, "init", "-q")
    _lm_run(tmp_path / "runs/done", 4000)
    _lm_run(tmp_path / "runs/partial", 1800)
    calls = _drive(tmp_path, "results/lm/drive.sh", ["runs/done --seed 0", "runs/partial --seed 1"])
    assert (tmp_path / "runs/done/history.csv").exists()  # a finished history is never deleted
    assert not (tmp_path / "runs/partial").exists()  # no checkpoint: it starts afresh
    assert calls == ["lm train --seed 1 --threads 1 --out runs/partial"]


def _evolution(folder, rows, generations=(2, 2)):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"kind": "namm-evolve", "evolve": {"generations": generations}}))
    (folder / "best_params.npy").write_bytes(b"x")
    (folder / "history.csv").write_text("generation\n" + "".join(f"{g}\n" for g in range(rows)))
    (folder / "evolution.pkl").write_bytes(b"x")


def test_namm_driver_skips_a_committed_finished_evolution_whatever_the_file_times(tmp_path):
    _git(tmp_path, "init", "-q")
    for name, rows in (("done", 4), ("partial", 3)):
        _evolution(tmp_path / name, rows)
        os.utime(tmp_path / name / "best_params.npy", (1, 1))  # older than history.csv, as a checkout may leave it
    plan = ["done - namm evolve --seed 0", "partial - namm evolve --seed 1"]
    assert len(_drive(tmp_path, "results/namm/drive.sh", plan)) == 2  # uncommitted and older: not trusted
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "runs")
    (tmp_path / "calls.log").unlink()
    calls = _drive(tmp_path, "results/namm/drive.sh", plan)
    assert calls == ["namm evolve --seed 1 --threads 1 --out partial --resume"]

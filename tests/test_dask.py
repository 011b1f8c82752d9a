"""The same numbers on a 2-worker Dask LocalCluster as in this process: a sweep, a two-group compare and
two NAMM generations."""

import numpy as np
import pytest
from click.testing import CliRunner
from tiny import TINY_BASE

from amicl.cli import amicl
from amicl.common.io import read_csv

distributed = pytest.importorskip("distributed")


def run(*args):
    return CliRunner().invoke(amicl, [str(a) for a in args])


@pytest.fixture(scope="module")
def scheduler():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c.scheduler_address


def test_sweep_on_a_local_cluster_equals_in_process(tmp_path):
    args = ["memory", "sweep", "--grid", "a=0.5,2", "--D", 20, "--trials", 600, "--engine", "materialise"]
    assert run(*args, "--out", tmp_path / "local").exit_code == 0
    r = run(*args, "--executor", "dask", "--workers", 2, "--out", tmp_path / "dask")
    assert r.exit_code == 0, r.output
    a, b = (np.load(tmp_path / d / "results.npz") for d in ("local", "dask"))
    assert np.array_equal(a["correct"], b["correct"])  # 600 trials = 3 chunks per point, spread over workers


def test_two_seed_groups_on_dask_equal_the_same_groups_in_process(tmp_path, scheduler):
    from test_transformer_train import CLI

    args = ["transformer", "compare", "--streams", "none,V", "--steps", 4, *CLI, "--group-size", 1]
    assert run(*args, "--out", tmp_path / "local").exit_code == 0
    r = run(*args, "--executor", "dask", "--scheduler", scheduler, "--out", tmp_path / "dask")
    assert r.exit_code == 0, r.output
    assert "| ic | V |" in r.stdout
    a, b = (read_csv(tmp_path / d / "history.csv") for d in ("local", "dask"))
    assert a == b and {r["seed"] for r in a} == {"0", "1"}


def test_evolve_generations_on_dask_equal_in_process(tmp_path, scheduler):
    base = tmp_path / "base"
    assert run("namm", "train-base", *TINY_BASE, "--out", base).exit_code == 0
    args = ["namm", "evolve", "--base", base, "--stages", "needle", "--generations", 2, "--popsize", 4]
    args += ["--prompts", 2, "--dev-prompts", 2, "--dev-every", 1, "--context", 64, "--n-up", 32, "--threads", 1]
    assert run(*args, "--out", tmp_path / "local").exit_code == 0
    r = run(*args, "--executor", "dask", "--scheduler", scheduler, "--out", tmp_path / "dask")
    assert r.exit_code == 0, r.output
    a, b = (read_csv(tmp_path / d / "history.csv") for d in ("local", "dask"))
    assert len(a) == 2 and a == b


def test_scheduler_needs_dask_and_groups_need_an_executor(tmp_path):
    r = run("memory", "run", "--trials", 10, "--executor", "process", "--scheduler", "tcp://x:1")
    assert r.exit_code == 2 and "--executor dask" in r.stderr
    r = run("transformer", "compare", "--executor", "process", "--out", tmp_path / "c")
    assert r.exit_code == 2 and "--group-size" in r.stderr and not (tmp_path / "c").exists()


def test_phase_cells_on_dask_equal_in_process(tmp_path, scheduler):
    args = ["transformer", "phase", "--grid-B", "1,2", "--grid-epsilon", "0.1", "--seeds", "1", "--steps", 2]
    args += ["--eval-every", 1, "--eval-size", 20, "--checkpoint-every", 1, "--threads", 1, "--device", "cpu"]
    assert run(*args, "--out", tmp_path / "local").exit_code == 0
    r = run(*args, "--executor", "dask", "--scheduler", scheduler, "--out", tmp_path / "dask")
    assert r.exit_code == 0, r.output
    a, b = (read_csv(tmp_path / d / "phase.csv") for d in ("local", "dask"))
    assert a == b and len(a) == 6


@pytest.fixture
def not_dask():
    """A TCP server that answers every connection with an HTTP reply: something, but not a Dask scheduler."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi" * 64)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_a_dead_or_wrong_scheduler_is_one_line_within_the_timeout(tmp_path, not_dask):
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    for address in (dead, not_dask, "nonsense"):
        started = time.monotonic()
        r = run("memory", "run", "--trials", 10, "--executor", "dask", "--scheduler", address)
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and address in lines[0] and "Traceback" not in r.output, r.output
        assert time.monotonic() - started < 25

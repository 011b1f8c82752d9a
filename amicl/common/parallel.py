"""Executors and progress for embarrassingly parallel loops (trials, sweep points, seeds, populations).

Every such loop takes a ``concurrent.futures.Executor``, named by an ``ExecutorSpec``: in-process
(the default), a process pool whose workers each use one numba/BLAS thread (two BLAS-heavy processes
on two cores slow each other badly), or a Dask cluster (``distributed``: a LocalCluster, or any
scheduler address, e.g. one that dask-jobqueue started on SLURM).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable

from amicl.common.validate import check_choice, check_int


class InProcessExecutor(Executor):
    """Runs each submitted call at once in the calling thread (deterministic, no pickling)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered through the future, as a pool would
            fut.set_exception(exc)
        return fut


def _single_thread_worker() -> None:
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


EXECUTORS = ("local", "process", "dask")


@dataclass(frozen=True)
class ExecutorSpec:
    """Where embarrassingly parallel tasks run: ``local`` (in this process), ``process`` (a pool of
    ``workers`` single-threaded processes) or ``dask`` (a ``distributed`` cluster: the one at
    ``scheduler``, else a LocalCluster of ``workers`` single-threaded workers). Results never depend on
    it: the tasks are cut the same way whatever runs them. ``threads``: CPU threads inside each task."""

    kind: str = "local"
    workers: int | None = None
    scheduler: str | None = None
    threads: int = 1

    def __post_init__(self):
        check_choice("executor", self.kind, EXECUTORS)
        if self.workers is not None:
            check_int("workers", self.workers, lo=1)
        check_int("threads", self.threads, lo=1)
        if self.scheduler is not None and self.kind != "dask":
            raise ValueError("--scheduler names a Dask scheduler: it goes with --executor dask")
        if self.kind == "dask" and importlib.util.find_spec("distributed") is None:
            raise ValueError("--executor dask needs Dask's distributed: pip install 'amicl[distributed]'")

    @classmethod
    def from_options(cls, executor: str | None, workers: int | None, scheduler: str | None) -> "ExecutorSpec":
        """The CLI's --executor/--workers/--scheduler: without --executor, more than one worker means a
        process pool (as --workers always did)."""
        kind = executor or ("process" if workers and workers > 1 else "dask" if scheduler else "local")
        return cls(kind, workers, scheduler)

    @property
    def pool_size(self) -> int:
        """Tasks in flight at once (for memory estimates): 1 in-process, else the workers."""
        return 1 if self.kind == "local" else self.workers or os.cpu_count() or 1

    @contextmanager
    def open(self):
        """The Executor, shut down (cluster and client closed) on exit."""
        if self.kind == "local":
            yield InProcessExecutor()
        elif self.kind == "process":
            with make_executor(max(2, self.pool_size)) as ex:
                yield ex
        else:
            with _dask_executor(self) as ex:
                yield ex


SCHEDULER_TIMEOUT = 10  # seconds a Dask scheduler has to answer before --scheduler is refused


def connect(address: str, timeout: float = SCHEDULER_TIMEOUT):
    """A ``distributed.Client`` of the scheduler at ``address``, or a one-line ``ValueError`` when nothing
    answers there as a Dask scheduler within ``timeout`` seconds (no 30 s wait, no traceback)."""
    from distributed import Client

    if "://" not in address and ":" not in address:
        raise ValueError(f"--scheduler {address!r}: give a scheduler address such as tcp://host:8786")
    try:
        return Client(address, timeout=timeout)
    except Exception as exc:  # refused, timed out, or a server whose reply is not Dask's protocol
        raise ValueError(
            f"--scheduler {address}: no Dask scheduler answered within {timeout:g} s ({type(exc).__name__})"
        ) from None


@contextmanager
def _dask_executor(spec: ExecutorSpec):
    from distributed import Client, LocalCluster

    cluster = None
    if spec.scheduler is None:
        cluster = LocalCluster(n_workers=spec.pool_size, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with Client(cluster) if cluster is not None else connect(spec.scheduler) as client:
            yield ThreadedExecutor(client.get_executor(pure=False), spec.threads, client)
    finally:
        if cluster is not None:
            cluster.close()


class ThreadedExecutor(Executor):
    """Wraps an Executor so that every task first sets its CPU threads (numba, BLAS, and torch when the
    worker has loaded it): a Dask worker inherits none of this process's settings. With a Dask
    ``client``, ``share`` sends a large argument (a model) to every worker once."""

    def __init__(self, inner: Executor, threads: int, client=None):
        self.inner, self.threads, self.client = inner, threads, client

    def share(self, obj):
        return self.client.scatter(obj, broadcast=True, hash=False) if self.client is not None else obj

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self.inner.submit(with_threads, self.threads, fn, *args, **kwargs)

    def shutdown(self, wait=True, **kwargs):
        self.inner.shutdown(wait=wait)


def share(executor, obj):
    """``obj`` as an argument for tasks of ``executor``: on a Dask cluster, sent to every worker once."""
    return executor.share(obj) if isinstance(executor, ThreadedExecutor) else obj


def with_threads(threads: int, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` with numba's and torch's CPU threads set to ``threads``."""
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return fn(*args, **kwargs)


def make_executor(workers: int = 1) -> Executor:
    """In-process for ``workers == 1``, else a process pool of single-threaded workers."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        return InProcessExecutor()
    # spawn, not fork: forking after numba's OpenMP threads have started is unsafe
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_single_thread_worker)


def run_tasks(
    fn: Callable,
    tasks: Iterable[tuple],
    executor: Executor | None = None,
    desc: str = "",
    progress: bool | None = None,
) -> list:
    """``[fn(*t) for t in tasks]`` through ``executor``, results in task order, progress on stderr.

    The bar shows only when stderr is a terminal (or ``progress=True``).
    """
    from tqdm.auto import tqdm

    tasks = list(tasks)
    executor = executor or InProcessExecutor()
    show = sys.stderr.isatty() if progress is None else progress
    results: list = [None] * len(tasks)
    with tqdm(total=len(tasks), desc=desc, disable=not show, file=sys.stderr, leave=False) as bar:
        if isinstance(executor, InProcessExecutor):  # run lazily so the bar moves
            for i, t in enumerate(tasks):
                results[i] = fn(*t)
                bar.update()
            return results
        futures = {executor.submit(fn, *t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update()
    return results

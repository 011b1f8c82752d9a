"""Executors and progress for embarrassingly parallel loops (trials, sweep points, seeds, populations).

Every such loop takes a ``concurrent.futures.Executor``. The default runs in-process; ``workers > 1``
gives a process pool whose workers each use one numba/BLAS thread (two BLAS-heavy processes on two
cores slow each other badly); a Dask ``distributed.Client(...).get_executor()`` also fits.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from typing import Callable, Iterable


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

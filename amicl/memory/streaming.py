"""AMICL end to end in constant memory: draw an episode, score it, keep only whether it was right.

``score_stream`` is the fast path behind sweeps of notebook episodes: each worker thread generates its
episodes and scores them with the same fused retrieval as ``amicl.memory.hopfield.retrieve``, so memory is
O(threads x T x D) whatever the number of trials, and generation runs at the speed of the random
number generator instead of NumPy's materialised (E, T, D) arrays. Episode ``e`` of root ``seed`` is
drawn from its own stream (SplitMix64 seeded from (seed, e), normals by a 256-layer ziggurat), so
results are identical for any thread or worker count, and every grid point of a sweep sees the same
episodes (common random numbers). ``stream_episodes`` materialises the very same episodes, so the
stream can be checked against ``amicl.memory.reference`` draw for draw and scored by any backend.

The distribution is that of ``amicl.task.sample_episodes`` (tests/test_streaming.py); the numbers are
not, since the two consume different generators.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from amicl.common.validate import check_int
from amicl.memory import reference
from amicl.memory.hopfield import MemoryConfig
from amicl.task import EpisodeConfig, Episodes


def stream_key(seed: int) -> int:
    """The 64-bit root key of ``seed``'s episode stream."""
    seed = check_int("seed", seed, lo=0)
    return int(np.random.SeedSequence(seed, spawn_key=(7,)).generate_state(1, np.uint64)[0])


@lru_cache(maxsize=1)
def _tables():
    return reference.ziggurat_tables()


def _noise_std(config: EpisodeConfig) -> float:
    return 1.0 / config.D if config.noise == "1/D" else 1.0 / np.sqrt(config.D)


def stream_episodes(config: EpisodeConfig, n: int, seed: int = 0, first: int = 0) -> Episodes:
    """Episodes ``first .. first+n-1`` of ``seed``'s stream, materialised (for inspection and tests)."""
    from amicl.memory.kernels import stream_episodes_kernel

    n, first = check_int("n", n, lo=1), check_int("first", first, lo=0)
    c = config
    tokens, labels, target, decoy = stream_episodes_kernel(
        np.uint64(stream_key(seed)), first, n, c.K, c.D, c.T, float(c.epsilon), _noise_std(c), *_tables()
    )
    return Episodes(tokens, labels, target, decoy, None)


def score_stream(
    config: EpisodeConfig, memory: MemoryConfig, n: int, seed: int = 0, first: int = 0, threads: int | None = None
) -> np.ndarray:
    """correct (n,) bool: episodes ``first .. first+n-1`` of ``seed``'s stream scored by ``memory``,
    never holding more than one episode per thread. Equal to ``retrieve(stream_episodes(...), memory)``
    (to the rounding of the fused kernel) and independent of ``threads``."""
    from amicl.memory.kernels import stream_score_kernel

    n, first = check_int("n", n, lo=1), check_int("first", first, lo=0)
    c, m = config, memory
    blocks = 4 * (threads or int(os.environ.get("NUMBA_NUM_THREADS", 0)) or os.cpu_count() or 1)
    return stream_score_kernel(
        np.uint64(stream_key(seed)),
        first,
        n,
        c.K,
        c.D,
        c.T,
        float(c.epsilon),
        _noise_std(c),
        *_tables(),
        *m.kernel_args(),
        min(blocks, n),
    )

"""The streaming AMICL path: draw for draw equal to its plain-Python specification, scored exactly as the
materialising path scores the same episodes, independent of threads and chunking, and distributed as
``sample_episodes`` (statistical checks with fixed seeds and bounds)."""

import itertools

import numba
import numpy as np
import pytest
from scipy.stats import kstest, norm

from amicl.memory import reference
from amicl.memory.hopfield import SEPARATIONS, SIMILARITIES, MemoryConfig, retrieve
from amicl.memory.streaming import score_stream, stream_episodes, stream_key
from amicl.task import EpisodeConfig, sample_episodes


@pytest.mark.parametrize(
    "cfg",
    [
        EpisodeConfig(D=20, K=5, T=10),
        EpisodeConfig(D=7, K=50, T=8, noise="1/sqrt(D)"),
        EpisodeConfig(D=16, K=512, T=20, epsilon=0.7),
    ],
)
def test_stream_equals_its_python_specification_draw_for_draw(cfg):
    ep = stream_episodes(cfg, 6, seed=11, first=40)
    key = stream_key(11)
    noise = 1 / cfg.D if cfg.noise == "1/D" else 1 / np.sqrt(cfg.D)
    for i in range(6):
        tokens, labels, target, decoy = reference.stream_episode(key, 40 + i, cfg.K, cfg.D, cfg.T, cfg.epsilon, noise)
        assert np.array_equal(tokens, ep.tokens[i]) and np.array_equal(labels, ep.token_labels[i])
        assert target == ep.target[i] and np.array_equal(decoy, ep.decoy[i])


COMBOS = [
    (s, p)
    for s, p in itertools.product(SIMILARITIES, SEPARATIONS)
    if not (p == "power" and s in ("euclidean", "manhattan"))
]


@pytest.mark.parametrize("sim, sep", COMBOS)
def test_streamed_scores_equal_the_materialised_path_on_the_same_episodes(sim, sep):
    cfg, mem = EpisodeConfig(D=30, K=40, T=12), MemoryConfig(a=1.5, similarity=sim, separation=sep, beta=4.0, n=3.0)
    fast = score_stream(cfg, mem, 400, seed=2)
    ep = stream_episodes(cfg, 400, seed=2)
    assert np.array_equal(fast, retrieve(ep, mem, backend="numpy").correct(ep.target))
    assert 0.05 < fast.mean() < 1  # the comparison covers right and wrong answers


def test_results_do_not_depend_on_threads_or_chunking():
    cfg, mem = EpisodeConfig(D=50, K=512, T=20), MemoryConfig(a=1.0)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = score_stream(cfg, mem, 3000, seed=4, threads=1)
    finally:
        numba.set_num_threads(before)
    many = score_stream(cfg, mem, 3000, seed=4, threads=8)
    split = np.concatenate([score_stream(cfg, mem, 1234, seed=4), score_stream(cfg, mem, 1766, seed=4, first=1234)])
    assert np.array_equal(one, many) and np.array_equal(one, split)


def test_ziggurat_moments_over_a_million_draws():
    """Mean, variance and fourth moment of 10^6 draws within 4 standard errors of N(0, 1)'s (a table
    error of 0.8% in the variance, which a KS test on 2e5 draws passes, fails here)."""
    from amicl.memory.kernels import stream_normals_kernel

    z = stream_normals_kernel(np.uint64(stream_key(9)), 1_000_000, *reference.ziggurat_tables())
    n = z.size
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs((z**4).mean() - 3) < 4 * np.sqrt(96 / n)  # var(z^4) = 105 - 9


def test_ziggurat_normals_are_standard_normal():
    """Items of a noise-only episode stream are N(0, 1) draws up to the known scale: KS and tail checks."""
    cfg = EpisodeConfig(D=500, K=2, T=4, epsilon=1.0, noise="1/sqrt(D)")
    ep = stream_episodes(cfg, 400, seed=5)
    z = ep.decoy.ravel() * np.sqrt(cfg.D)  # the decoy is N(0, I/D): 200,000 standard normals
    assert kstest(z, "norm").pvalue > 1e-3
    tail = np.mean(np.abs(z) > 3.0)  # beyond 3 sigma: 0.27%; binomial SE at n = 2e5 is 0.012%
    assert abs(tail - 2 * norm.sf(3.0)) < 5 * np.sqrt(2 * norm.sf(3.0) / z.size)
    assert np.abs(z).max() > 3.66  # the tail beyond the ziggurat's last layer (3.654) is reached


def test_stream_is_distributed_like_sample_episodes():
    """Same distribution, different numbers: class repeats, token scales and accuracy agree within bounds."""
    cfg = EpisodeConfig(D=40, K=40, T=20)
    a, b = stream_episodes(cfg, 20000, seed=6), sample_episodes(cfg, 20000, np.random.default_rng(6))

    def repeats(ep):  # share of episodes whose 9 context classes include a repeat
        lab = ep.token_labels[:, 1:-2:2]
        return np.mean([len(set(r)) < len(r) for r in lab])

    ra, rb = repeats(a), repeats(b)
    assert abs(ra - rb) < 4 * np.sqrt(2 * ra * (1 - ra) / 20000)
    for part in (slice(0, 18, 2), slice(1, 18, 2), slice(18, 19)):  # items, labels, query item
        va, vb = a.tokens[:, part].var(), b.tokens[:, part].var()
        assert abs(va / vb - 1) < 0.02, part
    assert abs(a.decoy.var() / b.decoy.var() - 1) < 0.02
    big = EpisodeConfig(K=512)
    pa = score_stream(big, MemoryConfig(a=1.0), 20000, seed=7).mean()
    pb = retrieve(e := sample_episodes(big, 20000, np.random.default_rng(7)), MemoryConfig(a=1.0)).accuracy(e.target)
    assert abs(pa - pb) < 4 * np.sqrt(2 * pa * (1 - pa) / 20000)  # the notebook's 0.325 at a = 1

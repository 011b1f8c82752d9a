import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amicl.task import (
    EpisodeConfig,
    ICLTask,
    TaskConfig,
    episodes_from_batch,
    sample_episodes,
)


@pytest.fixture(scope="module")
def task():
    return ICLTask.from_seed(TaskConfig(), 0)


def rng(seed=1):
    return np.random.default_rng(seed)


@st.composite
def task_configs(draw):
    L = draw(st.integers(2, 8))
    K = L * draw(st.integers(1, 6))
    B = draw(st.sampled_from([0, 1, 2, 4]))
    N = B * draw(st.integers(1, 3)) if B else draw(st.integers(1, 6))
    no_repeats = draw(st.booleans())
    m = N // B if B else 0
    if B and (m > K or (no_repeats and m > L)):
        no_repeats, B, N = False, 0, max(N, 1)
    p = st.floats(0, 1) if B else st.just(0.0)
    return TaskConfig(
        K=K,
        L=L,
        N=N,
        Nmax=N + draw(st.integers(0, 3)),
        D=draw(st.integers(1, 12)),
        epsilon=draw(st.floats(0, 2)),
        alpha=draw(st.floats(0, 2)),
        B=B,
        p_B=draw(p),
        p_C=draw(p),
        no_repeats=no_repeats,
        n_novel=max(m, draw(st.integers(1, 40))) if B else 8,
    )


@settings(max_examples=60, deadline=None)
@given(cfg=task_configs(), seed=st.integers(0, 2**31), size=st.integers(1, 20))
def test_batches_are_well_formed_for_random_valid_configs(cfg, seed, size):
    task = ICLTask.from_seed(cfg, seed)
    b = task.sample(size, rng(seed))
    assert b.x.shape == (size, 2 * cfg.N + 1, 2 * cfg.Nmax + 1 + cfg.D) and b.x.dtype == np.float32
    assert b.y.shape == (size,) and b.labels.shape == (size, cfg.N) and b.classes.shape == (size, cfg.N + 1)
    assert ((b.y >= 0) & (b.y < cfg.L)).all()
    pos = b.x[:, :, : cfg.n_pos]
    assert (pos.sum(-1) == 1).all()  # one-hot, consecutive positions from a random shift
    idx = pos.argmax(-1)
    assert (np.diff(idx, axis=1) == 1).all() and (idx[:, 0] <= cfg.n_pos - cfg.seq_len).all()
    np.testing.assert_array_equal(b.x[:, 1 : 2 * cfg.N : 2, cfg.n_pos :], task.lam[b.labels])
    np.testing.assert_array_equal(b.labels, b.classes[:, : cfg.N] % cfg.K % cfg.L)


def test_bursty_no_repeats_structure(task):
    c = task.config
    b = task.sample(500, rng(), p_B=1.0, p_C=0.0)
    for labels, y in zip(b.labels, b.y):
        vals, counts = np.unique(labels, return_counts=True)
        assert len(vals) == c.N // c.B and (counts == c.B).all()
        assert y in labels
    assert (b.classes < c.K).all()


def test_test_sets(task):
    c = task.config
    sets = task.test_sets(400, rng())
    assert set(sets) == {"test", "ic", "ic2", "iw"}
    assert (sets["ic"].classes >= c.K).all()  # all novel
    ic2 = sets["ic2"]
    assert (ic2.classes < c.K).all()
    np.testing.assert_array_equal(ic2.labels, (ic2.classes[:, : c.N] % c.L + 1) % c.L)
    np.testing.assert_array_equal(ic2.y, (ic2.classes[:, c.N] % c.L + 1) % c.L)
    iw = sets["iw"]
    assert (iw.classes < c.K).all()
    # i.i.d. context: the query class is in the context with prob 1 - (1 - 1/K)^N (~1.6%)
    big = task.test_set("iw", 20000, rng(3))
    rate = (big.classes[:, : c.N] == big.classes[:, c.N : c.N + 1]).any(1).mean()
    expected = 1 - (1 - 1 / c.K) ** c.N
    assert abs(rate - expected) < 4 * np.sqrt(expected / 20000)


def test_mixture_fractions_and_item_norms(task):
    c = task.config
    b = task.sample(20000, rng(5))
    novel = (b.classes >= c.K).any(1)
    assert abs(novel.mean() - c.p_C) < 0.02
    items = b.x[:, 0 : 2 * c.N + 1 : 2, c.n_pos :]
    assert abs((items**2).sum(-1).mean() - 1.0) < 0.03  # E||x||^2 = 1 by the 1/sqrt(1+eps^2) factor


def test_zipf_alpha_skews_iid_classes():
    task = ICLTask.from_seed(TaskConfig(alpha=1.0, p_B=0.0, p_C=0.0), 0)
    cls = task.sample(5000, rng()).classes.ravel()
    assert (cls == 0).mean() > 10 * (cls == 255).mean()


def test_same_seed_same_batch(task):
    a, b = task.sample(64, rng(7)), task.sample(64, rng(7))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"B": 3}, "B"),
        ({"L": 30}, "L"),
        ({"L": 2, "K": 4, "B": 1}, "N/B"),
        ({"epsilon": -0.1}, "epsilon"),
        ({"p_B": 1.5}, "p_B"),
        ({"p_C": -0.1}, "p_C"),
        ({"B": 0}, "B=0"),
        ({"Nmax": 4}, "Nmax"),
        ({"K": 0}, "K"),
        ({"D": 2.5}, "D"),
        ({"alpha": float("nan")}, "alpha"),
        ({"n_novel": 2}, "n_novel"),
        ({"no_repeats": "yes"}, "no_repeats"),
    ],
)
def test_invalid_task_configs_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name.replace("/", "/")):
        TaskConfig(**kwargs)


def test_invalid_sample_arguments(task):
    with pytest.raises(ValueError, match="size"):
        task.sample(0, rng())
    with pytest.raises(ValueError, match="p_B"):
        task.sample(4, rng(), p_B=2.0)
    with pytest.raises(ValueError, match="test set"):
        task.test_set("nope", 4, rng())
    with pytest.raises(ValueError, match="mu must be"):
        ICLTask(TaskConfig(), np.zeros((3, 3)), np.zeros((32, 85)))


def test_episodes_match_the_notebook_layout():
    cfg = EpisodeConfig(D=50, K=20, T=12, epsilon=0.1)
    ep = sample_episodes(cfg, 300, rng())
    E, T, D = ep.tokens.shape
    assert (E, T, D) == (300, 12, 50)
    assert (ep.tokens[:, -1] == 0).all()
    assert (ep.token_labels[:, 0::2] == -1).all() and (ep.token_labels[:, 1:-1:2] >= 1).all()
    assert all(t in row for t, row in zip(ep.target, ep.token_labels))  # the query class is in context
    # repeated classes share their label vector; the query item is within eps/D noise of its class
    for e in range(E):
        lab = ep.token_labels[e]
        pos = np.flatnonzero(lab == ep.target[e])
        np.testing.assert_array_equal(ep.tokens[e, pos[0]], ep.tokens[e, pos[-1]])
        diff = ep.tokens[e, -2] - ep.tokens[e, pos[0] - 1]
        assert np.abs(diff).max() < 10 * 0.1 / D


def test_episode_noise_scale_option():
    tight = sample_episodes(EpisodeConfig(D=100, epsilon=1.0), 200, rng())
    loose = sample_episodes(EpisodeConfig(D=100, epsilon=1.0, noise="1/sqrt(D)"), 200, rng())

    def spread(ep):
        lab = ep.token_labels
        out = []
        for e in range(len(ep)):
            pos = np.flatnonzero(lab[e] == ep.target[e])[0]
            out.append(np.std(ep.tokens[e, -2] - ep.tokens[e, pos - 1]))
        return np.mean(out)

    assert spread(loose) > 5 * spread(tight)


@pytest.mark.parametrize("kwargs", [{"T": 7}, {"T": 2}, {"K": 1}, {"D": 0}, {"epsilon": -1}, {"noise": "1/D^2"}])
def test_invalid_episode_configs(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        EpisodeConfig(**kwargs)


def test_episodes_from_reddy_batch(task):
    r = rng()
    b = task.test_set("ic2", 50, r)
    ep = episodes_from_batch(b, task, r)
    c = task.config
    assert ep.tokens.shape == (50, c.seq_len + 1, c.D)
    np.testing.assert_array_equal(ep.tokens[:, : c.seq_len], b.x[:, :, c.n_pos :])
    assert (ep.tokens[:, -1] == 0).all()
    np.testing.assert_array_equal(ep.token_labels[:, 1 : 2 * c.N : 2], b.labels)
    np.testing.assert_array_equal(ep.target, b.y)
    assert ep.label_bank.shape == (c.L, c.D)

import numpy as np
import pytest
import torch

from evolution.engine import CMAEngine, EngineConfig
from evolution.policies import H2O, NAMM, FullCache, L2Norm, MemoryPolicy, RandomPolicy, Recency
from evolution.presses import TOVA, KeyDiff, PyramidKV, SnapKV, pyramid_budgets
from evolution.rollout import rollout
from evolution.scorers import BAM, MLPScorer
from evolution.spectrogram import NormStats, age_embedding, attention_spectrogram, ema_frames
from transformers_mini.core.attention import KVCache
from transformers_mini.core.config import GPTConfig
from transformers_mini.core.model import GPT

torch.set_num_threads(1)


def sphere(X):
    return -(X**2).sum(1)


def rosenbrock(X):
    return -(100 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1 - X[:, :-1]) ** 2).sum(1)


def run(engine, f, gens):
    for _ in range(gens):
        X = engine.ask()
        engine.tell(X, f(X))
    return engine


# -- engine -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("separable", [True, False])
def test_engine_minimises_a_sphere(separable):
    e = run(
        CMAEngine(EngineConfig(dim=10, popsize=16, sigma0=0.5, separable=separable, seed=1), np.ones(10)), sphere, 200
    )
    assert e.best_fitness > -1e-8 and np.abs(e.mean).max() < 1e-4


def test_engine_solves_rosenbrock_within_budget():
    e = run(CMAEngine(EngineConfig(dim=6, popsize=16, sigma0=0.3, separable=False, seed=3)), rosenbrock, 1200)
    assert e.best_fitness > -1e-8
    np.testing.assert_allclose(e.mean, 1.0, atol=1e-3)


def test_engine_resumes_exactly_and_leaves_global_rng_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    cfg = EngineConfig(dim=20, popsize=8, seed=5)
    straight = run(CMAEngine(cfg), sphere, 10)
    half = run(CMAEngine(cfg), sphere, 5)
    half.ask()  # a pending population survives the checkpoint too
    resumed = run(CMAEngine.from_bytes(half.to_bytes()), sphere, 5)
    np.testing.assert_array_equal(straight.mean, resumed.mean)
    np.testing.assert_array_equal(straight.ask(), resumed.ask())
    assert straight.sigma == resumed.sigma and resumed.generation == 10
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_noise_handling_raises_sigma_under_noise_only_and_resumes_exactly():
    """UH-CMA-ES: on a sphere buried in noise the re-evaluated ranks change beyond chance, noise_s turns
    positive and sigma grows past plain CMA-ES's; on the noiseless sphere the measure stays negative and it
    converges. A checkpoint carries the handler, and numpy's global generator is left alone."""
    rng = np.random.default_rng(0)

    def noisy(X):
        return sphere(X) + rng.normal(0, 100.0, len(X))

    def drive(engine, f, gens):
        for _ in range(gens):
            X = engine.ask()
            engine.tell(X, f(X), lambda x: f(x[None])[0])
        return engine

    plain = run(CMAEngine(EngineConfig(dim=10, popsize=16, sigma0=0.5, seed=1), np.ones(10)), noisy, 30)
    handled = drive(CMAEngine(EngineConfig(dim=10, popsize=16, sigma0=0.5, seed=1, noise_reevals=3), np.ones(10)),
                    noisy, 30)  # fmt: skip
    assert handled.stats()["noise_s"] > 0 and handled.sigma > 2 * plain.sigma
    clean = drive(CMAEngine(EngineConfig(dim=10, popsize=16, sigma0=0.5, seed=1, noise_reevals=3), np.ones(10)),
                  sphere, 200)  # fmt: skip
    assert clean.stats()["noise_s"] < 0 and clean.best_fitness > -1e-8
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    cfg = EngineConfig(dim=10, popsize=8, seed=2, noise_reevals=2)
    straight = drive(CMAEngine(cfg), sphere, 10)
    resumed = drive(CMAEngine.from_bytes(drive(CMAEngine(cfg), sphere, 5).to_bytes()), sphere, 5)
    np.testing.assert_array_equal(straight.mean, resumed.mean)
    assert straight.sigma == resumed.sigma
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    with pytest.raises(ValueError, match="noise handling needs reevaluate"):
        e = CMAEngine(cfg)
        e.tell(e.ask(), np.zeros(8))


def test_engine_input_errors():
    with pytest.raises(ValueError, match="popsize"):
        EngineConfig(dim=4, popsize=1)
    with pytest.raises(ValueError, match="sigma0"):
        EngineConfig(dim=4, sigma0=0)
    e = CMAEngine(EngineConfig(dim=4, popsize=4))
    X = e.ask()
    with pytest.raises(ValueError, match="last ask"):
        e.tell(X + 1, np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        e.tell(X, [0, 1, np.nan, 2])
    with pytest.raises(ValueError, match="x0"):
        CMAEngine(EngineConfig(dim=4), np.zeros(3))


# -- features ---------------------------------------------------------------------------------------


def test_spectrogram_matches_scipy_and_torch_stft():
    import scipy.signal as ss

    x = np.random.default_rng(0).random((3, 2, 16 + 64))
    ours = attention_spectrogram(torch.tensor(x)).numpy()
    assert ours.shape == (3, 2, 4, 17)
    _, _, Z = ss.stft(
        x, window="hann", nperseg=32, noverlap=16, boundary=None, padded=False, detrend=False, scaling="spectrum"
    )
    np.testing.assert_allclose(ours, np.moveaxis(np.abs(Z), -1, -2) * ss.get_window("hann", 32).sum(), atol=1e-12)
    ref = torch.stft(
        torch.tensor(x).flatten(0, 1),
        32,
        16,
        window=torch.hann_window(32, periodic=True, dtype=torch.float64),
        center=False,
        return_complex=True,
    ).abs()
    np.testing.assert_allclose(ours.reshape(6, 4, 17), ref.transpose(-1, -2).numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="n_fft"):
        attention_spectrogram(torch.zeros(5, 20))


def test_ema_over_frames_by_hand():
    a = 0.99**16
    spec = torch.tensor([[[[1.0], [2.0], [4.0]]]])  # (1 token, 3 frames, 1 bin)
    old = torch.tensor([[[10.0]]])
    got = ema_frames(spec, torch.tensor([[0]]), old)
    want = a**3 * 10 + (1 - a) * (a**2 * 1 + a * 2 + 4)
    assert got.item() == pytest.approx(want)
    late = ema_frames(spec, torch.tensor([[2]]), None)  # arrived in the last frame: earlier ones dropped
    assert late.item() == pytest.approx((1 - a) * 4)


def test_age_embedding_and_norm_stats():
    e = age_embedding(torch.tensor([0, 1, 100]))
    assert e.shape == (3, 8)
    np.testing.assert_allclose(e[0].numpy(), [0, 0, 0, 0, 1, 1, 1, 1])
    assert e[2, 0].item() == pytest.approx(np.sin(100.0))
    norm = NormStats(2)
    norm.update(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    norm.freeze()
    norm.update(torch.tensor([[100.0, 100.0]]))  # frozen: ignored
    np.testing.assert_allclose(norm.mean, [2, 4])
    np.testing.assert_allclose(norm.normalise(torch.tensor([[3.0, 6.0]])).numpy(), [[1, 1]])
    assert NormStats.from_dict(norm.to_dict()).mean.tolist() == [2, 4]
    with pytest.raises(ValueError, match="full-cache pass"):
        NormStats().freeze()


# -- scorers ----------------------------------------------------------------------------------------


def test_bam_has_the_papers_parameter_count_and_zero_keeps_all():
    bam = BAM()
    assert bam.n_params == 4172
    X = torch.randn(2, 3, 7, 25)
    valid = torch.ones(2, 3, 7, dtype=torch.bool)
    assert (bam.score(torch.zeros(2, 4172), X, valid) == 0).all()
    assert (MLPScorer().score(torch.zeros(2, MLPScorer().n_params), X, valid) == 0).all()


@pytest.mark.parametrize("scorer", [BAM(), BAM(mask="none", mult=False), MLPScorer(hidden=8, depth=2)])
def test_batched_population_scores_equal_one_by_one(scorer):
    g = torch.Generator().manual_seed(0)
    P = 4
    params = torch.randn(P, scorer.n_params, generator=g) * 0.2
    X = torch.randn(P, 3, 9, 25, generator=g)
    valid = torch.rand(P, 3, 9, generator=g) > 0.2
    batched = scorer.score(params, X, valid)
    single = torch.cat([scorer.score(params[i : i + 1], X[i : i + 1], valid[i : i + 1]) for i in range(P)])
    assert torch.equal(batched.isinf(), single.isinf())
    torch.testing.assert_close(batched[valid], single[valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mask", ["backward", "none", "forward"])
def test_bam_fused_attention_equals_the_plain_reference(mask):
    g = torch.Generator().manual_seed(2)
    params = torch.randn(3, 4172, generator=g) * 0.3
    X = torch.randn(3, 2, 40, 25, generator=g)
    valid = torch.rand(3, 2, 40, generator=g) > 0.3
    valid[0, 0, -5:] = False  # trailing invalid tokens: rows that see nothing under the backward mask
    valid[1, 1] = False  # a group with no valid token at all
    fast, plain = BAM(mask=mask).score(params, X, valid), BAM(mask=mask, reference=True).score(params, X, valid)
    assert torch.equal(fast.isinf(), ~valid) and torch.equal(plain.isinf(), ~valid)
    torch.testing.assert_close(fast[valid], plain[valid], atol=1e-5, rtol=1e-5)


def test_backward_mask_looks_only_at_newer_tokens():
    bam = BAM()
    params = torch.randn(1, bam.n_params, generator=torch.Generator().manual_seed(1)) * 0.3
    X = torch.randn(1, 1, 6, 25)
    valid = torch.ones(1, 1, 6, dtype=torch.bool)
    Y = X.clone()
    Y[..., 3, :] += 1.0  # change token 3
    a, b = bam.score(params, X, valid), bam.score(params, Y, valid)
    assert torch.equal(a[..., 4:], b[..., 4:])  # newer tokens do not see older ones
    assert not torch.equal(a[..., :4], b[..., :4])


# -- policies on hand-built caches ------------------------------------------------------------------


def hand_cache(T=12, H=2, norms=None):
    cache = KVCache(1)
    k = torch.ones(1, H, T, 4) if norms is None else norms.view(1, 1, T, 1).expand(1, H, T, 4).clone()
    cache.append(0, k, torch.zeros(1, H, T, 4), torch.arange(T))
    cache.n_seen = T
    return cache


def kept(policy, cache):
    return torch.nonzero(policy.keep(0, cache)[0, 0]).flatten().tolist()


def test_recency_keeps_sinks_and_the_newest():
    assert kept(Recency(16, budget=6, sinks=2), hand_cache()) == [0, 1, 8, 9, 10, 11]


def test_h2o_keeps_recent_half_and_heavy_hitters():
    cache = hand_cache()
    probs = torch.zeros(1, 2, 3, 12)
    probs[..., 2] = 0.5
    probs[..., 5] = 0.3
    probs[..., 11] = 0.2
    pol = H2O(16, budget=6)
    pol.observe(0, probs, cache)
    assert kept(pol, cache) == [2, 5, 8, 9, 10, 11]  # 3 recent + the 3 largest accumulated others (ties: newer)


def test_l2_keeps_the_smallest_key_norms():
    norms = torch.tensor([5.0, 1, 4, 0.5, 3, 2, 9, 8, 7, 6, 10, 11])
    assert kept(L2Norm(16, budget=4), hand_cache(norms=norms)) == [1, 3, 5, 11]  # newest always kept


def test_random_keeps_budget_and_is_reproducible():
    a, b = kept(RandomPolicy(16, 5, seed=3), hand_cache()), kept(RandomPolicy(16, 5, seed=3), hand_cache())
    assert a == b and len(a) == 5 and 11 in a


def test_threshold_selector_evicts_negative_scores():
    class Fixed(MemoryPolicy):
        def score(self, layer, cache):
            return torch.tensor([1.0, -1, 0, -0.1, 2, -5]).expand(1, 2, 6)

    assert kept(Fixed(16), hand_cache(6)) == [0, 2, 4, 5]
    assert kept(FullCache(16), hand_cache(6)) == list(range(6))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: FullCache(n_up=40), "multiple of 16"),
        (lambda: FullCache(n_up=8), "n_up"),
        (lambda: H2O(16), "budget"),
        (lambda: Recency(16, budget=0), "budget"),
        (lambda: L2Norm(16), "budget"),
        (lambda: NAMM(BAM(), np.zeros(10)), "4172"),
        (lambda: TOVA(16), "budget"),
        (lambda: SnapKV(16, budget=8, kernel=4), "odd"),
        (lambda: SnapKV(16, budget=8, window=0), "window"),
        (lambda: PyramidKV(16, budget=8, beta=0.5), "beta"),
    ],
)
def test_invalid_policies(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# -- rollouts ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(
        GPTConfig(vocab_size=32, block_size=512, n_layer=2, n_head=4, n_kv_head=2, d_model=32, pos="rotary")
    ).eval()


def test_keep_all_policies_equal_no_policy_bit_exactly(model):
    prompt = torch.randint(0, 32, (2, 150))
    plain, _ = rollout(model, prompt, 20)
    full, _ = rollout(model, prompt, 20, FullCache(32))
    zero, stats = rollout(model, prompt, 20, NAMM(BAM(), np.zeros(4172), n_up=32))  # all scores 0 -> keep all
    assert torch.equal(plain, full) and torch.equal(plain, zero)
    assert stats.alive_fraction and all(f == 1.0 for f in stats.alive_fraction)


def test_budgeted_policies_shrink_the_cache(model):
    prompt = torch.randint(0, 32, (1, 256))
    _, full = rollout(model, prompt, 4)
    for policy in (Recency(32, budget=64), H2O(32, budget=64), L2Norm(32, budget=64), RandomPolicy(32, budget=64)):
        _, s = rollout(model, prompt, 4, policy)
        assert max(s.layer_fraction) < 0.35 and s.final_bytes < full.final_bytes / 2, policy.name


def test_namm_evicts_per_head(model):
    """Two KV heads that saw different attention keep different token sets under the same NAMM."""
    g = torch.Generator().manual_seed(0)
    cache = KVCache(1)
    T = 24
    cache.append(0, torch.randn(1, 2, T, 4, generator=g), torch.randn(1, 2, T, 4, generator=g), torch.arange(T))
    cache.n_seen = T
    probs = torch.zeros(1, 2, 32, T)
    probs[0, 0, :, :12] = 1 / 12  # head 0 attends to the older half, head 1 to the newer half
    probs[0, 1, :, 12:] = 1 / 12
    params = np.random.default_rng(0).normal(0, 0.5, 4172)
    policy = NAMM(BAM(), params, n_up=32)
    policy.observe(0, probs, cache)
    keep = policy.keep(0, cache)[0]
    assert keep[0].any() and keep[1].any() and not torch.equal(keep[0], keep[1])
    prompt = torch.randint(0, 32, (2, 192))
    with pytest.raises(ValueError, match="parameter rows"):
        rollout(model, prompt, 4, NAMM(BAM(), np.zeros((3, 4172)), n_up=32))


# -- the kvpress family on hand-built caches -----------------------------------------------------------


def test_tova_keeps_the_last_querys_head_averaged_attention_in_every_head():
    cache = hand_cache()
    probs = torch.zeros(1, 2, 3, 12)
    probs[:, :, :2, 0] = 1.0  # earlier queries of the chunk do not count
    probs[0, 0, 2, 2], probs[0, 0, 2, 7] = 0.6, 0.4
    probs[0, 1, 2, 5], probs[0, 1, 2, 7] = 0.5, 0.5  # head means: token 7 0.45, 2 0.30, 5 0.25
    pol = TOVA(16, budget=4)
    pol.observe(0, probs, cache)
    keep = pol.keep(0, cache)[0]
    assert torch.nonzero(keep[0]).flatten().tolist() == [2, 5, 7, 11] and torch.equal(keep[0], keep[1])


def test_snapkv_pools_the_window_queries_attention_over_older_tokens():
    """Window 4 of 12 tokens, kernel 3. The two oldest query rows fall out of the window (their mass on
    token 5 must not count), the window's own tokens are kept and their attention is not pooled into
    token 7: token 2's mass spreads over 1-3 and fills the 3 places left."""
    cache = hand_cache()
    pol = SnapKV(16, budget=7, window=4, kernel=3)
    early = torch.zeros(1, 2, 2, 12)
    early[..., 5] = 1.0
    late = torch.zeros(1, 2, 4, 12)
    late[..., 2], late[..., 8] = 0.5, 0.5
    pol.observe(0, early, cache)
    pol.observe(0, late, cache)
    assert kept(pol, cache) == [1, 2, 3, 8, 9, 10, 11]
    assert cache.side[0]["snap_rows"].shape == (1, 2, 12, 4)


def test_snapkv_rows_follow_the_columns_through_compaction(model):
    """After evictions drop columns, the buffered window rows stay aligned with the surviving tokens."""
    prompt = torch.randint(0, 32, (1, 200))
    _, stats = rollout(model, prompt, 4, SnapKV(32, budget=40, window=48))
    assert max(stats.layer_fraction) < 0.4


def test_pyramid_budgets_fall_linearly_and_keep_the_mean():
    assert pyramid_budgets(100, 4, 1000) == [195, 132, 68, 5]  # 2b - b/20 down to b/20
    assert pyramid_budgets(100, 4, 150) == [150, 117, 83, 50]  # the first layer capped at the tokens seen
    assert pyramid_budgets(100, 4, 90) == [100] * 4 and pyramid_budgets(100, 1, 1000) == [100]
    cache = KVCache(2)
    for layer in range(2):
        cache.append(layer, torch.ones(1, 1, 40, 4), torch.zeros(1, 1, 40, 4), torch.arange(40))
    cache.n_seen = 40
    pol = PyramidKV(16, budget=[8, 12], window=4)  # a per-layer list counts by its mean, 10
    pol.observe(0, torch.full((1, 1, 4, 40), 1 / 40), cache)
    pol.observe(1, torch.full((1, 1, 4, 40), 1 / 40), cache)
    assert [int(pol.keep(i, cache).sum()) for i in range(2)] == pyramid_budgets(10, 2, 40) == [20, 1]


def test_keydiff_keeps_the_keys_least_like_their_mean_direction():
    k = torch.tensor([[1.0, 0]] * 8)
    k[2], k[5], k[6] = torch.tensor([0.0, 1]), torch.tensor([-1.0, 0]), torch.tensor([1.0, 1])
    cache = KVCache(1)
    cache.append(0, k.view(1, 1, 8, 2).expand(1, 2, 8, 2).clone(), torch.zeros(1, 2, 8, 2), torch.arange(8))
    cache.n_seen = 8
    assert kept(KeyDiff(16, budget=3), cache) == [2, 5, 7]  # cosines with the mean: 0.34 and -0.94; 7 is newest
    tilted = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1], [1, 1.2], [1, 1.2], [1, 1.2], [1, 1.2]])
    cache = KVCache(1)
    cache.append(0, tilted.view(1, 1, 8, 2).clone(), torch.zeros(1, 1, 8, 2), torch.arange(8))
    cache.n_seen = 8
    assert kept(KeyDiff(16, budget=2), cache) == [3, 7]  # with keys 0-1 the mean leans to (1, 0)
    cache.alive[0][..., :2] = False  # dead keys leave the mean: it leans to (0, 1), so key 2 is the outlier
    assert kept(KeyDiff(16, budget=2), cache) == [2, 7]


def test_kvzip_scores_are_the_replays_max_attention_and_it_keeps_sinks_and_its_top_tokens():
    """KVzip's score of a prompt token is the most attention any query of the prompt's replay (after the
    separator) pays it in one full forward pass over prompt + separator + prompt; chunking the replay
    through the cache changes nothing. The rollout keeps the sinks and the best-scored tokens."""
    from evolution.presses import KVzip

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=32, block_size=512, n_layer=2, n_head=4, n_kv_head=2, d_model=16, pos="rotary")
    model = GPT(cfg).eval()
    prompt = torch.randint(3, 32, (2, 128))
    policy = KVzip(64, 16, n_sink=4, separator=2)
    with torch.no_grad():
        policy.prepare(model, prompt)
        _, attn = model(torch.cat([prompt, torch.full((2, 1), 2), prompt], 1), return_attn=True)
    for layer in range(2):
        expected = attn[layer][:, :, 128:, :128].reshape(2, 2, 2, 129, 128).amax(dim=(2, 3))
        torch.testing.assert_close(policy.replay[layer], expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(policy.replay[0], policy.replay[1])  # each layer its own scores
    out, stats = rollout(model, prompt, 1, policy)  # two updates, at 64 and 128 tokens
    assert all(abs(f - 16 / 128) < 1e-9 for f in stats.layer_fraction)
    cache = KVCache(2)
    with torch.no_grad():
        model(prompt, cache)
    s = policy.score(1, cache)
    assert torch.isinf(s[..., :4]).all() and torch.isfinite(s[..., 4:]).all()
    top = policy.replay[1][..., 4:-1].topk(11).indices + 4  # 16 = 4 sinks + newest + the 11 best
    expect = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, top, True)
    expect[..., :4] = expect[..., -1] = True
    assert torch.equal(policy.keep(1, cache), expect)
    with pytest.raises(ValueError, match="separator 40 is not in the model's vocabulary of 32"):
        KVzip(64, 16, separator=40).prepare(model, prompt)


def test_oracle_reads_the_answer_querys_full_cache_attention_and_keeps_its_top_tokens():
    from evolution.policies import Oracle

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=32, block_size=256, n_layer=2, n_head=4, n_kv_head=2, d_model=16, pos="rotary")
    model = GPT(cfg).eval()
    prompt = torch.randint(0, 32, (2, 128))
    oracle = Oracle(64, 16)
    with torch.no_grad():
        oracle.prepare(model, prompt)
        _, attn = model(prompt, return_attn=True)
    for layer in range(2):
        expected = attn[layer][:, :, -1].reshape(2, 2, 2, 128).mean(2)
        torch.testing.assert_close(oracle.future[layer], expected, rtol=1e-5, atol=1e-6)
    out, stats = rollout(model, prompt, 1, oracle)  # two updates, at 64 and 128 tokens
    assert all(abs(f - 16 / 128) < 1e-9 for f in stats.layer_fraction)
    # at the last update the kept tokens are the answer query's 16 most attended (newest kept as every policy)
    cache = KVCache(2)
    with torch.no_grad():
        model(prompt, cache)
    s = oracle.score(0, cache)
    s[..., -1] = float("inf")
    assert torch.equal(
        oracle.keep(0, cache), torch.zeros_like(s, dtype=torch.bool).scatter_(-1, s.topk(16).indices, True)
    )

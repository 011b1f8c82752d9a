import math

import numpy as np
import pytest
import torch

from amicl.task import ICLTask, TaskConfig
from transformers_mini.core.attention import KVCache, attend, attend_causal_fused
from transformers_mini.core.config import GPTConfig, StreamConfig, ToyConfig, TrainConfig
from transformers_mini.core.model import GPT, Block, ToyTransformer, toy_init

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def batch():
    b = ICLTask.from_seed(TaskConfig(), 0).sample(16, np.random.default_rng(0))
    return torch.from_numpy(b.x), torch.from_numpy(b.y)


def toy(kind="none", **kw):
    return ToyConfig(stream=StreamConfig(kind=kind, **kw) if kind != "none" else StreamConfig())


def test_parameter_count_matches_the_paper():
    assert ToyTransformer([toy()], [0]).n_params() == 207_303  # "~207k"
    assert ToyTransformer([toy("V")], [0]).n_params() == 207_303  # the streams add no parameters


def test_zero_weight_streams_equal_the_baseline_exactly(batch):
    x, _ = batch
    cfgs = [toy(), toy("V", lam=0.0), toy("K", lam=0.0), toy("Q", lam=0.0), toy("V")]
    logits = ToyTransformer(cfgs, [3] * 5)(x)
    for e in (1, 2, 3):
        assert torch.equal(logits[e], logits[0])
    assert not torch.allclose(logits[4], logits[0])
    for mix in ("add", "convex"):
        torch.manual_seed(0)
        base = GPT(GPTConfig(n_layer=3))
        torch.manual_seed(0)
        zero = GPT(GPTConfig(n_layer=3, stream=StreamConfig(kind="V", lam=0.0, mix=mix)))
        idx = torch.randint(0, 64, (2, 12))
        assert torch.equal(base(idx), zero(idx))


def test_attention_rows_sum_to_one_and_are_causal(batch):
    x, _ = batch
    logits, attn = ToyTransformer([toy(), toy("V")], [0, 1])(x, return_attn=True)
    assert len(attn) == 2 and attn[0].shape == (2, 16, 17, 17)
    for p in attn:
        torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
        assert (torch.triu(p, diagonal=1) == 0).all()
    fast = ToyTransformer([toy(), toy("V")], [0, 1])(x)
    torch.testing.assert_close(fast, logits, atol=1e-6, rtol=0)  # last-token shortcut == full pass


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_fused_causal_attention_equals_the_explicit_reference(scale):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 2, 3, 33, 8, generator=g, requires_grad=True)  # 2 KV heads, 3 query heads each
    k, v = (torch.randn(2, 2, 33, 8, generator=g, requires_grad=True) for _ in range(2))
    pos = torch.arange(33)
    ref = attend(q, k, v, pos, pos, scale)[0]
    fused = attend_causal_fused(q, k, v, scale)
    torch.testing.assert_close(fused, ref, atol=1e-6, rtol=0)
    w = torch.randn(ref.shape, generator=g)
    grads = [torch.autograd.grad((o * w).sum(), (q, k, v)) for o in (ref, fused)]
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_batched_seeds_equal_separate_models(batch):
    x, y = batch
    seeds = [0, 1, 2]
    ens = ToyTransformer([toy("V")] * 3, seeds)
    singles = [ToyTransformer([toy("V")], [s]) for s in seeds]
    out = ens(x)
    for e, m in enumerate(singles):
        torch.testing.assert_close(out[e], m(x)[0], atol=1e-6, rtol=1e-5)
    # one SGD step each: the ensemble's members stay equal to the separate models
    for model in [ens] + singles:
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(model.members), reduction="none")
        loss.view(model.members, -1).mean(1).sum().backward()
        with torch.no_grad():
            for p in model.parameters():
                assert torch.isfinite(p.grad).all()
                p.add_(p.grad, alpha=-0.5)
    for e, m in enumerate(singles):
        torch.testing.assert_close(ens.qkv[e], m.qkv[0], atol=1e-6, rtol=1e-5)


def test_same_seed_same_init_across_arms():
    m = ToyTransformer([toy(), toy("V"), toy("K")], [7, 7, 7])
    assert torch.equal(m.qkv[0], m.qkv[1]) and torch.equal(m.qkv[0], m.qkv[2])
    assert abs(m.qkv[0].std().item() - (1 / 85) ** 0.5) < 0.005  # N(0, 1/D), D = 85


def test_learned_stream_weight_gets_gradients(batch):
    x, y = batch
    m = ToyTransformer([toy("V", source="first", mix="convex", lam=0.5, learn=True)] * 2, [0, 1])
    assert m.n_params() == 207_304
    torch.nn.functional.cross_entropy(m(x).flatten(0, 1), y.repeat(2)).backward()
    assert m.stream_lam.grad[:, 1, 2].abs().min() > 0 and (m.stream_lam.grad[:, :, :2] == 0).all()


@pytest.mark.parametrize("pos, shift", [("learned", False), ("rotary", False), ("rotary", True)])
@pytest.mark.parametrize("stream", ["none", "V", "K"])
def test_kv_cached_decoding_equals_full_recompute(pos, shift, stream):
    torch.manual_seed(0)
    cfg = GPTConfig(
        n_layer=3, n_head=4, n_kv_head=2, d_model=32, pos=pos, token_shift=shift, stream=StreamConfig(kind=stream)
    )
    model = GPT(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, 20))
    with torch.no_grad():
        full = model(idx)
        cache = KVCache(cfg.n_layer)
        parts = [model(idx[:, :7], cache)] + [model(idx[:, t : t + 1], cache) for t in range(7, 20)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-6, rtol=0)
    assert cache.n_seen == 20 and cache.k[0].shape == (2, 2, 20, 8)


def test_alive_mask_evicts_and_compaction_keeps_outputs():
    torch.manual_seed(1)
    cfg = GPTConfig(n_layer=2, n_head=2, d_model=16)
    model = GPT(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (1, 10))
    keep = torch.ones(1, 2, 9, dtype=torch.bool)
    keep[:, :, 2:5] = False

    def prefilled_and_evicted():
        cache = KVCache(cfg.n_layer)
        model(idx[:, :9], cache)
        for layer in range(cfg.n_layer):
            cache.evict(layer, keep)
        return cache

    with torch.no_grad():
        cache = prefilled_and_evicted()
        logits, attn = model(idx[:, 9:], cache, return_attn=True)
        assert (attn[0][..., 2:5] == 0).all()
        torch.testing.assert_close(attn[0].sum(-1), torch.ones(1, 2, 1))
        assert 0.6 < cache.alive_fraction() < 0.8
        compacted = prefilled_and_evicted()
        before = compacted.nbytes()
        compacted.compact()
        assert compacted.nbytes() == before * 6 // 9
        torch.testing.assert_close(model(idx[:, 9:], compacted), logits, atol=1e-6, rtol=0)


def test_all_alive_mask_equals_no_mask():
    q, k, v = torch.randn(2, 3, 1, 5, 4), torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    pos = torch.arange(5)
    a, _ = attend(q, k, v, pos, pos)
    b, _ = attend(q, k, v, pos, pos, alive=torch.ones(2, 3, 5, dtype=torch.bool))
    assert torch.equal(a, b)


def test_gpt_counts_and_limits():
    model = GPT(GPTConfig(block_size=8))
    d, ff, vocab, block, ln = 128, 512, 64, 8, 2 * 128  # a LayerNorm has weight and bias; Linear layers none
    per_block = 2 * ln + 4 * d * d + 2 * ff * d  # two LayerNorms, q k v o, the MLP's two matrices
    assert model.n_params() == vocab * d + block * d + 4 * per_block + ln  # tied read-out: no extra matrix
    grouped = GPT(GPTConfig(block_size=8, n_kv_head=2))
    assert model.n_params() - grouped.n_params() == 4 * 2 * d * (d // 2)  # k and v shrink to 2 of 4 heads
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="x must be"):
        ToyTransformer([toy()], [0])(torch.zeros(2, 3, 17, 150))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: StreamConfig(kind="W"), "stream"),
        (lambda: StreamConfig(source="last"), "source"),
        (lambda: GPTConfig(d_model=30, n_head=4), "n_head must divide d_model"),
        (lambda: GPTConfig(n_head=4, n_kv_head=3), "n_kv_head"),
        (lambda: GPTConfig(pos="alibi"), "pos"),
        (lambda: ToyConfig(n_layer=1, stream=StreamConfig(kind="V")), "n_layer"),
        (lambda: TrainConfig(lr=-0.1), "lr"),
        (lambda: TrainConfig(threshold=0.0), "threshold"),
        (lambda: TrainConfig(threshold=1.2), "threshold"),
        (lambda: TrainConfig(eval_every=300, checkpoint_every=1000), "checkpoint_every"),
        (lambda: ToyTransformer([toy(), ToyConfig(d_in=20)], [0, 1]), "share"),
        (lambda: KVCache(0), "n_layer"),
    ],
)
def test_invalid_configs(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_official_init_couples_b2_b3_and_ties_the_readout_to_layer_3():
    """Hand-built from the independent draws of the same seed: only b3 and the readout change."""
    cfg = toy()
    official = ToyConfig(stream=cfg.stream, init="official")
    a = toy_init(cfg, torch.Generator().manual_seed(5))
    b = toy_init(official, torch.Generator().manual_seed(5))
    for name in ("qkv", "mlp_w"):
        assert torch.equal(a[name], b[name])
    assert b["mlp_b"][2] == b["mlp_b"][1] == a["mlp_b"][1] and b["mlp_b"][0] == a["mlp_b"][0]
    w3 = a["mlp_w"][2]  # (150, 150): its first 150 * 32 entries, row-major, are the first 32 rows
    assert torch.equal(b["readout"][0], w3[0, :32] / math.sqrt(2))  # readout row 0 = W3 entries 0..31
    assert torch.equal(b["readout"][4, 22], w3[1, 0] / math.sqrt(2))  # entry 4*32+22 = 150 -> W3[1, 0]
    assert torch.equal(b["readout"].reshape(-1), w3[:32].reshape(-1) / math.sqrt(2))
    with pytest.raises(ValueError, match="init"):
        ToyConfig(init="jax")


def test_detached_stream_keeps_the_forward_and_cuts_only_the_streamed_gradient(batch):
    """V:detach computes exactly what V computes; its gradients differ from V's only in layer 1's value
    weights, the one thing the added V1 x0 term depends on."""
    x, y = batch
    model = ToyTransformer([toy("V"), toy("V", detach=True)], [3, 3])
    logits = model(x)
    assert torch.equal(logits[0], logits[1])
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.expand(2, -1).flatten(), reduction="sum").backward()
    for name, p in model.named_parameters():
        g = p.grad
        if name == "qkv":
            assert torch.equal(g[0, 1:], g[1, 1:])  # layer 2
            assert torch.equal(g[0, 0, :2], g[1, 0, :2])  # layer 1 queries and keys
            assert not torch.allclose(g[0, 0, 2], g[1, 0, 2])  # layer 1 values: the cut path
        else:
            assert torch.equal(g[0], g[1]), name


def test_lm_v_pass_hands_each_block_the_previous_blocks_raw_values(monkeypatch):
    """The AMICL paper's V-pass: block l >= 2 attends over v_l + v_{l-1}, with v_{l-1} block l-1's own raw
    value (before its own stream), and block 1 receives nothing."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=3, n_head=4, d_model=32, pos="learned", scale=False,
                    bias=True, stream=StreamConfig(kind="V"))  # fmt: skip
    model, seen, forward = GPT(cfg).eval(), [], Block.forward

    def spy(self, x, raw, **kw):
        seen.append((x, raw, kw["src"]))
        return forward(self, x, raw, **kw)

    monkeypatch.setattr(Block, "forward", spy)
    model(torch.randint(0, 50, (2, 10)))
    assert len(seen) == 3 and seen[0][2] is None
    pos = torch.arange(10)
    for layer in (1, 2):
        x, raw, src = seen[layer]
        assert all(torch.equal(a, b) for a, b in zip(src, seen[layer - 1][1]))  # the raw q, k, v of block l-1
        q, k, v = raw
        streamed = forward(model.blocks[layer], x, raw, pos=pos, src=src, layer=layer)[0]
        by_hand = forward(model.blocks[layer], x, (q, k, v + src[2]), pos=pos, src=None, layer=layer)[0]
        torch.testing.assert_close(streamed, by_hand)  # only the values are summed, with weight 1
        plain = forward(model.blocks[layer], x, raw, pos=pos, src=None, layer=layer)[0]
        assert not torch.allclose(streamed, plain)

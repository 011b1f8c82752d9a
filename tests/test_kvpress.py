"""The package's presses against kvpress's own, on a tiny randomly initialised Hugging Face Llama: kvpress
compresses the prompt's cache inside the model (its forward hooks), and the package's policy scores the
same keys, values, attention and queries. Scores agree to float rounding and the kept sets are equal, with
two rules stated where they differ: the package always keeps the newest token (kvpress's TOVA and SnapKV do
too; for KeyDiff and ExpectedAttention the comparison gives kvpress that rule), and PyramidKV's budgets
(see the last test). Runs where kvpress installs (``pip install kvpress``); skipped elsewhere."""

import pytest
import torch

kvpress = pytest.importorskip("kvpress")
transformers = pytest.importorskip("transformers")

from evolution.presses import TOVA, ExpectedAttention, KeyDiff, PyramidKV, SnapKV, pyramid_budgets  # noqa: E402
from transformers_mini.core.attention import KVCache  # noqa: E402

T, N_KEPT = 96, 40


@pytest.fixture(scope="module")
def llama():
    """A 2-layer Llama (4 query heads over 2 KV heads, head size 16), random weights, eager attention."""
    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
    cfg = transformers.LlamaConfig(vocab_size=128, num_key_value_heads=2, max_position_embeddings=512, **sizes)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.config._attn_implementation = "eager"
    ids = torch.randint(0, 128, (2, T), generator=torch.Generator().manual_seed(1))
    return model, ids


def kvpress_run(model, ids, press):
    """kvpress inside the model: per layer the scores its press gave and the keys it kept, with the
    inputs it scored (layer input, keys, values, attention)."""
    seen, score = [], press.score

    def spy(module, hidden_states, keys, values, attentions, kwargs):
        s = score(module, hidden_states, keys, values, attentions, kwargs)
        seen.append({"module": module, "h": hidden_states, "k": keys, "v": values, "attn": attentions, "scores": s})
        return s

    object.__setattr__(press, "score", spy)
    cache = transformers.DynamicCache()
    with torch.no_grad(), press(model):
        model(ids, past_key_values=cache, output_attentions=True)
    for layer, d in enumerate(seen):
        d["kept_keys"] = cache.layers[layer].keys
    return seen


def hf_rotate(model):
    rotary = model.model.rotary_emb

    def rotate(x, pos):
        cos, sin = rotary(x, pos[None])
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    return rotate


def ours(policy, d, model):
    """The package's policy on kvpress's inputs: (scores, kept mask) per (batch row, KV head)."""
    from kvpress.utils import get_prerope_query_states

    k, v, attn = d["k"], d["v"], d["attn"]
    B, H_kv, n, _ = k.shape
    cache = KVCache(1)
    cache.append(0, k, v, torch.arange(n))
    cache.n_seen = n
    policy.reset()
    if policy.needs_attention:  # the rollout's view: query heads of each KV group averaged
        policy.observe(0, attn.view(B, H_kv, -1, n, n).mean(2), cache)
    if policy.needs_queries:
        policy.observe_queries(0, get_prerope_query_states(d["module"], d["h"]), cache, hf_rotate(model))
    return policy.score(0, cache), policy.keep(0, cache)


def kept_positions(d) -> torch.Tensor:
    """(B, H_kv, T) bool: which of the prompt's keys kvpress kept (found by matching the key vectors)."""
    match = (d["kept_keys"][:, :, :, None, :] == d["k"][:, :, None, :, :]).all(-1)  # (B, H, kept, T)
    return match.any(2)


def topk_mask(scores, n):
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, scores.topk(n, dim=-1).indices, True)


PRESSES = {
    "tova": (lambda cr: kvpress.TOVAPress(compression_ratio=cr), lambda: TOVA(64, N_KEPT)),
    "snapkv": (lambda cr: kvpress.SnapKVPress(compression_ratio=cr, window_size=16, kernel_size=5),
               lambda: SnapKV(64, N_KEPT, window=16, kernel=5)),
    "keydiff": (lambda cr: kvpress.KeyDiffPress(compression_ratio=cr), lambda: KeyDiff(64, N_KEPT)),
    "expected_attention": (lambda cr: kvpress.ExpectedAttentionPress(compression_ratio=cr, n_future_positions=64,
                                                                      n_sink=4),
                           lambda: ExpectedAttention(64, N_KEPT, n_future=64, n_sink=4)),
}  # fmt: skip


@pytest.mark.parametrize("name", PRESSES)
def test_press_scores_and_kept_sets_equal_kvpress(llama, name):
    model, ids = llama
    make_press, make_policy = PRESSES[name]
    runs = kvpress_run(model, ids, make_press(1 - N_KEPT / T))
    assert len(runs) == 2
    for d in runs:
        scores, keep = ours(make_policy(), d, model)
        theirs = d["scores"].float()
        forced = torch.isinf(scores) | (theirs >= theirs.max() - 1e-6).expand_as(scores)  # rule-kept tokens
        forced[..., -1] = True
        torch.testing.assert_close(scores[~forced], theirs[~forced], rtol=1e-4, atol=1e-6)
        if name in ("keydiff", "expected_attention"):  # give kvpress the package's newest-token rule
            theirs = theirs.clone()
            theirs[..., -1] = float("inf")
            expected = topk_mask(theirs, N_KEPT)
        else:
            expected = kept_positions(d)  # what kvpress's own compression kept
        assert keep.sum(-1).eq(N_KEPT).all()
        assert torch.equal(keep, expected), f"{name}: kept sets differ"


def test_pyramidkv_budgets_differ_from_kvpress_where_stated():
    """PyramidKV scores as SnapKV (tested above); its budgets differ. The package's fall linearly with depth
    at every mean budget (first layer capped at the tokens seen). kvpress, like PyramidKV's own code, caps
    the first layer at the tokens outside the window and falls back to SnapKV's uniform budget when the
    last layer's would fall below the window. At the package's NAMM setting (4 layers, 1,024 tokens,
    window 64, beta 20) that is: uniform at 10% and 25%, a flatter pyramid at 50%."""
    from types import SimpleNamespace

    def theirs(mean, n_layer=4, t=1024, window=64, beta=20):
        press = kvpress.PyramidKVPress(compression_ratio=1 - mean / t, window_size=window, beta=beta)
        layers = [
            SimpleNamespace(config=SimpleNamespace(num_hidden_layers=n_layer), layer_idx=i) for i in range(n_layer)
        ]
        return [press.get_layer_budget(m, t) for m in layers]

    assert theirs(102) == [102] * 4 and pyramid_budgets(102, 4, 1024) == [199, 134, 70, 5]
    assert theirs(256) == [256] * 4 and pyramid_budgets(256, 4, 1024) == [499, 337, 175, 13]
    assert theirs(512) == [960, 661, 363, 64] and pyramid_budgets(512, 4, 1024) == [998, 674, 350, 26]
    # where neither rule binds (a long prompt, a shallow pyramid), the two are the same pyramid
    assert theirs(2048, t=4096, beta=2) == pyramid_budgets(2048, 4, 4096, beta=2) == [3072, 2389, 1707, 1024]
    assert issubclass(PyramidKV, SnapKV)

"""Hook points of the toy and the GPT: identity hooks change nothing bit for bit, a replacing hook changes
exactly what it names (and what is computed from it), names are TransformerLens', unknown names are refused."""

import numpy as np
import pytest
import torch

from amicl.task import ICLTask, TaskConfig
from transformers_mini.core.config import GPTConfig, StreamConfig, ToyConfig
from transformers_mini.core.hooks import Hooks, hook_names, run_with_hooks
from transformers_mini.core.model import GPT, ToyTransformer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def x():
    return torch.from_numpy(ICLTask.from_seed(TaskConfig(), 0).sample(8, np.random.default_rng(0)).x)


@pytest.fixture(scope="module")
def toy():
    return ToyTransformer([ToyConfig(), ToyConfig(stream=StreamConfig(kind="V"))], [0, 0])


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, n_layer=2, n_head=4, n_kv_head=2, d_model=32, stream=StreamConfig(kind="V")))


IDX = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(0))


def identity_everywhere(names):
    return {n: (lambda t: t.clone()) for n in names}


def test_toy_names_follow_transformer_lens(toy, x):
    names = hook_names(toy, x)
    assert names[:6] == [f"blocks.0.{n}" for n in ("hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v",
                                                   "attn.hook_attn_scores", "attn.hook_pattern")]  # fmt: skip
    assert {"blocks.1.attn.hook_stream_v", "blocks.1.hook_resid_post", "mlp.hook_in", "mlp.2.hook_post"} <= set(names)
    assert names[-1] == "hook_logits" and "blocks.0.attn.hook_stream_v" not in names  # layer 0 has no stream


@pytest.mark.parametrize("return_attn", [False, True])
def test_toy_identity_hooks_change_nothing_bit_for_bit(toy, x, return_attn):
    plain = toy(x, return_attn=return_attn)
    hooked, cache = run_with_hooks(toy, x, identity_everywhere(hook_names(toy, x)), ["*"], return_attn=return_attn)
    if return_attn:
        assert all(torch.equal(a, b) for a, b in zip(plain[1], hooked[1]))
        plain, hooked = plain[0], hooked[0]
    assert torch.equal(plain, hooked)
    assert torch.equal(cache["hook_logits"], plain)


def test_toy_pattern_replacement_changes_exactly_what_it_names(toy, x):
    _, before = run_with_hooks(toy, x, cache=["*"], return_attn=True)
    E, B, T, _ = before["blocks.1.attn.hook_pattern"].shape
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]  # attend equally to every visible token
    (_, attn), after = run_with_hooks(
        toy, x, {"blocks.1.attn.hook_pattern": lambda p: uniform.expand(E, B, T, T)}, ["*"], return_attn=True
    )
    for name in before:
        if name.startswith("blocks.0.") or name in ("blocks.1.hook_resid_pre", "blocks.1.attn.hook_q"):
            assert torch.equal(before[name], after[name]), name  # upstream of the replaced pattern
    assert torch.equal(attn[1], uniform.expand(E, B, T, T))
    v = (
        after["blocks.1.attn.hook_v"]
        + after["blocks.1.attn.hook_stream_v"] * torch.tensor([0.0, 1.0])[:, None, None, None]
    )
    assert torch.allclose(after["blocks.1.hook_attn_out"], uniform @ v, atol=1e-5)  # the output is read through it
    assert not torch.allclose(after["hook_logits"], before["hook_logits"])


def test_zeroing_the_stream_term_gives_the_baseline_member(toy, x):
    """The V member with its stream term zeroed computes what the none member (same seed) computes."""
    logits, _ = run_with_hooks(toy, x, {"blocks.1.attn.hook_stream_v": torch.zeros_like})
    assert torch.equal(logits[1], logits[0]) and not torch.allclose(toy(x)[1], toy(x)[0])


def test_gpt_identity_hooks_change_nothing_bit_for_bit(gpt):
    names = hook_names(gpt, IDX)
    assert names[:5] == ["blocks.0.hook_resid_pre", "blocks.0.attn.hook_q", "blocks.0.attn.hook_k",
                         "blocks.0.attn.hook_v", "blocks.0.attn.hook_attn_scores"]  # fmt: skip
    assert {"blocks.1.attn.hook_stream_v", "blocks.1.attn.hook_z", "blocks.1.hook_mlp_out"} <= set(names)
    # the fused path stays where no score or pattern is hooked: bit for bit with the plain forward
    outside = [n for n in names if not n.endswith(("hook_attn_scores", "hook_pattern"))]
    assert torch.equal(run_with_hooks(gpt, IDX, identity_everywhere(outside))[0], gpt(IDX))
    # hooking a pattern computes attention explicitly: bit for bit with the pass that returns attention
    logits, _ = run_with_hooks(gpt, IDX, identity_everywhere(names))
    assert torch.equal(logits, gpt(IDX, return_attn=True)[0])
    assert torch.allclose(logits, gpt(IDX), atol=1e-5)


def test_gpt_head_ablation_removes_exactly_that_head(gpt):
    head = 2

    def zero_head(z):
        z = z.clone()
        z[:, :, head] = 0
        return z

    _, clean = run_with_hooks(gpt, IDX, cache=["blocks.0.attn.hook_z", "blocks.0.hook_attn_out"])
    _, ablated = run_with_hooks(gpt, IDX, {"blocks.0.attn.hook_z": zero_head}, ["blocks.0.hook_attn_out"])
    dh = gpt.config.d_head
    w_head = gpt.blocks[0].o.weight[:, head * dh : (head + 1) * dh]  # the output projection's columns of that head
    removed = clean["blocks.0.attn.hook_z"][:, :, head] @ w_head.T
    assert torch.allclose(clean["blocks.0.hook_attn_out"] - ablated["blocks.0.hook_attn_out"], removed, atol=1e-6)


def test_gpt_hooks_work_with_a_kv_cache(gpt):
    """Incremental decoding through hooks: the pattern seen at each step covers the cached columns."""
    from transformers_mini.core.attention import KVCache

    cache = KVCache(2)
    hooks = Hooks(cache=["blocks.1.attn.hook_pattern"])
    gpt(IDX[:, :8], cache=cache, hooks=hooks)
    assert hooks.cache["blocks.1.attn.hook_pattern"].shape == (3, 4, 8, 8)
    gpt(IDX[:, 8:9], cache=cache, hooks=hooks)
    assert hooks.cache["blocks.1.attn.hook_pattern"].shape == (3, 4, 1, 9)


def test_bad_hooks_are_refused(toy, gpt, x):
    with pytest.raises(ValueError, match="no hook point 'blocks.5.attn.hook_q'"):
        run_with_hooks(toy, x, {"blocks.5.attn.hook_q": lambda t: t})
    with pytest.raises(ValueError, match="no hook point 'blocks.0.attn.hook_stream_v'"):
        run_with_hooks(gpt, IDX, cache=["blocks.0.attn.hook_stream_v"])
    with pytest.raises(ValueError, match="returned shape"):
        run_with_hooks(gpt, IDX, {"blocks.0.attn.hook_z": lambda z: z[:, :1]})
    with pytest.raises(ValueError, match="not callable"):
        Hooks({"hook_logits": 3})

"""Hook points: read or replace any named activation of a forward pass of the toy or the GPT.

Names follow TransformerLens' convention, so its users find what they expect::

    blocks.{l}.hook_resid_pre       the residual stream entering block l
    blocks.{l}.attn.hook_q, hook_k, hook_v
                                    block l's own projections, before any stream is mixed in
    blocks.{l}.attn.hook_stream_q, hook_stream_k, hook_stream_v
                                    the earlier layer's projection that block l mixes in (the stream
                                    term before its weight; only where block l has a stream)
    blocks.{l}.attn.hook_attn_scores
                                    attention logits after scale and causal mask (-inf above the diagonal)
    blocks.{l}.attn.hook_pattern    attention probabilities (rows: queries, columns: keys)
    blocks.{l}.attn.hook_z          each head's output, before the output projection (GPT only)
    blocks.{l}.hook_attn_out, hook_mlp_out (GPT only), hook_resid_post
    mlp.hook_in, mlp.{i}.hook_post  the toy's read-out MLP: the query token's residual and each layer's output
    hook_logits                     the model's output

Layouts: the toy's tensors carry the member axis first, (E, B, T, d) and (E, B, Tq, Tk) patterns; the GPT's
are (B, H, T, d_head) for q, k, v and the stream terms, (B, H, Tq, Tk) for scores and patterns, and
(B, T, H, d_head) for z. In the toy's last layer only the query token is computed (Tq = 1) unless the
forward pass returns attention. A GPT block whose scores or pattern are hooked computes its attention
explicitly instead of through the fused kernel (equal up to float rounding).

    hooks = Hooks({"blocks.0.attn.hook_pattern": lambda p: binding}, cache=["blocks.1.attn.hook_pattern"])
    logits = model(x, hooks=hooks)
    hooks.cache["blocks.1.attn.hook_pattern"]

A function returns the replacement (same shape) or None to keep the activation; ``cache`` names the
activations to keep (``"*"`` keeps every one), after any replacement. ``hooks.seen`` lists, in order,
every hook point the last pass went through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

HookFn = Callable[[torch.Tensor], "torch.Tensor | None"]


class Hooks:
    """Functions that read or replace named activations, and a cache of the ones asked for."""

    def __init__(self, fns: dict[str, HookFn] | None = None, cache: Iterable[str] = ()):
        self.fns = dict(fns or {})
        self.keep = set(cache)
        for name, fn in self.fns.items():
            if not callable(fn):
                raise ValueError(f"the hook for {name!r} is not callable")
        self.cache: dict[str, torch.Tensor] = {}
        self.seen: list[str] = []

    def wants(self, name: str) -> bool:
        """Whether the activation ``name`` is replaced or cached (so a model computes it explicitly)."""
        return name in self.fns or name in self.keep or "*" in self.keep

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(name)
        fn = self.fns.get(name)
        if fn is not None:
            y = fn(x)
            if y is not None:
                if y.shape != x.shape:
                    raise ValueError(f"the hook for {name} returned shape {tuple(y.shape)}, not {tuple(x.shape)}")
                x = y
        if name in self.keep or "*" in self.keep:
            self.cache[name] = x
        return x

    def check_names(self) -> None:
        """After a pass: refuse a hook or cache name that the pass never reached (a typo, or a point
        this model does not have)."""
        missing = sorted(n for n in [*self.fns, *self.keep] if n != "*" and n not in self.seen)
        if missing:
            have = ", ".join(dict.fromkeys(self.seen))
            raise ValueError(f"no hook point {missing[0]!r} in this model; it has: {have}")


def run_with_hooks(model, x, fns: dict[str, HookFn] | None = None, cache: Iterable[str] = (), **kw):
    """(output, cache) of ``model(x, hooks=...)``; refuses hook names the model does not have."""
    hooks = Hooks(fns, cache)
    out = model(x, hooks=hooks, **kw)
    hooks.check_names()
    return out, hooks.cache


def hook_names(model, x, **kw) -> list[str]:
    """Every hook point of ``model`` on the input ``x``, in the order a forward pass reaches them."""
    hooks = Hooks(cache=["*"])  # asks for every activation, so attention is computed where it can be hooked
    with torch.no_grad():
        model(x, hooks=hooks, **kw)
    return list(dict.fromkeys(hooks.seen))

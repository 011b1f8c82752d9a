"""Run a frozen model over a prompt with a managed KV cache, then decode greedily.

The prompt is fed in chunks of the policy's ``n_up`` tokens; after every chunk each layer's attention
(query heads of a KV group averaged, as NAMM does) is shown to the policy, and whenever the number of
tokens seen is a multiple of ``n_up`` the policy decides, per (layer, KV head), which tokens stay.
Evicted columns are then dropped from memory (``KVCache.compact``). ``policy=None`` runs the plain
cached model, which a keep-everything policy must match bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from transformers_mini.core.attention import KVCache
from transformers_mini.core.hooks import Hooks
from transformers_mini.core.model import GPT


@dataclass
class RolloutStats:
    """What the cache looked like: alive fraction after each update, and at the end per layer the
    retained fraction and the ages of kept tokens."""

    alive_fraction: list[float] = field(default_factory=list)
    layer_fraction: list[float] = field(default_factory=list)
    kept_ages: list[np.ndarray] = field(default_factory=list)
    final_bytes: int = 0
    row_fraction: np.ndarray | None = None  # (B,) final alive fraction of each batch row (layers, heads averaged)
    answer_logits: torch.Tensor | None = None  # (B, vocab) logits of the first answer token


def _step(model: GPT, idx, cache, policy, stats):
    c = model.config
    needs = policy is not None and policy.needs_attention
    hooks = None
    if policy is not None and policy.needs_queries:
        hooks = Hooks(cache=[f"blocks.{layer}.attn.hook_q" for layer in range(c.n_layer)])
    logits, attn = (
        model(idx, cache, return_attn=needs, hooks=hooks) if needs else (model(idx, cache, hooks=hooks), None)
    )
    if hooks is not None:
        for layer in range(c.n_layer):
            policy.observe_queries(layer, hooks.cache[f"blocks.{layer}.attn.hook_q"], cache, model.rotary)
    if policy is not None:
        if needs:
            B, _, Tq, _ = attn[0].shape
            for layer, p in enumerate(attn):  # average the query heads of each KV group
                policy.observe(layer, p.view(B, c.kv_heads, -1, Tq, p.shape[-1]).mean(2), cache)
        if cache.n_seen % policy.n_up == 0:
            for layer in range(c.n_layer):
                cache.evict(layer, policy.keep(layer, cache))
            cache.compact()
            stats.alive_fraction.append(cache.alive_fraction())
    return logits


@torch.no_grad()
def rollout(model: GPT, prompt: torch.Tensor, answer_len: int, policy=None) -> tuple[torch.Tensor, RolloutStats]:
    """Greedy answer (B, answer_len) to ``prompt`` (B, T) under ``policy``; plus cache statistics."""
    if prompt.dim() != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be (B, T) with T >= 1, got {tuple(prompt.shape)}")
    if answer_len < 1:
        raise ValueError(f"answer_len must be >= 1, got {answer_len}")
    model.eval()
    prompt = prompt.to(next(model.parameters()).device)
    cache = KVCache(model.config.n_layer)
    stats = RolloutStats()
    if policy is not None:
        policy.reset()
        if policy.needs_future:
            policy.prepare(model, prompt)
    chunk = policy.n_up if policy is not None else prompt.shape[1]
    logits = None
    for lo in range(0, prompt.shape[1], chunk):
        logits = _step(model, prompt[:, lo : lo + chunk], cache, policy, stats)
    stats.answer_logits = logits[:, -1].clone()
    out = []
    for i in range(answer_len):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out.append(nxt)
        if i + 1 < answer_len:
            logits = _step(model, nxt, cache, policy, stats)
    stats.row_fraction = (
        (torch.stack([a.float().sum(-1).mean(-1) for a in cache.alive]).mean(0) / cache.n_seen).cpu().numpy()
    )
    for layer in range(model.config.n_layer):
        alive = cache.alive[layer]
        stats.layer_fraction.append(float(alive.float().sum(-1).mean() / cache.n_seen))
        ages = (cache.n_seen - 1 - cache.pos[layer]).expand_as(alive)[alive]
        stats.kept_ages.append(ages.cpu().numpy())
    stats.final_bytes = cache.nbytes()
    return torch.cat(out, dim=1), stats

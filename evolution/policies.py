"""KV-cache memory policies: ``score(layer, cache) -> (B, H_kv, T)`` plus a shared selector.

A policy sees every forward chunk's attention (``observe``) and, every ``n_up`` tokens, scores each
cached token of each (layer, KV head); the selector then keeps either the tokens scoring >= 0
(threshold, NAMM's rule: ``score < 0`` evicts) or the ``budget`` best alive tokens (top-k). The newest
token is always kept. Policies: Full, Recency with sink tokens (StreamingLLM), H2O (half recent, half
heavy hitters by accumulated attention), L2 (smallest key norm), Random, and NAMM; TOVA, SnapKV,
PyramidKV and KeyDiff live in ``evolution.presses``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from amicl.common.validate import check_int
from evolution.scorers import Scorer
from evolution.spectrogram import HOP, N_FFT, NormStats, age_embedding, attention_spectrogram, ema_frames
from transformers_mini.core.attention import KVCache

CARRY = N_FFT - HOP  # attention values carried over from the previous window


class MemoryPolicy:
    """Base class. ``budget``: None (threshold selector), an int, or one int per layer (top-k)."""

    name = "policy"
    needs_attention = False
    needs_queries = False  # shown every layer's queries before rotary (``observe_queries``)
    needs_future = False  # shown the model and the whole prompt before the rollout (``prepare``): an oracle
    needs_budget = False  # baselines keep a fixed number of tokens; only NAMM can do without one

    def __init__(self, n_up: int = 64, budget: int | Sequence[int] | None = None):
        self.n_up = check_int("n_up", n_up, lo=HOP)
        if self.n_up % HOP:
            raise ValueError(f"n_up must be a multiple of {HOP} (the STFT hop), got {n_up}")
        if budget is None and self.needs_budget:
            raise ValueError(f"{self.name} needs a budget")
        if budget is not None:
            budgets = [budget] if isinstance(budget, (int, np.integer)) else list(budget)
            for b in budgets:
                check_int("budget", b, lo=1)
        self.budget = budget

    def reset(self) -> None:
        """Forget per-sequence state (called before every new prompt)."""

    def observe(self, layer: int, probs: torch.Tensor, cache: KVCache) -> None:
        """probs: (B, H_kv, Tq, T) attention of the chunk's queries over the cache columns."""

    def prepare(self, model, prompt: torch.Tensor) -> None:
        """Before a rollout over ``prompt`` (B, T); called only for a policy that ``needs_future``."""

    def observe_queries(self, layer: int, q: torch.Tensor, cache: KVCache, rotate) -> None:
        """q: (B, H, Tq, dh) the chunk's queries before rotary; ``rotate(x, pos)``: the model's rotary
        embedding (None without one). Called only for a policy that ``needs_queries``."""

    def score(self, layer: int, cache: KVCache) -> torch.Tensor:
        raise NotImplementedError

    def layer_budget(self, layer: int, cache: KVCache) -> int | None:
        if self.budget is None or isinstance(self.budget, (int, np.integer)):
            return self.budget
        if layer >= len(self.budget):
            raise ValueError(f"budget lists {len(self.budget)} layers, model has more")
        return int(self.budget[layer])

    def keep(self, layer: int, cache: KVCache) -> torch.Tensor:
        """(B, H_kv, T) bool: which cached tokens survive this update."""
        alive = cache.alive[layer]
        s = self.score(layer, cache).masked_fill(~alive, float("-inf"))
        s[..., -1] = float("inf")  # the newest token is always kept, and counts within the budget
        budget = self.layer_budget(layer, cache)
        if budget is None:
            keep = s >= 0
        else:  # the budget best alive tokens; ties broken toward newer tokens by a stable sort
            order = torch.argsort(s.flip(-1), dim=-1, descending=True, stable=True)
            rank = torch.empty_like(order)
            rank.scatter_(-1, order, torch.arange(s.shape[-1], device=s.device).expand_as(order))
            keep = (rank.flip(-1) < budget) & alive
        return keep & alive


class FullCache(MemoryPolicy):
    """Keeps every token (the reference every score is normalised by)."""

    name = "full"

    def keep(self, layer, cache):
        return cache.alive[layer].clone()


class Recency(MemoryPolicy):
    """StreamingLLM: the ``sinks`` first tokens plus the most recent ones (needs a budget)."""

    name = "recency"
    needs_budget = True

    def __init__(self, n_up=64, budget=None, sinks: int = 4):
        super().__init__(n_up, budget)
        self.sinks = check_int("sinks", sinks, lo=0)

    def score(self, layer, cache):
        pos = cache.pos[layer].float()
        s = torch.where(cache.pos[layer] < self.sinks, torch.full_like(pos, float("inf")), pos)
        return s.expand_as(cache.alive[layer])


class H2O(MemoryPolicy):
    """Heavy-hitter oracle (Zhang et al. 2023): half the budget to the most recent tokens, half to the
    largest attention accumulated over all queries so far, per (layer, head)."""

    name = "h2o"
    needs_attention = True
    needs_budget = True

    def observe(self, layer, probs, cache):
        acc = _aligned(cache, layer, "h2o_acc", ())
        cache.side[layer]["h2o_acc"] = acc + probs.sum(dim=2)

    def score(self, layer, cache):
        acc = _aligned(cache, layer, "h2o_acc", ())
        n_recent = self.layer_budget(layer, cache) // 2
        recent = cache.pos[layer] >= cache.n_seen - n_recent
        return torch.where(recent, torch.full_like(acc, float("inf")), acc)


class L2Norm(MemoryPolicy):
    """Keeps the tokens with the smallest key norm (Devoto et al. 2024); needs no attention."""

    name = "l2"
    needs_budget = True

    def score(self, layer, cache):
        return -cache.k[layer].float().norm(dim=-1)


class RandomPolicy(MemoryPolicy):
    """Keeps ``budget`` random tokens (seeded, reproducible)."""

    name = "random"
    needs_budget = True

    def __init__(self, n_up=64, budget=None, seed: int = 0):
        super().__init__(n_up, budget)
        self.seed = check_int("seed", seed, lo=0)
        self.reset()

    def reset(self):
        self.gen = torch.Generator().manual_seed(self.seed)

    def score(self, layer, cache):
        return torch.rand(cache.alive[layer].shape, generator=self.gen).to(cache.alive[layer].device)


class Oracle(MemoryPolicy):
    """The upper bound of any scorer: keeps the tokens the answer's query attends to most in the full-cache
    model (its attention over the prompt at the last position, where the answer is predicted, query heads
    of a KV group averaged). It sees the future, which no real policy can; tokens past the prompt (an
    answer being decoded) are kept."""

    name = "oracle"
    needs_future = True
    needs_budget = True

    def prepare(self, model, prompt):
        cache = KVCache(model.config.n_layer)
        if prompt.shape[1] > 1:
            model(prompt[:, :-1], cache)
        _, attn = model(prompt[:, -1:], cache, return_attn=True)
        B, H_kv = prompt.shape[0], model.config.kv_heads
        self.future = [a[:, :, -1].reshape(B, H_kv, -1, a.shape[-1]).mean(2) for a in attn]  # (B, H_kv, T)

    def score(self, layer, cache):
        future = self.future[layer]
        pos = cache.pos[layer]
        seen = pos < future.shape[-1]
        s = future[..., pos.clamp(max=future.shape[-1] - 1)]
        return torch.where(seen, s, torch.full_like(s, float("inf")))


class NAMM(MemoryPolicy):
    """Neural attention memory model: spectrogram features of each token's received attention, EMA,
    normalisation and age embedding, scored by ``scorer`` with ``params`` (1 or B rows: one parameter
    vector per batch row, so a population is evaluated in one batched forward pass)."""

    name = "namm"
    needs_attention = True

    def __init__(self, scorer: Scorer, params, n_up: int = 64, budget=None, norm: NormStats | None = None):
        super().__init__(n_up, budget)
        params = torch.as_tensor(np.asarray(params), dtype=torch.float32)
        if params.dim() not in (1, 2) or params.shape[-1] != scorer.n_params:
            raise ValueError(
                f"params must be ({scorer.n_params},) or (rows, {scorer.n_params}); got {tuple(params.shape)}"
            )
        self.params = params.reshape(-1, scorer.n_params)
        self.scorer = scorer
        self.norm = norm or NormStats()
        self.rows: dict[int, list[torch.Tensor]] = {}
        self.example: torch.Tensor | None = None  # layer 0, row 0, head 0 spectrogram of the last update

    def reset(self):
        self.rows = {}

    def observe(self, layer, probs, cache):
        self.rows.setdefault(layer, []).append(probs)

    def _window(self, layer, cache) -> torch.Tensor:
        """The attention rows since the last update, (B, H, n_q, T), older rows zero-padded on the right."""
        T = cache.alive[layer].shape[-1]
        rows = [torch.nn.functional.pad(r, (0, T - r.shape[-1])) for r in self.rows.pop(layer, [])]
        if not rows or sum(r.shape[2] for r in rows) != self.n_up:
            raise ValueError(f"NAMM update needs exactly n_up={self.n_up} buffered queries")
        return torch.cat(rows, dim=2)

    def features(self, layer, cache) -> torch.Tensor:
        """Update the EMA state and return the (B, H, T, 25) features [age (8), normalised EMA (17)]."""
        window = self._window(layer, cache)  # (B, H, n_up, T)
        carry = _aligned(cache, layer, "namm_carry", (CARRY,))
        x = torch.cat([carry, window.transpose(-1, -2)], dim=-1)  # (B, H, T, 16 + n_up)
        spec = attention_spectrogram(x)  # (B, H, T, n_up/16, 17)
        if layer == 0:
            self.example = spec[0, 0].clone()
        # a token that arrived at offset k of this window exists from frame floor(k/16) on
        start = cache.n_seen - self.n_up
        first = ((cache.pos[layer] - start).clamp(min=0) // HOP).expand_as(cache.alive[layer])
        old = _aligned(cache, layer, "namm_ema", (spec.shape[-1],))
        ema = ema_frames(spec, first, old)
        cache.side[layer]["namm_ema"] = ema
        cache.side[layer]["namm_carry"] = x[..., -CARRY:]
        self.norm.update(ema, cache.alive[layer])
        age = (cache.n_seen - 1 - cache.pos[layer]).expand_as(cache.alive[layer])
        return torch.cat([age_embedding(age), self.norm.normalise(ema)], dim=-1)

    def prompt_scores(self, keys: torch.Tensor, values: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """One layer's scores for a whole prompt's cache, as if NAMM had watched the prompt in windows of
        ``n_up`` queries and evicted nothing: keys, values (B, H_kv, T, dh), probs (B, H_kv, T, T) the
        attention rows (query heads of a KV group averaged). Tokens after the last full window score +inf
        (kept, like SnapKV's window). This is how a press that compresses once after the prompt runs NAMM.
        Needs frozen normalisation statistics (an evolved NAMM's), so that layers and prompts do not shift
        each other's features."""
        if not self.norm.frozen:
            raise ValueError("prompt_scores needs frozen normalisation statistics (load an evolved NAMM)")
        B, H, T, _ = keys.shape
        if probs.shape != (B, H, T, T):
            raise ValueError(f"probs must be {(B, H, T, T)}, got {tuple(probs.shape)}")
        self.reset()
        cache, scores = KVCache(1), torch.full((B, H, T), float("inf"), device=keys.device)
        for lo in range(0, T - T % self.n_up, self.n_up):
            hi = lo + self.n_up
            cache.append(0, keys[:, :, lo:hi], values[:, :, lo:hi], torch.arange(lo, hi, device=keys.device))
            cache.n_seen = hi
            self.observe(0, probs[:, :, lo:hi, :hi].float(), cache)
            scores[..., :hi] = self.score(0, cache)
        return scores

    def score(self, layer, cache):
        X = self.features(layer, cache)
        B = X.shape[0]
        params = self.params.expand(B, -1) if self.params.shape[0] == 1 else self.params
        if params.shape[0] != B:
            raise ValueError(f"NAMM has {params.shape[0]} parameter rows for a batch of {B}")
        return self.scorer.score(params.to(X.device), X, cache.alive[layer])


def _aligned(cache: KVCache, layer: int, name: str, tail: tuple[int, ...]) -> torch.Tensor:
    """The side state ``name`` of a layer, zero-extended to the current number of columns."""
    alive = cache.alive[layer]
    t = cache.side[layer].get(name)
    shape = (*alive.shape, *tail)
    if t is None:
        t = torch.zeros(shape, device=alive.device)
    elif t.shape[2] < alive.shape[2]:
        pad = torch.zeros(
            (*alive.shape[:2], alive.shape[2] - t.shape[2], *t.shape[3:]), device=alive.device, dtype=t.dtype
        )
        t = torch.cat([t, pad], dim=2)
    cache.side[layer][name] = t
    return t

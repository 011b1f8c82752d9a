"""The strongest training-free KV policies of the kvpress family, as ``MemoryPolicy`` plug-ins.

kvpress compresses a contiguous cache once, after the prompt. Here a policy decides every ``n_up``
tokens, so each press is stated for a cache that already has holes: attention rows and per-token state
live in ``cache.side`` (filtered with the columns by ``KVCache.compact``), evicted columns carry zero
attention, and every statistic over "the tokens" runs over the alive ones of each (batch row, head).

- TOVA (Oren et al. 2024): the newest query's attention, averaged over all heads of the layer.
- SnapKV (Li et al. 2024): the mean attention the last ``window`` queries gave each older token, pooled
  over neighbouring columns with a ``kernel``-wide average; the window's own tokens are always kept.
- PyramidKV (Cai et al. 2024): SnapKV's scores with budgets that shrink linearly with depth, the same
  total across layers.
- KeyDiff (Park et al. 2025): keeps the keys least similar (cosine) to the mean direction of the alive
  keys; needs no attention.
- ExpectedAttention (Devoto et al. 2025): the attention future queries are expected to pay each token,
  from the mean and covariance of the queries seen so far; reads the queries (``observe_queries``).
- KVzip (Kim et al. 2025): the most attention a token receives while the model reads the prompt a second
  time (context reconstruction); scored once, before the rollout, with the whole prompt in view.

Each but KVzip is checked against kvpress's press on a tiny random Hugging Face Llama (tests/test_kvpress.py);
KVzip's press needs a tokenizer with a chat template, so it is checked against a plain reference instead.
"""

from __future__ import annotations

import torch

from amicl.common.validate import check_float, check_int
from evolution.policies import MemoryPolicy, _aligned
from transformers_mini.core.attention import KVCache


class TOVA(MemoryPolicy):
    """Token omission via attention: the last query's attention, head-averaged, so every head of a layer
    ranks the tokens alike (kvpress ``TOVAPress``)."""

    name = "tova"
    needs_attention = True
    needs_budget = True

    def observe(self, layer, probs, cache):
        cache.side[layer]["tova_last"] = probs[:, :, -1]  # (B, H_kv, T): the newest query's row

    def score(self, layer, cache):
        last = _aligned(cache, layer, "tova_last", ())
        return last.mean(dim=1, keepdim=True).expand_as(last)


class SnapKV(MemoryPolicy):
    """Attention from an observation window of the last ``window`` queries, averaged over those queries,
    smoothed by average pooling of width ``kernel`` over the cache columns (zero-padded, as kvpress does);
    tokens inside the window score +inf. kvpress defaults: window 64, kernel 5."""

    name = "snapkv"
    needs_attention = True
    needs_budget = True
    OPTIONS = ("window", "kernel")

    def __init__(self, n_up=64, budget=None, window: int = 64, kernel: int = 5):
        super().__init__(n_up, budget)
        self.window = check_int("window", window, lo=1)
        self.kernel = check_int("kernel", kernel, lo=1)
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (a centred pooling window), got {kernel}")

    def observe(self, layer, probs, cache):
        old = _aligned(cache, layer, "snap_rows", (0,))  # (B, H_kv, T, queries so far, at most window)
        rows = torch.cat([old, probs.transpose(-1, -2)], dim=-1)
        cache.side[layer]["snap_rows"] = rows[..., -self.window :]

    def window_scores(self, layer, cache) -> torch.Tensor:
        rows = _aligned(cache, layer, "snap_rows", (0,))
        if rows.shape[-1] == 0:
            raise ValueError(f"{self.name} scores need observed attention rows")
        in_window = (cache.pos[layer] >= cache.n_seen - self.window).expand_as(cache.alive[layer])
        s = rows.mean(dim=-1).masked_fill(in_window, 0.0)  # pool the older tokens only
        B, H, T = s.shape
        s = torch.nn.functional.avg_pool1d(s.reshape(B * H, 1, T), self.kernel, stride=1, padding=self.kernel // 2)
        return s.view(B, H, T).masked_fill(in_window, float("inf"))

    def score(self, layer, cache):
        return self.window_scores(layer, cache)


class PyramidKV(SnapKV):
    """SnapKV whose budget shrinks linearly from the first layer to the last: with mean budget ``b`` the
    first layer keeps ``2b - b/beta`` and the last ``b/beta`` (kvpress ``PyramidKVPress``, beta 20),
    capped at the tokens seen. A per-layer budget list counts by its mean."""

    name = "pyramidkv"

    def __init__(self, n_up=64, budget=None, window: int = 64, kernel: int = 5, beta: float = 20.0):
        super().__init__(n_up, budget, window, kernel)
        self.beta = check_float("beta", beta, lo=1.0)

    def layer_budget(self, layer: int, cache: KVCache) -> int:
        b = sum(self.budget) / len(self.budget) if isinstance(self.budget, (list, tuple)) else self.budget
        return pyramid_budgets(b, cache.n_layer, cache.n_seen, self.beta)[layer]


def pyramid_budgets(mean: float, n_layer: int, n_seen: int, beta: float = 20.0) -> list[int]:
    """Per-layer budgets falling linearly with depth and averaging ``mean`` (rounding aside); uniform when
    one layer, or when the mean already keeps every token seen. The first layer is capped at ``n_seen``
    and the last raised to keep the mean, as PyramidKV's own code does."""
    if n_layer == 1 or mean >= n_seen:
        return [max(1, round(mean))] * n_layer
    lo = mean / beta
    hi = 2 * mean - lo
    if hi > n_seen:
        hi, lo = n_seen, 2 * mean - n_seen
    step = (hi - lo) / (n_layer - 1)
    return [max(1, round(hi - i * step)) for i in range(n_layer)]


class KeyDiff(MemoryPolicy):
    """Key diversity: score = minus the cosine similarity of each key with the normalised mean of the
    alive keys' directions (kvpress ``KeyDiffPress``); needs no attention."""

    name = "keydiff"
    needs_budget = True

    def score(self, layer, cache):
        k = torch.nn.functional.normalize(cache.k[layer].float(), dim=-1)  # (B, H, T, dh)
        alive = cache.alive[layer].unsqueeze(-1).float()
        anchor = (k * alive).sum(dim=2, keepdim=True) / alive.sum(dim=2, keepdim=True).clamp(min=1.0)
        anchor = torch.nn.functional.normalize(anchor, dim=-1)
        return -(k * anchor).sum(dim=-1)


class ExpectedAttention(MemoryPolicy):
    """Expected attention (kvpress ``ExpectedAttentionPress``): the queries seen so far (before rotary, the
    first ``n_sink`` left out) give a mean mu and covariance S per query head, both rotated by the rotary
    rotation averaged over the next ``n_future`` positions (R); a cached key k is expected to receive
    softmax over tokens of k.(R mu)/sqrt(d) + k.(R S R^T)k/(2d), averaged over the query heads of its KV
    group, times its value's norm. The first ``n_sink`` tokens are always kept. kvpress defaults: 512
    future positions, 4 sink tokens."""

    name = "expected_attention"
    needs_queries = True
    needs_budget = True

    def __init__(self, n_up=64, budget=None, n_future: int = 512, n_sink: int = 4):
        super().__init__(n_up, budget)
        self.n_future = check_int("n_future", n_future, lo=1)
        self.n_sink = check_int("n_sink", n_sink, lo=0)
        self.reset()

    def reset(self):
        self.stats: dict[int, list] = {}  # layer -> [query count, sum of queries, sum of outer products]
        self.rotate = None

    def observe_queries(self, layer, q, cache, rotate):
        self.rotate = rotate
        pos = torch.arange(cache.n_seen - q.shape[2], cache.n_seen, device=q.device)
        q = q[:, :, pos >= self.n_sink].double()
        n, s, ss = self.stats.get(layer, (0, 0.0, 0.0))
        self.stats[layer] = [n + q.shape[2], s + q.sum(2), ss + torch.einsum("bhti,bhtj->bhij", q, q)]

    def mean_rotation(self, start: int, dh: int, device) -> torch.Tensor:
        """M (dh, dh) with x @ M the rotation of a row x averaged over positions start .. start+n_future-1."""
        eye = torch.eye(dh, dtype=torch.float64, device=device).repeat(self.n_future, 1)[None, None]
        pos = torch.arange(start, start + self.n_future, device=device).repeat_interleave(dh)
        return self.rotate(eye, pos)[0, 0].view(self.n_future, dh, dh).mean(0)

    def score(self, layer, cache):
        n, s, ss = self.stats.get(layer, (0, None, None))
        if n == 0:
            raise ValueError(f"{self.name} scores need queries past the first {self.n_sink}")
        mu = s / n  # (B, H, dh)
        cov = ss / n - mu[..., :, None] * mu[..., None, :]
        k, v = cache.k[layer].double(), cache.v[layer]
        B, Hkv, T, dh = k.shape
        if self.rotate is not None:
            m = self.mean_rotation(cache.n_seen, dh, k.device)
            mu, cov = mu @ m, m.T @ cov @ m
        mu, cov = mu.view(B, Hkv, -1, dh), cov.view(B, Hkv, -1, dh, dh)
        logits = torch.einsum("bktd,bkgd->bkgt", k, mu) / dh**0.5
        logits = logits + torch.einsum("bktd,bkgde,bkte->bkgt", k, cov, k) / dh / 2
        sink = (cache.pos[layer] < self.n_sink).expand_as(cache.alive[layer])
        logits = logits.masked_fill((~cache.alive[layer] | sink)[:, :, None], float("-inf"))
        scores = (logits.softmax(-1).mean(2) * v.double().norm(dim=-1)).to(torch.float32)
        return scores.masked_fill(sink, float("inf"))


class KVzip(MemoryPolicy):
    """Context reconstruction (Kim et al. 2025; kvpress ``KVzipPress``): after the prompt, the model reads
    it once more, teacher-forced after a ``separator`` token (kvpress puts "Repeat the previous context"
    there; the base models here know no instructions), and a cached token scores the most attention any
    replaying query of its KV group pays it: max over the replay's positions and the group's query heads.
    Tokens the model needs to reproduce the prompt score high, whatever is asked later. The first
    ``n_sink`` tokens are always kept.

    Like kvpress's press it scores with the whole prompt in view (the replay runs before the rollout,
    ``needs_future``), which the online policies here, deciding every ``n_up`` tokens, do not have; the
    scores use no answer. Differences from kvpress, stated in docs/namm.md: the prompt is replayed in one
    chunk (kvpress: chunks of 2,048 tokens, each attending to the sinks, itself and its own replay), and
    every KV head keeps the common budget (kvpress spreads the pruning over heads and layers)."""

    name = "kvzip"
    needs_future = True
    needs_budget = True

    def __init__(self, n_up=64, budget=None, n_sink: int = 4, separator: int = 2):
        super().__init__(n_up, budget)
        self.n_sink = check_int("n_sink", n_sink, lo=0)
        self.separator = check_int("separator", separator, lo=0)

    def prepare(self, model, prompt):
        if self.separator >= model.config.vocab_size:
            vocab = model.config.vocab_size
            raise ValueError(f"separator {self.separator} is not in the model's vocabulary of {vocab}")
        B, T = prompt.shape
        H_kv = model.config.kv_heads
        cache = KVCache(model.config.n_layer)
        model(prompt, cache)
        replay = torch.cat([torch.full_like(prompt[:, :1], self.separator), prompt], dim=1)
        best = [torch.zeros(B, H_kv, T, device=prompt.device) for _ in range(model.config.n_layer)]
        for lo in range(0, T + 1, self.n_up):  # a chunk of replaying queries at a time bounds the memory
            _, attn = model(replay[:, lo : lo + self.n_up], cache, return_attn=True)
            for layer, a in enumerate(attn):  # (B, H, q, columns): the prompt's columns come first
                seen = a[..., :T].reshape(B, H_kv, -1, a.shape[2], T).amax(dim=(2, 3))
                best[layer] = torch.maximum(best[layer], seen)
        self.replay = best

    def score(self, layer, cache):
        replay = self.replay[layer]
        pos = cache.pos[layer]
        s = replay[..., pos.clamp(max=replay.shape[-1] - 1)]
        keep = (pos >= replay.shape[-1]) | (pos < self.n_sink)  # past the prompt (an answer), or a sink
        return torch.where(keep, torch.full_like(s, float("inf")), s)

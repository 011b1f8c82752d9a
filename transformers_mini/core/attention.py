"""Masked-softmax attention that exposes its probabilities, residual attention streams, and a KV cache
whose tokens carry a per-(layer, KV head) alive mask (the hook memory policies use).

Attention is written out (logits, mask, softmax, weighted sum) rather than through a fused kernel,
because fused kernels never materialise the probabilities that policies such as H2O and NAMM read.
"""

from __future__ import annotations

import torch


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    scale: float = 1.0,
    alive: torch.Tensor | None = None,
    return_probs: bool = False,
    dropout: float = 0.0,
    hook=None,
):
    """Causal attention of queries over keys, masked by position and by the alive mask.

    q: (..., G, Tq, dh) with G query heads per key head (G = 1 without grouping);
    k, v: (..., Tk, dh); q_pos: (Tq,), k_pos: (Tk,) absolute positions (key j is visible to query i
    iff k_pos[j] <= q_pos[i]); alive: (..., Tk) bool, False = evicted.
    Returns out (..., G, Tq, dh) and probs (..., G, Tq, Tk) (None unless ``return_probs``).
    Every query must see at least one alive key (the cache never evicts the newest token).
    ``dropout``: drop-out rate on the probabilities used for the output (training only; the returned
    probabilities are the undropped ones). ``hook(kind, t)``, where given, may replace the masked logits
    (kind "attn_scores") and the probabilities ("pattern"), (..., G, Tq, Tk) each.
    """
    k = k.unsqueeze(-3)  # (..., 1, Tk, dh), shared by the G query heads of the group
    v = v.unsqueeze(-3)
    logits = q @ k.transpose(-1, -2)  # (..., G, Tq, Tk)
    if scale != 1.0:
        logits = logits * scale
    mask = k_pos[None, :] <= q_pos[:, None]  # (Tq, Tk) causal by position
    if alive is not None:
        mask = mask & alive[..., None, None, :]
    logits = logits.masked_fill(~mask, float("-inf"))
    if hook is not None:
        logits = hook("attn_scores", logits)
    probs = torch.softmax(logits, dim=-1)
    if hook is not None:
        probs = hook("pattern", probs)
    out = (torch.nn.functional.dropout(probs, dropout) if dropout else probs) @ v
    return out, (probs if return_probs else None)


def attend_causal_fused(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float = 1.0, dropout: float = 0.0
) -> torch.Tensor:
    """``attend`` for a full causal self-attention pass (no cache, no alive mask, no probabilities),
    through PyTorch's fused kernel, which never materialises the (Tq, Tk) matrix.

    q: (B, H_kv, G, T, dh); k, v: (B, H_kv, T, dh). Returns out (B, H_kv, G, T, dh), equal to
    ``attend(q, k, v, pos, pos, scale)[0]`` up to float rounding (tested). Training long contexts on
    the CPU is ~7x faster this way; policies that read attention use ``attend``.
    """
    B, H, G, T, dh = q.shape
    k = k.unsqueeze(2).expand(B, H, G, T, dh).reshape(B, H * G, T, dh)  # 4-D: the fused CPU kernel needs it
    v = v.unsqueeze(2).expand(B, H, G, T, dh).reshape(B, H * G, T, dh)
    out = torch.nn.functional.scaled_dot_product_attention(
        q.reshape(B, H * G, T, dh), k, v, is_causal=True, scale=scale, dropout_p=dropout
    )
    return out.view(B, H, G, T, dh)


def mix_stream(own: torch.Tensor, earlier: torch.Tensor, lam: torch.Tensor | float, mix: str) -> torch.Tensor:
    """A residual attention stream: ``own + lam * earlier`` (AMICL, lam = 1) or the convex
    ``(1 - lam) * own + lam * earlier`` (ResFormer / speedrun). lam = 0 returns ``own`` exactly."""
    if mix == "add":
        return own + lam * earlier
    return (1 - lam) * own + lam * earlier


class KVCache:
    """Keys and values per layer, (B, H_kv, T, dh), with an alive mask (B, H_kv, T) and positions (T,).

    ``append`` adds new tokens (alive), ``evict`` clears alive bits, ``compact`` drops the columns that
    no (batch row, head) of a layer keeps any more, so memory is actually released. ``side[layer]`` holds
    memory policies' per-token state, (B, H_kv, T, ...), which ``compact`` filters with the columns.
    """

    def __init__(self, n_layer: int):
        if n_layer < 1:
            raise ValueError(f"n_layer must be >= 1, got {n_layer}")
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.alive: list[torch.Tensor | None] = [None] * n_layer
        self.pos: list[torch.Tensor | None] = [None] * n_layer
        # per-token state of memory policies, (B, H_kv, T, ...) aligned with the columns, kept in step
        self.side: list[dict[str, torch.Tensor]] = [{} for _ in range(n_layer)]
        self.n_seen = 0  # tokens fed so far; the next token has this position
        self.last_token: torch.Tensor | None = None  # (B,) the last token fed, for token shift

    @property
    def n_layer(self) -> int:
        return len(self.k)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor):
        """Add k, v (B, H_kv, Tn, dh) at positions ``pos`` (Tn,); returns the layer's full k, v, alive, pos."""
        alive = torch.ones(k.shape[:3], dtype=torch.bool, device=k.device)
        if self.k[layer] is None:
            self.k[layer], self.v[layer], self.alive[layer], self.pos[layer] = k, v, alive, pos
        else:
            self.k[layer] = torch.cat([self.k[layer], k], dim=2)
            self.v[layer] = torch.cat([self.v[layer], v], dim=2)
            self.alive[layer] = torch.cat([self.alive[layer], alive], dim=2)
            self.pos[layer] = torch.cat([self.pos[layer], pos])
        return self.k[layer], self.v[layer], self.alive[layer], self.pos[layer]

    def evict(self, layer: int, keep: torch.Tensor) -> None:
        """alive &= keep for a (B, H_kv, T) bool mask; the newest token is always kept."""
        if self.alive[layer] is None:
            raise ValueError(f"layer {layer} has no cached tokens")
        if keep.shape != self.alive[layer].shape:
            raise ValueError(f"keep must have shape {tuple(self.alive[layer].shape)}, got {tuple(keep.shape)}")
        keep = keep.clone()
        keep[..., -1] = True
        self.alive[layer] = self.alive[layer] & keep

    def compact(self) -> None:
        """Physically drop columns dead in every (batch row, head) of each layer."""
        for i in range(self.n_layer):
            if self.alive[i] is None:
                continue
            cols = self.alive[i].any(dim=1).any(dim=0)
            if bool(cols.all()):
                continue
            self.k[i] = self.k[i][:, :, cols]
            self.v[i] = self.v[i][:, :, cols]
            self.alive[i] = self.alive[i][:, :, cols]
            self.pos[i] = self.pos[i][cols]
            for name, t in self.side[i].items():
                if t.shape[2] != cols.numel():
                    raise ValueError(f"side state {name!r} of layer {i} is not aligned with the cache columns")
                self.side[i][name] = t[:, :, cols]

    def alive_fraction(self) -> float:
        """Alive entries over all tokens seen, averaged over layers, batch rows and heads."""
        if self.n_seen == 0:
            return 1.0
        return float(sum(a.float().sum(-1).mean() for a in self.alive if a is not None) / (self.n_layer * self.n_seen))

    def nbytes(self) -> int:
        """Bytes held by the cached keys and values (after ``compact`` this is what eviction saved)."""
        return sum(t.numel() * t.element_size() for t in self.k + self.v if t is not None)

"""The two-layer ICL toy (faithful to the AMICL / Reddy code) and a GPT-style block model.

``ToyTransformer`` is an ensemble: every weight has a leading member axis E, so S seeds x A stream
arms train as one batched model (one GEMM per projection for all members). Members differ only in
their parameters and in their stream weights; a member whose stream weight is 0 computes exactly the
baseline. ``GPT`` is an ordinary single model with grouped KV heads, learned or rotary positions and
incremental decoding through ``KVCache``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from transformers_mini.core.attention import KVCache, attend, attend_causal_fused, mix_stream
from transformers_mini.core.config import STREAMS, GPTConfig, ToyConfig
from transformers_mini.core.hooks import Hooks


def toy_init(config: ToyConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One member's parameters, drawn in a fixed order (so arms with one seed share their init).

    Q, K, V ~ N(0, 1/init_D); MLP W ~ N(0, 2/d) (He), scalar biases ~ N(0, 1/d); readout ~ N(0, 1/d).
    """
    c, d = config, config.d_in

    def normal(shape, var):
        return torch.randn(shape, generator=generator) * math.sqrt(var)

    params = {
        "qkv": normal((c.n_layer, 3, d, d), 1.0 / c.init_D),
        "mlp_w": normal((c.mlp_layers, d, d), 2.0 / d),
        "mlp_b": normal((c.mlp_layers,), 1.0 / d),
        "readout": normal((d, c.n_labels), 1.0 / d),
    }
    if c.init == "official":
        # The official JAX init splits 4 keys and reads keys[4] and keys[5], which clamp to keys[3]
        # (docs/reference.md sec. 5): the second and third scalar biases are one
        # draw, b2 = b3, and on jax >= 0.5 (partitionable threefry: element i of any shape drawn from a
        # key is the i-th normal of that key) the readout is the third layer's first d x n_labels
        # entries in row-major order, rescaled from variance 2/d to 1/d. The marginals are unchanged.
        params["mlp_b"][2] = params["mlp_b"][1]
        params["readout"] = params["mlp_w"][2].reshape(-1)[: d * c.n_labels].reshape(d, c.n_labels) / math.sqrt(2)
    return params


def _grad_only_where(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x with its forward value unchanged; gradient flows only into members e with keep[e] = 1."""
    fixed = x.detach()
    return fixed + (x - fixed) * keep.view(-1, *([1] * (x.dim() - 1)))


class ToyTransformer(nn.Module):
    """An ensemble of E two-layer ICL toys, one ``ToyConfig`` and seed per member.

    The configs must agree on every shape and on the stream's source and mix; they may differ in the
    stream kind (none, V, K, Q) and lambda, which become per-member weights.
    """

    def __init__(self, configs: list[ToyConfig], seeds: list[int]):
        super().__init__()
        if not configs or len(configs) != len(seeds):
            raise ValueError(f"need one seed per config; got {len(configs)} configs and {len(seeds)} seeds")
        ref = configs[0]
        for c in configs:
            same = {k: v for k, v in c.to_dict().items() if k != "stream"} == {
                k: v for k, v in ref.to_dict().items() if k != "stream"
            }
            if not same or (c.stream.source, c.stream.mix, c.stream.learn) != (
                ref.stream.source,
                ref.stream.mix,
                ref.stream.learn,
            ):
                raise ValueError("ensemble members must share shapes and stream source/mix/learn")
        self.configs = list(configs)
        self.config = ref
        params = [toy_init(c, torch.Generator().manual_seed(int(s))) for c, s in zip(configs, seeds)]
        for name in params[0]:
            setattr(self, name, nn.Parameter(torch.stack([p[name] for p in params])))
        # Stream weight per member, layer and projection (Q, K, V): lambda on the streamed one, else 0.
        lam = torch.zeros(len(configs), ref.n_layer, 3)
        for e, c in enumerate(configs):
            for p in STREAMS[c.stream.kind]:
                lam[e, 1:, "qkv".index(p)] = c.stream.lam
        # 1 where a member's stream term carries gradient, 0 where it is forward-only (detach)
        grad = torch.tensor([0.0 if c.stream.detach else 1.0 for c in configs])
        self.register_buffer("stream_grad", grad, persistent=False)  # not in checkpoints: derived from configs
        if ref.stream.learn:
            self.stream_lam = nn.Parameter(lam)
            self.register_buffer("stream_on", (lam != 0).float())
        else:
            self.register_buffer("stream_lam", lam)
            self.stream_on = None
        self._host_flags()

    def _host_flags(self) -> None:
        """What the forward pass branches on, known on the host from the configs, so that a step on a GPU
        never waits for the device to answer: does any member stream, and do all take the stream's
        gradient (none detaches)."""
        self.any_stream = any(STREAMS[c.stream.kind] and c.stream.lam != 0 for c in self.configs)
        self.all_stream_grad = not any(c.stream.detach for c in self.configs)

    @property
    def members(self) -> int:
        return len(self.configs)

    def keep_members(self, idx: list[int]) -> None:
        """Drop every member but ``idx`` (in that order); the kept members' parameters are unchanged, and
        since members never interact their training goes on as before, up to float rounding."""
        if not idx or len(set(idx)) != len(idx) or min(idx) < 0 or max(idx) >= self.members:
            raise ValueError(f"member indices must be distinct, in [0, {self.members}); got {idx}")
        sel = torch.tensor(idx, device=self.stream_lam.device)
        for name, p in list(self.named_parameters()):
            setattr(self, name, nn.Parameter(p.detach()[sel].clone(), requires_grad=p.requires_grad))
        for name, b in list(self.named_buffers()):
            setattr(self, name, b[sel].clone())
        self.configs = [self.configs[i] for i in idx]
        self._host_flags()

    def stream_weights(self) -> torch.Tensor:
        """(E, L): each member's stream weight per layer on the (first) projection it streams (0 for the
        baseline and for layer 0, which has no earlier layer), as the forward pass uses it."""
        lam = self.stream_lam if self.stream_on is None else self.stream_lam * self.stream_on
        first = ["qkv".index(STREAMS[c.stream.kind][0]) if STREAMS[c.stream.kind] else 0 for c in self.configs]
        proj = torch.tensor(first, device=lam.device)
        return lam.detach()[torch.arange(self.members, device=lam.device), :, proj]

    def n_params(self) -> int:
        """Parameters of one member (learned stream weights count once per streamed layer)."""
        n = sum(p[0].numel() for name, p in self.named_parameters() if name != "stream_lam")
        if self.config.stream.learn:
            n += self.config.n_layer - 1
        return n

    def forward(self, x: torch.Tensor, return_attn: bool = False, hooks: Hooks | None = None):
        """x: (E, B, T, d) (or (B, T, d), shared by all members) -> logits (E, B, n_labels).

        With ``return_attn`` also returns one (E, B, T, T) attention-probability tensor per layer
        (query rows, key columns). ``hooks`` reads or replaces named activations (``core.hooks``).
        """
        E = self.members
        if x.dim() == 3:
            x = x.expand(E, *x.shape)
        if x.dim() != 4 or x.shape[0] != E or x.shape[-1] != self.config.d_in:
            raise ValueError(f"x must be (E={E}, B, T, d={self.config.d_in}), got {tuple(x.shape)}")
        _, B, T, d = x.shape
        pos = torch.arange(T, device=x.device)
        lam = self.stream_lam if self.stream_on is None else self.stream_lam * self.stream_on
        hook = hooks if hooks is not None else _no_hook
        h = x
        raw, attn = [], []
        L = self.config.n_layer
        for layer in range(L):
            pre = f"blocks.{layer}."
            h = hook(pre + "hook_resid_pre", h)
            # q, k, v = h W_q, h W_k, h W_v for all members in one batched GEMM
            w = self.qkv[:, layer].permute(0, 2, 1, 3).reshape(E, d, 3 * d)
            # Only the query token is read out, so the last layer needs its query there alone (exact).
            last_only = layer == L - 1 and not return_attn
            if last_only:
                k, v = torch.bmm(h.reshape(E, B * T, d), w[:, :, d:]).reshape(E, B, T, 2, d).unbind(3)
                q = torch.bmm(h[:, :, -1], w[:, :, :d]).unsqueeze(2)  # (E, B, 1, d)
            else:
                q, k, v = torch.bmm(h.reshape(E, B * T, d), w).reshape(E, B, T, 3, d).unbind(3)
            q, k, v = (hook(pre + f"attn.hook_{n}", t) for n, t in zip("qkv", (q, k, v)))
            raw.append((q, k, v))
            if layer > 0 and self.any_stream:
                src = raw[layer - 1] if self.config.stream.source == "previous" else raw[0]
                src = [hook(pre + f"attn.hook_stream_{n}", t) for n, t in zip("qkv", src)]
                if not self.all_stream_grad:
                    src = [_grad_only_where(p, self.stream_grad) for p in src]
                wl = lam[:, layer].reshape(E, 1, 1, 1, 3)
                q = mix_stream(q, src[0][:, :, -q.shape[2] :], wl[..., 0], self.config.stream.mix)
                k = mix_stream(k, src[1], wl[..., 1], self.config.stream.mix)
                v = mix_stream(v, src[2], wl[..., 2], self.config.stream.mix)
            # logit(i -> j) = (K x_i).(Q x_j), no 1/sqrt(d), causal; h <- h + sum_i A_ij V x_i
            q_pos = pos[-q.shape[2] :]
            on_attn = None
            if hooks is not None:  # (E, B, 1, Tq, Tk) inside attend; (E, B, Tq, Tk) at the hook point

                def on_attn(kind, t, pre=pre):
                    return hooks(pre + f"attn.hook_{kind}", t.squeeze(2)).unsqueeze(2)

            out, p = attend(q.unsqueeze(2), k, v, q_pos, pos, 1.0, None, return_attn, hook=on_attn)
            out = hook(pre + "hook_attn_out", out.squeeze(2))
            h = hook(pre + "hook_resid_post", h[:, :, -1:] + out if last_only else h + out)
            if return_attn:
                attn.append(p.squeeze(2))
        z = hook("mlp.hook_in", h[:, :, -1])  # (E, B, d): only the query token is read out
        for i in range(self.config.mlp_layers):
            z = hook(f"mlp.{i}.hook_post", torch.relu(torch.bmm(z, self.mlp_w[:, i]) + self.mlp_b[:, i, None, None]))
        logits = hook("hook_logits", torch.bmm(z, self.readout))
        return (logits, attn) if return_attn else logits


def _no_hook(name: str, x: torch.Tensor) -> torch.Tensor:
    return x


class Block(nn.Module):
    """Pre-LN block: x + Attn(LN(x)), then x + MLP(LN(x)), with grouped KV heads."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c = c
        self.ln1 = nn.LayerNorm(c.d_model)
        self.q = nn.Linear(c.d_model, c.n_head * c.d_head, bias=c.bias)
        self.k = nn.Linear(c.d_model, c.kv_heads * c.d_head, bias=c.bias)
        self.v = nn.Linear(c.d_model, c.kv_heads * c.d_head, bias=c.bias)
        self.o = nn.Linear(c.n_head * c.d_head, c.d_model, bias=c.bias)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.fc = nn.Linear(c.d_model, c.mlp_ratio * c.d_model, bias=c.bias)
        self.proj = nn.Linear(c.mlp_ratio * c.d_model, c.d_model, bias=c.bias)
        self.lam = nn.Parameter(torch.tensor(float(c.stream.lam))) if c.stream.learn else None
        self.drop = nn.Dropout(c.dropout)  # the attention and MLP outputs (identity when 0 or in eval)

    def project(self, x):
        """Raw q (B, H, T, dh), k, v (B, H_kv, T, dh) from this block's input (before any stream)."""
        B, T, _ = x.shape
        c = self.c
        h = self.ln1(x)
        q = self.q(h).view(B, T, c.n_head, c.d_head).transpose(1, 2)
        k = self.k(h).view(B, T, c.kv_heads, c.d_head).transpose(1, 2)
        v = self.v(h).view(B, T, c.kv_heads, c.d_head).transpose(1, 2)
        return q, k, v

    def forward(
        self,
        x,
        raw,
        *,
        pos,
        src=None,
        layer: int = 0,
        cache: KVCache | None = None,
        rotary=None,
        return_attn: bool = False,
        hooks: Hooks | None = None,
    ):
        """x (B, T, d) with its raw projections ``raw`` (from ``project``); ``src``: the stream source's raw
        projections, or None. Returns (x, attention probabilities or None)."""
        c = self.c
        B, T, _ = x.shape
        q, k, v = raw
        hook, pre = (hooks if hooks is not None else _no_hook), f"blocks.{layer}."
        if src is not None:  # residual attention stream from an earlier block's raw projection
            lam = self.lam if self.lam is not None else c.stream.lam
            mixed = []
            for n, p, s in zip("qkv", (q, k, v), src):
                if n in STREAMS[c.stream.kind]:
                    s = hook(pre + f"attn.hook_stream_{n}", s)
                    p = mix_stream(p, s.detach() if c.stream.detach else s, lam, c.stream.mix)
                mixed.append(p)
            q, k, v = mixed
        if rotary is not None:
            q, k = rotary(q, pos), rotary(k, pos)
        if cache is not None:
            k, v, alive, k_pos = cache.append(layer, k, v, pos)
        else:
            alive, k_pos = None, pos
        G = c.n_head // c.kv_heads
        qg = q.view(B, c.kv_heads, G, T, c.d_head)
        scale = 1.0 / math.sqrt(c.d_head) if c.scale else 1.0
        p_drop = c.dropout if self.training else 0.0
        explicit = hooks is not None and any(hooks.wants(pre + f"attn.hook_{n}") for n in ("attn_scores", "pattern"))
        on_attn = None
        if hooks is not None:  # (B, H_kv, G, Tq, Tk) inside attend; (B, H, Tq, Tk) at the hook point

            def on_attn(kind, t):
                return hooks(pre + f"attn.hook_{kind}", t.reshape(B, c.n_head, T, -1)).reshape(t.shape)

        if cache is None and not return_attn and not explicit:
            out, probs = attend_causal_fused(qg, k, v, scale, p_drop), None
        else:
            out, probs = attend(qg, k, v, pos, k_pos, scale, alive, return_attn, p_drop, hook=on_attn)
        out = hook(pre + "attn.hook_z", out.reshape(B, c.n_head, T, c.d_head).transpose(1, 2))  # (B, T, H, dh)
        x = x + hook(pre + "hook_attn_out", self.drop(self.o(out.reshape(B, T, c.n_head * c.d_head))))
        x = x + hook(pre + "hook_mlp_out", self.drop(self.proj(nn.functional.gelu(self.fc(self.ln2(x))))))
        x = hook(pre + "hook_resid_post", x)
        return x, (probs.reshape(B, c.n_head, T, -1) if return_attn else None)


class Rotary(nn.Module):
    """Rotary position embedding (RoFormer) applied at absolute positions."""

    def __init__(self, d_head: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", base ** (-torch.arange(0, d_head, 2).float() / d_head), persistent=False)

    def forward(self, x, pos):
        ang = pos.to(self.inv_freq.dtype)[:, None] * self.inv_freq[None, :]  # (T, dh/2)
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class GPT(nn.Module):
    """GPT-style decoder from the same attention as the toy, with the value (or K/Q) stream available
    in every block (``source="previous"`` chains l-1 -> l as the AMICL 8M model; "first" is ResFormer)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        c = self.config = config
        self.tok = nn.Embedding(c.vocab_size, c.d_model)
        self.prev_tok = nn.Embedding(c.vocab_size, c.d_model) if c.token_shift else None
        self.pos_emb = nn.Embedding(c.block_size, c.d_model) if c.pos == "learned" else None
        self.rotary = Rotary(c.d_head) if c.pos == "rotary" else None
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.drop = nn.Dropout(c.dropout)  # on the summed embeddings
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.head.weight = self.tok.weight  # tied embeddings
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, idx: torch.Tensor, cache: KVCache | None = None, return_attn: bool = False, hooks: Hooks | None = None
    ):
        """idx (B, T) tokens -> logits (B, T, vocab). With a cache, idx continues the cached sequence.

        ``return_attn`` also returns per-layer probabilities (B, H, T, T_cached) over the cache's columns.
        ``hooks`` reads or replaces named activations (``core.hooks``).
        """
        c = self.config
        B, T = idx.shape
        start = cache.n_seen if cache is not None else 0
        if start + T > c.block_size and self.pos_emb is not None:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size={c.block_size}")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.tok(idx)
        if self.prev_tok is not None:  # the first token's predecessor is token 0 (PAD in the NAMM tasks)
            first = cache.last_token if cache is not None and cache.last_token is not None else idx.new_zeros(B)
            x = x + self.prev_tok(torch.cat([first[:, None], idx[:, :-1]], dim=1))
        if self.pos_emb is not None:
            x = x + self.pos_emb(pos)
        x = self.drop(x)
        hook = hooks if hooks is not None else _no_hook
        raws, attn = [], []
        for layer, block in enumerate(self.blocks):
            x = hook(f"blocks.{layer}.hook_resid_pre", x)
            raw = tuple(hook(f"blocks.{layer}.attn.hook_{n}", t) for n, t in zip("qkv", block.project(x)))
            raws.append(raw)
            src = None
            if c.stream.kind != "none" and layer > 0:
                src = raws[layer - 1] if c.stream.source == "previous" else raws[0]
            x, probs = block(
                x, raw, pos=pos, src=src, layer=layer, cache=cache, rotary=self.rotary, return_attn=return_attn,
                hooks=hooks,
            )  # fmt: skip
            attn.append(probs)
        if cache is not None:
            cache.n_seen += T
            cache.last_token = idx[:, -1]
        logits = hook("hook_logits", self.head(self.ln_f(x)))
        return (logits, attn) if return_attn else logits


__all__ = ["ToyTransformer", "GPT", "toy_init", "STREAMS"]

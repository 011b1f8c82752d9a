"""Mechanistic probes of the two-layer ICL toy, set beside the AMICL memory on the same sequences.

AMICL binds every token to its predecessor, m_t = (a x_{t-1} + x_t)/(a+1), and retrieves the label
whose bound memory best matches the query a x_q/(a+1). The toy can do the same with a previous-token
head in layer 1 (writing x_{t-1} into position t) and an induction head in layer 2 (the query's
attention landing on the label after the earlier copy of its class). Measured per member, on a fixed
probe set (the ``ic`` test: novel classes, bursty contexts, only in-context learning solves it):

- ``prev_token``: layer 1's attention mass on t-1, averaged over positions t >= 1;
- ``a_fit``, ``a_fit_r2``: the binding weight layer 1 implies. Layer 1's output at each label position,
  h_t = x_t + sum_j A_tj x_j W_v, content dims, is fitted by least squares as alpha x_t + beta x_{t-1}
  (pooled over positions and sequences); a = beta/alpha, and R^2 says how much of h_t that mix explains;
- ``a_gain``: the same binding weight in any basis (``binding_gain``): the predecessor's contribution
  through W_v per unit norm over the token's own, so a layer 1 that writes x_{t-1} rotated (a_fit ~ 0)
  still shows how much of its predecessor each label carries;
- ``induction``: layer 2's attention mass, at the query, on the labels that follow an item of the
  query's class;
- ``amicl_corr``, ``amicl_top1`` (AMICL's a = a_fit) and ``amicl_corr_a2``, ``amicl_top1_a2`` (a = 2):
  Pearson correlation, per sequence, of layer 2's attention logits at the query with AMICL's similarity
  scores m_t . m_q over the same keys, and how often both pick the same key (``_gain``: at a = a_gain);
- ``beta_eff``: effective inverse temperature, the least-squares slope of those logits on AMICL's scores
  at a = 2 (within-sequence, pooled); ``k90``: keys holding 90% of the query's layer-2 attention
  (1: a fixed point, many: averaging; Ramsauer et al. 2020);
- ``q_comp``, ``k_comp``, ``v_comp``: Elhage et al. (2021) composition of layer 2's Q, K and V with layer
  1's OV circuit, ||W_OV1 W||_F / (||W_OV1||_F ||W||_F) with W = W_QK2, W_QK2^T, W_OV2 (row-vector
  convention: q = h W_q, logit = h_q W_q W_k^T h_k^T). Two independent Gaussian d x d matrices give
  about 1/sqrt(d). The V stream adds x W_v1 to layer 2's values outside these weights, so it shows in
  the attention probes, not here.

Sources: docs/reference.md sec. 4 (Olsson et al. 2022, Elhage et al. 2021,
Reddy 2024, Ramsauer et al. 2020).
"""

from __future__ import annotations

import numpy as np
import torch

from transformers_mini.core.hooks import Hooks
from transformers_mini.toy import probe_specs

PROBES = probe_specs.names()  # the built-in probes, in probes.csv's column order


def _check_attention(a: torch.Tensor, name: str) -> None:
    if a.dim() != 4 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{name} must be (E, S, T, T), got {tuple(a.shape)}")


def previous_token_score(attn1: torch.Tensor) -> np.ndarray:
    """(E,) mean attention mass on t-1 over positions t >= 1 and sequences."""
    _check_attention(attn1, "attn1")
    return attn1.double().diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(1, 2)).numpy()


def _per_member(t: torch.Tensor, dims: int, E: int) -> torch.Tensor:
    """``t`` with a leading member axis: given (E, ...) as is, or shared by all members."""
    t = torch.as_tensor(t)
    return t.expand(E, *t.shape) if t.dim() == dims else t


def binding_fit(x: torch.Tensor, attn1: torch.Tensor, w_v1: torch.Tensor, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, R^2) per member: layer 1's output at the label positions 1, 3, ..., fitted as
    alpha x_t + beta x_{t-1} over the content dims (from ``n_pos`` on); a = beta / alpha.

    x: (S, T, d) inputs, or (E, S, T, d) one set per member; attn1: (E, S, T, T); w_v1: (E, d, d) layer
    1's value matrix (v = h W_v)."""
    _check_attention(attn1, "attn1")
    E = attn1.shape[0]
    x, attn1, w_v1 = _per_member(x, 3, E).double(), attn1.double(), w_v1.double()
    h1 = x + torch.einsum("estj,esjd,edf->estf", attn1, x, w_v1)  # (E, S, T, d)
    t = torch.arange(1, x.shape[2] - 1, 2)  # label positions
    y = h1[:, :, t, n_pos:].reshape(E, -1, 1)  # (E, n, 1)
    X = torch.stack([x[:, :, t, n_pos:].reshape(E, -1), x[:, :, t - 1, n_pos:].reshape(E, -1)], dim=-1)  # (E, n, 2)
    coef = torch.linalg.lstsq(X, y).solution  # (E, 2, 1)
    resid = (y - X @ coef)[..., 0]
    r2 = 1 - (resid**2).sum(1) / ((y[..., 0] - y[..., 0].mean(1, keepdim=True)) ** 2).sum(1)
    return (coef[:, 1, 0] / coef[:, 0, 0]).numpy(), r2.numpy()


def binding_gain(x: torch.Tensor, attn1: torch.Tensor, w_v1: torch.Tensor, n_pos: int) -> np.ndarray:
    """(E,) the binding weight in any basis: at the label positions, the content-dim norm of what layer 1
    writes from the predecessor, A_{t,t-1} x_{t-1} W_v, per unit norm of x_{t-1}, over the norm of what
    stays of the token itself, x_t + A_tt x_t W_v, per unit norm of x_t (means over positions and
    sequences). Equals AMICL's a when W_v = a I and layer 1 attends to t-1 only; unlike ``binding_fit``
    it does not need layer 1 to write x_{t-1} in x_{t-1}'s own directions."""
    _check_attention(attn1, "attn1")
    E = attn1.shape[0]
    x, attn1, w_v1 = _per_member(x, 3, E).double(), attn1.double(), w_v1.double()
    t = torch.arange(1, x.shape[2] - 1, 2)
    v = torch.einsum("estd,edf->estf", x, w_v1)  # (E, S, T, d): every token's value
    prev = (attn1[:, :, t, t - 1, None] * v[:, :, t - 1])[..., n_pos:].norm(dim=-1)
    own = (x[:, :, t] + attn1[:, :, t, t, None] * v[:, :, t])[..., n_pos:].norm(dim=-1)
    unit = lambda z: z[..., n_pos:].norm(dim=-1).clamp_min(1e-300)  # noqa: E731
    return ((prev / unit(x[:, :, t - 1])).mean((1, 2)) / (own / unit(x[:, :, t])).mean((1, 2))).numpy()


def induction_score(attn2: torch.Tensor, classes: np.ndarray) -> np.ndarray:
    """(E,) layer 2's attention mass at the query on the labels after an item of the query's class.

    attn2: (E, S, T, T) with T = 2N + 1; classes: (S, N + 1) or (E, S, N + 1), the query's last."""
    _check_attention(attn2, "attn2")
    classes = _per_member(torch.as_tensor(np.asarray(classes)), 2, attn2.shape[0])
    N = classes.shape[-1] - 1
    if attn2.shape[-1] != 2 * N + 1 or attn2.shape[:2] != classes.shape[:2]:
        raise ValueError(f"attn2 {tuple(attn2.shape)} does not fit classes {tuple(classes.shape)}")
    target = torch.zeros(*classes.shape[:2], 2 * N + 1, dtype=torch.float64)
    target[..., 1 : 2 * N : 2] = (classes[..., :N] == classes[..., N:]).double()
    return (attn2[:, :, -1].double() * target).sum(-1).mean(1).numpy()


def amicl_scores(content: torch.Tensor, a: torch.Tensor | float) -> torch.Tensor:
    """AMICL's similarity of each bound memory with the query, (E, S, T): m_t . m_q for the keys
    t = 0 .. T-1 of sequences ``content`` (S, T, D) or (E, S, T, D), m_t = (a x_{t-1} + x_t)/(a+1)
    (x_{-1} = 0, the empty label slot that ends the sequence), m_q = a x_{T-1}/(a+1). ``a``: a float or
    one per member."""
    content = content.double()
    a = torch.as_tensor(a, dtype=torch.float64).reshape(-1, 1, 1, 1)  # (E, 1, 1, 1)
    if content.dim() == 3:
        content = content.expand(a.shape[0], *content.shape)
    prev = torch.nn.functional.pad(content, (0, 0, 1, 0))[:, :, :-1]  # x_{t-1}, zero before the first token
    m = (a * prev + content) / (a + 1)
    q = a[..., 0, :] * content[:, :, -1] / (a[..., 0, :] + 1)  # (E, S, D)
    return torch.einsum("estd,esd->est", m, q)


def agreement(z: torch.Tensor, s: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(correlation, top-1 agreement, slope) per member of logits z with scores s, both (E, S, T)
    over the keys: Pearson within each sequence then averaged; argmax equal; least-squares slope of z
    on s after removing each sequence's mean, pooled."""
    z, s = z.double(), s.double().expand_as(z)
    zc, sc = z - z.mean(-1, keepdim=True), s - s.mean(-1, keepdim=True)
    den = (zc.norm(dim=-1) * sc.norm(dim=-1)).clamp_min(1e-300)
    corr = ((zc * sc).sum(-1) / den).mean(1)
    top1 = (z.argmax(-1) == s.argmax(-1)).double().mean(1)
    slope = (zc * sc).sum(dim=(1, 2)) / (sc**2).sum(dim=(1, 2)).clamp_min(1e-300)
    return corr.numpy(), top1.numpy(), slope.numpy()


def k_mass(p: torch.Tensor, mass: float = 0.9) -> np.ndarray:
    """(E,) mean over sequences of the fewest keys holding ``mass`` of each row p (E, S, T)."""
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    cum = p.double().sort(dim=-1, descending=True).values.cumsum(-1)
    return ((cum < mass - 1e-12).sum(-1) + 1).double().mean(1).numpy()


def composition(qkv: torch.Tensor) -> dict[str, np.ndarray]:
    """Q-, K- and V-composition of layer 2 with layer 1, per member, from qkv (E, layers, 3, d, d)."""
    w = qkv.detach().double()
    ov1, q2, k2, ov2 = w[:, 0, 2], w[:, 1, 0], w[:, 1, 1], w[:, 1, 2]
    qk2 = q2 @ k2.transpose(-1, -2)
    fro = lambda m: torch.linalg.matrix_norm(m)  # noqa: E731
    score = lambda m: (fro(ov1 @ m) / (fro(ov1) * fro(m)).clamp_min(1e-300)).numpy()  # noqa: E731
    return {"q_comp": score(qk2), "k_comp": score(qk2.transpose(-1, -2)), "v_comp": score(ov2)}


@torch.no_grad()
def probe_model(model, x: torch.Tensor, classes, n_pos: int) -> dict[str, np.ndarray]:
    """Every probe of ``PROBES`` for every member of a ``ToyTransformer`` (name -> (E,)) on the
    sequences x (S, T, d) with item classes (S, N + 1) (a ``Batch``'s), or one set per member,
    (E, S, T, d) and (E, S, N + 1)."""
    if model.config.n_layer != 2:
        raise ValueError(f"the probes read a two-layer toy; this one has {model.config.n_layer} layers")
    x = torch.as_tensor(x).to(model.qkv.device)
    hooks = Hooks(cache=["blocks.1.attn.hook_attn_scores"])
    _, attn = model(x, return_attn=True, hooks=hooks)
    z = hooks.cache["blocks.1.attn.hook_attn_scores"][:, :, -1].cpu()  # (E, S, T): layer 2's logits at the query
    attn1, attn2 = attn[0].cpu(), attn[1].cpu()
    x = _per_member(x.cpu(), 3, model.members)
    out = {"prev_token": previous_token_score(attn1)}
    w_v1 = model.qkv[:, 0, 2].cpu()
    out["a_fit"], out["a_fit_r2"] = binding_fit(x, attn1, w_v1, n_pos)
    out["a_gain"] = binding_gain(x, attn1, w_v1, n_pos)
    out["induction"] = induction_score(attn2, classes)
    content = x[..., n_pos:]
    fitted = torch.from_numpy(out["a_fit"]).clamp(min=0.0)  # AMICL's a is a weight >= 0
    out["amicl_corr"], out["amicl_top1"], _ = agreement(z, amicl_scores(content, fitted))
    gain = torch.from_numpy(out["a_gain"])
    out["amicl_corr_gain"], out["amicl_top1_gain"], _ = agreement(z, amicl_scores(content, gain))
    out["amicl_corr_a2"], out["amicl_top1_a2"], out["beta_eff"] = agreement(z, amicl_scores(content, 2.0))
    out["k90"] = k_mass(attn2[:, :, -1])
    out.update(composition(model.qkv.cpu()))
    context = {"attn1": attn1, "attn2": attn2, "z": z, "x": x, "classes": classes, "model": model}
    for probe in probe_specs.PROBES:  # probes registered with a compute function of their own
        if probe.compute is not None:
            out[probe.name] = np.asarray(probe.compute(context), dtype=float).reshape(model.members)
    return out

"""Interventions on trained two-layer toys: does the network compute AMICL, and through what?

Each intervention is a set of hooks (``core.hooks``) applied while every member of a ``streams`` run's
checkpoint answers its seed's own test sets (ic, ic2, iw, ...); the accuracy after it is compared with
the clean accuracy on the same sequences.

- ``zero:attn{l}`` / ``mean:attn{l}``: layer l's attention output (one head per layer) replaced by zeros,
  or by its mean over the test sequences at each position (mean ablation);
- ``zero:stream`` / ``mean:stream``: the stream term of layer 2 (the earlier layer's projection it mixes
  in), zeroed or mean-ablated; on a member without a stream it changes nothing;
- ``binding:w``: layer 1's pattern replaced by AMICL's binding, mass w on the predecessor t-1 and 1-w
  on t itself (the first token keeps all its mass; w = a/(a+1) is AMICL's weight a);
- ``amicl:a,beta``: layer 2's pattern at the query replaced by AMICL's retrieval weights,
  softmax(beta * m_t . m_q) over the context keys t < T-1 (the query's own key gets none, as AMICL
  replaces it by a decoy), m_t = (a x_{t-1} + x_t)/(a+1) and m_q = a x_q/(a+1) on the content
  dimensions; layer 2's values and everything else stay the network's own.

Activation patching (``patching``): each ic sequence is paired with a corrupted copy in which the
label of the query's class is another one (every context label of that class replaced by a label the
sequence does not show), so the right answer moves from y to y'. Layer 1's output (its attention
output, or the whole residual after it) from the corrupted run is patched into the clean run at the
positions of one role (labels or items of the query's class, of the other classes, the query); the
effect is the share of the logit difference logit(y) - logit(y') that moves, (LD_patched - LD_clean) /
(LD_corrupt - LD_clean), means over sequences (1: that role's layer-1 output carries the change).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from transformers_mini.core.hooks import Hooks
from transformers_mini.toy.probes import amicl_scores
from transformers_mini.toy.tables import PATCH_ROLES

BINDING_W = (0.0, 0.25, 0.5, 2 / 3, 0.75, 1.0)
AMICL_A = (0.5, 1.0, 2.0, 4.0)
AMICL_BETA = (1.0, 10.0, 30.0, 100.0, 300.0)
STREAM_POINTS = tuple(f"blocks.1.attn.hook_stream_{n}" for n in "qkv")


@dataclass(frozen=True)
class Intervention:
    """``kind``: clean, zero, mean, binding or amicl; ``target``: attn0, attn1 or stream (zero, mean);
    ``w`` (binding), ``a`` and ``beta`` (amicl)."""

    kind: str
    target: str = ""
    w: float | None = None
    a: float | None = None
    beta: float | None = None

    @property
    def label(self) -> str:
        if self.kind in ("zero", "mean"):
            return f"{self.kind}:{self.target}"
        if self.kind == "binding":
            return f"binding:w={self.w:.3g}"
        if self.kind == "amicl":
            return f"amicl:a={self.a:g},beta={self.beta:g}"
        return self.kind

    def points(self) -> tuple[str, ...]:
        """The hook points it replaces."""
        if self.kind in ("zero", "mean"):
            return STREAM_POINTS if self.target == "stream" else (f"blocks.{self.target[-1]}.hook_attn_out",)
        return {"binding": ("blocks.0.attn.hook_pattern",), "amicl": ("blocks.1.attn.hook_pattern",)}.get(self.kind, ())


def default_grid(binding_w=BINDING_W, amicl_a=AMICL_A, amicl_beta=AMICL_BETA) -> list[Intervention]:
    """Clean, the six ablations, a binding transplant per w and an AMICL transplant per (a, beta)."""
    for name, values, hi in (
        ("binding w", binding_w, 1.0),
        ("AMICL a", amicl_a, np.inf),
        ("AMICL beta", amicl_beta, np.inf),
    ):
        bad = [v for v in values if not (0.0 <= v <= hi and np.isfinite(v))]
        if bad:
            raise ValueError(f"{name} must be in [0, {hi:g}], got {bad[0]}")
    grid = [Intervention("clean")]
    grid += [Intervention(k, t) for t in ("attn0", "attn1", "stream") for k in ("zero", "mean")]
    grid += [Intervention("binding", w=float(w)) for w in binding_w]
    grid += [Intervention("amicl", a=float(a), beta=float(b)) for a in amicl_a for b in amicl_beta]
    return grid


def binding_pattern(T: int, w: float, shape: tuple = ()) -> torch.Tensor:
    """(*shape, T, T): row t puts mass w on t-1 and 1-w on t; row 0 all on itself."""
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"the binding weight w must be in [0, 1], got {w}")
    p = torch.eye(T) * (1.0 - w)
    p[1:, :-1] += torch.eye(T - 1) * w
    p[0, 0] = 1.0
    return p.expand(*shape, T, T)


def induction_pattern(classes: torch.Tensor, T: int) -> torch.Tensor:
    """(E, B, 1, T) an ideal induction head at the query for item classes (E, B, N + 1) (query last):
    mass spread evenly over the label positions 2i + 1 whose item i has the query's class; all on the
    query itself where no item does."""
    N = classes.shape[-1] - 1
    match = (classes[..., :N] == classes[..., N:]).to(torch.float32)  # (E, B, N)
    p = torch.zeros(*classes.shape[:-1], T, device=classes.device)
    p[..., 1 : 2 * N : 2] = match
    p[..., T - 1] = (match.sum(-1) == 0).to(torch.float32)
    return (p / p.sum(-1, keepdim=True)).unsqueeze(-2)


def clamp_hooks(clamp: str, w: float, T: int, classes: torch.Tensor | None = None) -> Hooks | None:
    """The hooks of a clamped training (``TrainConfig.clamp``) for sequences of T tokens; ``classes``
    (E, B, N + 1) for the induction clamp."""
    if clamp == "none":
        return None
    if clamp == "binding":
        return Hooks({"blocks.0.attn.hook_pattern": lambda p: binding_pattern(T, w, p.shape[:-2]).to(p)})
    if clamp == "induction":
        pattern = induction_pattern(classes, T)
        return Hooks({"blocks.1.attn.hook_pattern": lambda p: pattern.to(p).expand_as(p)})
    raise ValueError(f"clamp must be none, binding or induction, got {clamp!r}")


def amicl_pattern(content: torch.Tensor, a: float, beta: float) -> torch.Tensor:
    """(E, B, 1, T) retrieval weights at the query for content (E, B, T, D): softmax over the keys
    t < T-1 of beta * m_t . m_q, 0 on the query's own key."""
    if a < 0 or beta < 0:
        raise ValueError(f"AMICL's a and beta must be >= 0, got a={a}, beta={beta}")
    E, B, T, D = content.shape
    s = amicl_scores(content.reshape(E * B, T, D)[None], a)[0].reshape(E, B, T) * beta
    s[..., -1] = float("-inf")
    return torch.softmax(s, dim=-1).to(content.dtype).unsqueeze(2)


def hooks_for(iv: Intervention, x: torch.Tensor, n_pos: int, means: dict | None = None) -> dict:
    """The hook functions of ``iv`` for the inputs x (E, B, T, d); ``means``: each replaced point's mean
    activation over the test sequences (mean ablation)."""
    if iv.kind == "zero":
        return {p: torch.zeros_like for p in iv.points()}
    if iv.kind == "mean":
        return {p: (lambda t, m=means[p]: m.expand_as(t).clone()) for p in iv.points()}
    if iv.kind == "binding":
        return {iv.points()[0]: lambda p: binding_pattern(p.shape[-1], iv.w, p.shape[:-2]).to(p).clone()}
    if iv.kind == "amicl":
        pattern = amicl_pattern(x[..., n_pos:], iv.a, iv.beta)
        return {iv.points()[0]: lambda p: pattern.expand_as(p).clone()}
    return {}


@torch.no_grad()
def intervention_accuracy(model, sets: dict, n_pos: int, grid: list[Intervention], chunk: int = 500, echo=None):
    """Accuracy (E,) of every member under every intervention on every test set: {(label, set): (E,)}.
    ``sets``: set name -> (x (E, S, T, d), y (E, S)), each member's own sequences."""
    have = _hook_points(model, next(iter(sets.values()))[0][:, :2])
    out = {}
    for iv in grid:
        if any(p not in have for p in iv.points()):
            continue  # e.g. the stream term of a run without a stream
        for name, (x, y) in sets.items():
            means = _means(model, x, iv.points(), chunk) if iv.kind == "mean" else None
            correct = torch.zeros(x.shape[0], device=x.device)
            for lo in range(0, x.shape[1], chunk):
                xb = x[:, lo : lo + chunk]
                logits = model(xb, hooks=Hooks(hooks_for(iv, xb, n_pos, means)))
                correct += (logits.argmax(-1) == y[:, lo : lo + chunk]).float().sum(1)
            out[(iv.label, name)] = correct.cpu().numpy().astype(np.float64) / x.shape[1]
        if echo:
            echo(f"{iv.label}: " + ", ".join(f"{n} {out[(iv.label, n)].mean():.3f}" for n in sets))
    return out


def _hook_points(model, x) -> set[str]:
    hooks = Hooks(cache=["*"])
    model(x, hooks=hooks)
    return set(hooks.seen)


def _means(model, x, points, chunk) -> dict[str, torch.Tensor]:
    """Each point's activation averaged over the sequences (axis 1), per member and position."""
    sums = {}
    for lo in range(0, x.shape[1], chunk):
        hooks = Hooks(cache=points)
        model(x[:, lo : lo + chunk], hooks=hooks)
        for p in points:
            sums[p] = sums.get(p, 0) + hooks.cache[p].sum(1, keepdim=True)
    return {p: s / x.shape[1] for p, s in sums.items()}


def intervene_run(folder, device: str = "auto", grid: list[Intervention] | None = None, echo=None) -> list[dict]:
    """Every intervention of ``grid`` (default: ``default_grid()``) on every member of the ``streams``
    run in ``folder``, on its seeds' own test sets: rows of arm, seed, step, intervention, set, accuracy,
    clean accuracy and the drop."""
    from transformers_mini.toy.train import load_trainer

    trainer = load_trainer(folder, device)
    if trainer.model.config.n_layer != 2:
        raise ValueError(f"the interventions act on a two-layer toy; {folder} has {trainer.model.config.n_layer}")
    idx = trainer.member_seed
    sets = {}
    for name in trainer.test_sets[0]:
        x = torch.from_numpy(np.stack([ts[name].x for ts in trainer.test_sets])).to(trainer.device)
        y = torch.from_numpy(np.stack([ts[name].y for ts in trainer.test_sets])).to(trainer.device)
        sets[name] = (x[idx], y[idx])
    grid = grid or default_grid()
    if grid[0].kind != "clean":
        grid = [Intervention("clean"), *grid]
    acc = intervention_accuracy(trainer.model, sets, trainer.run.task.n_pos, grid, echo=echo)
    rows = []
    for (label, name), values in acc.items():
        for e, (arm, seed) in enumerate(trainer.run.members):
            clean = float(acc[("clean", name)][e])
            rows.append({"arm": arm, "seed": seed, "step": trainer.step, "intervention": label, "set": name,
                         "accuracy": float(values[e]), "clean": clean, "drop": clean - float(values[e])})  # fmt: skip
    return rows, (_patch_rows(trainer) if "ic" in sets else [])


def _patch_rows(trainer) -> list[dict]:
    """``patching`` on every member's ic set (each seed's corruption drawn from its own stream)."""
    n_pos, idx = trainer.run.task.n_pos, trainer.member_seed_host
    clean = [ts["ic"] for ts in trainer.test_sets]
    corrupted = [
        corrupt(b, task.lam, n_pos, np.random.default_rng(np.random.SeedSequence(s, spawn_key=(7,))))
        for b, task, s in zip(clean, trainer.tasks, trainer.run.seeds)
    ]  # the corruptions' own stream per seed

    def per_member(arrays) -> np.ndarray:
        return np.stack([arrays[i] for i in idx])

    def tensor(arrays) -> torch.Tensor:
        return torch.from_numpy(per_member(arrays)).to(trainer.device)

    masks = role_masks(per_member([b.classes for b in clean]), clean[0].x.shape[1])
    effects = patching(trainer.model, tensor([b.x for b in clean]), tensor([c[0] for c in corrupted]),
                       tensor([b.y for b in clean]), tensor([c[1] for c in corrupted]), masks)  # fmt: skip
    return [{"arm": arm, "seed": seed, "step": trainer.step, "point": point, "role": role, "effect": float(v[e])}
            for (point, role), v in effects.items() for e, (arm, seed) in enumerate(trainer.run.members)]  # fmt: skip


def markdown(rows: list[dict]) -> str:
    """Per arm: accuracy after each intervention on each test set, mean over seeds with its bootstrap
    95% interval (seeds as the unit) where there are several."""
    from amicl.common.stats import mean_ci

    sets = list(dict.fromkeys(r["set"] for r in rows))
    lines = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        n = len({r["seed"] for r in mine})
        lines += [f"**{arm}** ({n} seed{'s' if n > 1 else ''}, step {mine[0]['step']:,}; accuracy"
                  + (", mean [95% interval over seeds]" if n > 1 else "") + ")", "",
                  "| intervention | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]  # fmt: skip
        for label in dict.fromkeys(r["intervention"] for r in mine):
            cells = []
            for name in sets:
                v = [r["accuracy"] for r in mine if r["intervention"] == label and r["set"] == name]
                m, lo, hi = mean_ci(v)
                cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if n > 1 else f"{m:.3f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


PATCH_POINTS = ("blocks.0.hook_attn_out", "blocks.0.hook_resid_post")


def role_masks(classes: np.ndarray, T: int) -> dict[str, np.ndarray]:
    """Positions of each role, (..., T) bool, for item classes (..., N + 1) (query last)."""
    N = classes.shape[-1] - 1
    same = classes[..., :N] == classes[..., N:]  # (..., N)
    masks = {r: np.zeros((*classes.shape[:-1], T), dtype=bool) for r in PATCH_ROLES}
    masks["query-class labels"][..., 1 : 2 * N : 2] = same
    masks["query-class items"][..., 0 : 2 * N : 2] = same
    masks["other labels"][..., 1 : 2 * N : 2] = ~same
    masks["other items"][..., 0 : 2 * N : 2] = ~same
    masks["query"][..., T - 1] = True
    masks["all"][:] = True
    return masks


def corrupt(batch, lam: np.ndarray, n_pos: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(x', y'): every context label of the query's class replaced by a label the sequence does not show
    (``lam`` the task's label vectors); sequences whose query class is not in the context keep x' = x."""
    x, N = batch.x.copy(), batch.labels.shape[1]
    y2 = batch.y.copy()
    for s in range(x.shape[0]):
        same = np.flatnonzero(batch.classes[s, :N] == batch.classes[s, N])
        if not len(same):
            continue
        free = np.setdiff1d(np.arange(len(lam)), batch.labels[s])
        y2[s] = rng.choice(free)
        x[s, 2 * same + 1, n_pos:] = lam[y2[s]]
    return x, y2


@torch.no_grad()
def patching(
    model, x, x2, y, y2, masks: dict[str, np.ndarray], points=PATCH_POINTS
) -> dict[tuple[str, str], np.ndarray]:
    """{(point, role): (E,)} the share of the logit difference logit(y) - logit(y') moved by patching
    ``point`` from the corrupted inputs x2 into the clean x at the role's positions. x, x2: (E, S, T, d);
    y, y2: (E, S); masks: role -> (E, S, T) bool. Sequences whose answer did not move are left out."""
    moved = y != y2

    def ld(logits):
        return (logits.gather(-1, y[..., None]) - logits.gather(-1, y2[..., None]))[..., 0]

    corrupted = Hooks(cache=points)
    ld_corrupt = ld(model(x2, hooks=corrupted))
    ld_clean = ld(model(x))
    den = ((ld_corrupt - ld_clean) * moved).sum(1)  # the whole move, corrupted against clean
    out = {}
    for point in points:
        for role, mask in masks.items():
            m = torch.from_numpy(mask).to(x.device)[..., None]
            fn = {point: lambda t, m=m, c=corrupted.cache[point]: torch.where(m, c, t)}
            ld_patch = ld(model(x, hooks=Hooks(fn)))
            num = ((ld_patch - ld_clean) * moved).sum(1)
            out[(point, role)] = (num / den).cpu().numpy().astype(np.float64)
    return out

"""Which attention heads carry IOI in a trained language model: per-head mean ablation (Wang et al. 2022).

Each head's output (``blocks.{l}.attn.hook_z``, before the output projection) is replaced, at every
position of every prompt, by its mean over every token of the ABC control prompts (the same sentences
with three distinct names, where no answer is right), and the IOI prompts are scored again. The effect
of a head is the change in the logit difference logit(IO) - logit(S) at the last position (negative:
the head helped), with its bootstrap interval over prompts. For a run with a values stream, each
stream term (``blocks.{l}.attn.hook_stream_v``, the earlier layer's value that block l mixes in) is
ablated the same way: does the model route IOI through a value that a later layer reads?
"""

from __future__ import annotations

import numpy as np
import torch

from amicl.common.stats import mean_ci
from transformers_mini.core.config import STREAMS
from transformers_mini.core.hooks import Hooks
from transformers_mini.lm.ioi import score_prompts


@torch.no_grad()
def abc_means(model, tok, prompts, points: list[str]) -> dict[str, torch.Tensor]:
    """Each hook point's activation averaged over every token of the ABC prompts: for z (B, T, H, dh) a
    (H, dh) mean per head; for a stream term (B, H, T, dh) an (H, dh) mean."""
    device = next(model.parameters()).device
    sums, count = {}, 0
    for p in prompts:
        if p.order != "ABC":
            continue
        ids = tok.encode(p.text).ids
        hooks = Hooks(cache=points)
        model(torch.tensor([ids], device=device), hooks=hooks)
        for name in points:
            t = hooks.cache[name]
            t = t.flatten(0, 1) if name.endswith("hook_z") else t.transpose(1, 2).flatten(0, 1)  # (tokens, H, dh)
            sums[name] = sums.get(name, 0) + t.sum(0)
        count += len(ids)
    if not count:
        raise ValueError("mean ablation needs ABC control prompts; none were given")
    return {name: s / count for name, s in sums.items()}


def _replace_head(mean: torch.Tensor, head: int, axis: int):
    """Hook function: head ``head`` (on ``axis``) replaced by its mean (dh,)."""

    def fn(t):
        t = t.clone()
        index = [slice(None)] * t.dim()
        index[axis] = head
        t[tuple(index)] = mean.to(t)
        return t

    return fn


def head_effects(model, tok, prompts) -> list[dict]:
    """Per head (and per stream term where the model has one) the change in the IOI prompts' mean logit
    difference and P(IO) under mean ablation, with bootstrap intervals over prompts."""
    c = model.config
    z_points = [f"blocks.{layer}.attn.hook_z" for layer in range(c.n_layer)]
    s_points = [f"blocks.{layer}.attn.hook_stream_{n}" for layer in range(1, c.n_layer) for n in STREAMS[c.stream.kind]]
    means = abc_means(model, tok, prompts, z_points + s_points)
    ioi = [p for p in prompts if p.order != "ABC"]
    clean = score_prompts(model, tok, ioi)
    base_ld = np.array([r["logit_diff"] for r in clean])
    base_p = np.array([r["p_io"] for r in clean])
    targets = [(f"L{layer}H{h}", z_points[layer], h, 2) for layer in range(c.n_layer) for h in range(c.n_head)]
    targets += [(f"stream L{p.split('.')[1]} kv{h}", p, h, 1) for p in s_points for h in range(c.kv_heads)]
    rows = []
    for label, point, head, axis in targets:
        ablated = score_prompts(model, tok, ioi, hooks={point: _replace_head(means[point][head], head, axis)})
        d_ld = np.array([r["logit_diff"] for r in ablated]) - base_ld
        d_p = np.array([r["p_io"] for r in ablated]) - base_p
        m, lo, hi = mean_ci(d_ld)
        mp, plo, phi = mean_ci(d_p)
        rows.append({"component": label, "clean_logit_diff": float(base_ld.mean()), "clean_p_io": float(base_p.mean()),
                     "d_logit_diff": m, "d_logit_diff_low": lo, "d_logit_diff_high": hi,
                     "d_p_io": mp, "d_p_io_low": plo, "d_p_io_high": phi})  # fmt: skip
    return rows


def markdown(rows: list[dict]) -> str:
    """One column per run: each component's change in the IOI logit difference under mean ablation
    [95% interval over prompts]; the runs' clean logit differences in the header."""
    runs = list(dict.fromkeys(r["run"] for r in rows))
    clean = {r["run"]: r["clean_logit_diff"] for r in rows}
    head = " | ".join(f"{run} (clean {clean[run]:.2f})" for run in runs)
    lines = ["Change in the IOI logit difference logit(IO) - logit(S) when a component is mean-ablated "
             "(negative: it carried IOI), mean [95% interval] over the IOI prompts:", "",
             f"| component | {head} |", "|---|" + "---|" * len(runs)]  # fmt: skip
    cell = {(r["run"], r["component"]): r for r in rows}
    for comp in dict.fromkeys(r["component"] for r in rows):
        cells = []
        for run in runs:
            r = cell.get((run, comp))
            cells.append(f"{r['d_logit_diff']:+.2f} [{r['d_logit_diff_low']:+.2f}, {r['d_logit_diff_high']:+.2f}]"
                         if r else "-")  # fmt: skip
        lines.append(f"| {comp} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

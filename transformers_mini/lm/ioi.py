"""Indirect-object identification (IOI) of trained language models, per prompt and summarised.

At the prompt's last position, each name is scored by the first token of " Name" (as the AMICL paper's
script does): P(IO) under the full softmax (the paper's metric), P(S), the logit difference
logit(IO) - logit(S), accuracy (IO above S) and P(IO) + P(S) (does the model predict a name at all?).
ABC controls report the same quantities for two names neither of which is right.
"""

from __future__ import annotations

import numpy as np
import torch

from amicl.common.stats import mean_ci
from transformers_mini.lm.stories import IOIPrompt

METRICS = ("p_io", "p_s", "logit_diff", "correct", "p_names")


@torch.no_grad()
def score_prompts(model, tok, prompts: list[IOIPrompt], batch: int = 64, hooks: dict | None = None) -> list[dict]:
    """One row per prompt: its order, template, pair and the metrics of ``METRICS``. Prompts of equal
    token length run together (no padding, so learned positions are exact). ``hooks``: hook functions
    (``core.hooks``) applied to every forward pass, e.g. an ablation."""
    from transformers_mini.core.hooks import Hooks

    model.eval()
    device = next(model.parameters()).device
    ids = [e.ids for e in tok.encode_batch([p.text for p in prompts])]
    first = {n: tok.encode(" " + n).ids[0] for p in prompts for n in (p.io, p.s)}
    rows: list[dict | None] = [None] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, x in enumerate(ids):
        by_len.setdefault(len(x), []).append(i)
    for idx in by_len.values():
        for lo in range(0, len(idx), batch):
            part = idx[lo : lo + batch]
            idx_t = torch.tensor([ids[i] for i in part], device=device)
            logits = (model(idx_t, hooks=Hooks(hooks)) if hooks else model(idx_t))[:, -1].float()
            logp = torch.log_softmax(logits, -1).cpu()
            logits = logits.cpu()
            for j, i in enumerate(part):
                p = prompts[i]
                a, b = first[p.io], first[p.s]
                rows[i] = {
                    "order": p.order,
                    "template": p.template,
                    "pair": p.pair,
                    "io": p.io,
                    "s": p.s,
                    "p_io": float(logp[j, a].exp()),
                    "p_s": float(logp[j, b].exp()),
                    "logit_diff": float(logits[j, a] - logits[j, b]),
                    "correct": float(logits[j, a] > logits[j, b]),
                    "p_names": float(logp[j, a].exp() + logp[j, b].exp()),
                }
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per (run, arm, seed, prompt kind): every metric's mean with its interval over prompts."""
    out = []
    keys = dict.fromkeys((r["run"], r["arm"], r["seed"], "ABC" if r["order"] == "ABC" else "IOI") for r in rows)
    for run, arm, seed, kind in keys:
        mine = [r for r in rows if r["run"] == run and ("ABC" if r["order"] == "ABC" else "IOI") == kind]
        row = {"run": run, "arm": arm, "seed": seed, "prompts": kind, "n": len(mine)}
        for m in METRICS:
            row[m], row[f"{m}_low"], row[f"{m}_high"] = mean_ci([float(r[m]) for r in mine])
        out.append(row)
    return out


def compare_arms(summary: list[dict], base: str = "none") -> list[dict]:
    """Per arm (IOI prompts): mean P(IO) over seeds with its spread, and against ``base`` the paired
    difference over seeds present in both (t-test) and how many seeds it is higher on."""
    from scipy.stats import ttest_rel

    ioi = [r for r in summary if r["prompts"] == "IOI"]
    by_arm: dict[str, dict] = {}
    for r in ioi:
        by_arm.setdefault(r["arm"], {})[r["seed"]] = r
    out = []
    for arm, seeds in by_arm.items():
        v = np.array([seeds[s]["p_io"] for s in sorted(seeds)])
        row = {
            "arm": arm,
            "seeds": len(v),
            "p_io_mean": float(v.mean()),
            "p_io_sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        }
        row["logit_diff_mean"] = float(np.mean([seeds[s]["logit_diff"] for s in seeds]))
        row["correct_mean"] = float(np.mean([seeds[s]["correct"] for s in seeds]))
        if arm != base and base in by_arm:
            common = sorted(set(seeds) & set(by_arm[base]))
            a = np.array([seeds[s]["p_io"] for s in common])
            b = np.array([by_arm[base][s]["p_io"] for s in common])
            row["paired_seeds"] = len(common)
            row["higher_than_base"] = int((a > b).sum())
            row["diff_vs_base"] = float((a - b).mean()) if len(common) else float("nan")
            row["ttest_p"] = float(ttest_rel(a, b).pvalue) if len(common) > 1 else float("nan")
        out.append(row)
    return out


def _versus(arm: dict) -> str:
    """An arm's paired comparison with the baseline, as a table cell."""
    if "diff_vs_base" not in arm:
        return "-"
    return f"{arm['diff_vs_base']:+.3f}, {arm['higher_than_base']}/{arm['paired_seeds']}, {arm['ttest_p']:.3g}"


def markdown(summary: list[dict], arms: list[dict], per_template: list[dict]) -> str:
    lines = [
        "IOI on the package's frames (never in the training stories; their words, names, places and objects are);",
        "P(IO): probability of the right name at the next token (the AMICL paper's metric; it reports ~7% -> ~41%",
        "for its 8M models on TinyStories, baseline -> V-pass); mean [95% bootstrap interval over prompts].",
        "",
        "| run | arm | seed | prompts | n | P(IO) | P(S) | logit diff | IO > S | P(IO)+P(S) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        cells = [
            f"{r[m]:.3f} [{r[m + '_low']:.3f}, {r[m + '_high']:.3f}]"
            for m in ("p_io", "p_s", "logit_diff", "correct", "p_names")
        ]
        lines.append(
            f"| {r['run']} | {r['arm']} | {r['seed']} | {r['prompts']} | {r['n']} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "Per arm over seeds (IOI prompts):",
        "",
        "| arm | seeds | P(IO) mean (sd) | logit diff | IO > S | vs none: diff, higher on, paired t p |",
        "|---|---|---|---|---|---|",
    ]
    for a in arms:
        vs = _versus(a)
        p_io = f"{a['p_io_mean']:.3f} ({a['p_io_sd']:.3f})"
        lines.append(
            f"| {a['arm']} | {a['seeds']} | {p_io} | {a['logit_diff_mean']:.2f} | {a['correct_mean']:.3f} | {vs} |"
        )
    lines += [
        "",
        "Per template and order (mean P(IO) over runs of each arm):",
        "",
        "| arm | template | order | P(IO) | n |",
        "|---|---|---|---|---|",
    ]
    for r in per_template:
        lines.append(f"| {r['arm']} | {r['template']} | {r['order']} | {r['p_io']:.3f} | {r['n']} |")
    return "\n".join(lines) + "\n"


def per_template(rows: list[dict]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["arm"], r["template"], r["order"]) for r in rows):
        mine = [float(r["p_io"]) for r in rows if (r["arm"], r["template"], r["order"]) == key]
        out.append({"arm": key[0], "template": key[1], "order": key[2], "p_io": float(np.mean(mine)), "n": len(mine)})
    return out


def late_training(runs: list[dict], last: int = 5) -> tuple[list[dict], str]:
    """IOI of the set each run monitored during training (``lm train --ioi-prompts``), averaged over its
    last ``last`` evaluations: one checkpoint's P(IO) swings between evaluations at a constant learning
    rate, so the end of the curve says more than its last point. ``runs``: dicts with run, arm, seed and
    history (rows of history.csv). Returns per-run rows and a markdown section ('' when no run has them)."""
    rows = []
    for r in runs:
        hist = [h for h in r["history"] if h.get("ioi_p_io") not in ("", None)]
        if len(hist) < last:
            continue
        tail = hist[-last:]
        p, abc = [float(h["ioi_p_io"]) for h in tail], [float(h["abc_p_io"]) for h in tail]
        rows.append({"run": r["run"], "arm": r["arm"], "seed": r["seed"], "from_step": int(tail[0]["step"]),
                     "to_step": int(tail[-1]["step"]), "p_io_mean": float(np.mean(p)), "p_io_min": min(p),
                     "p_io_max": max(p), "abc_p_io_mean": float(np.mean(abc))})  # fmt: skip
    if not rows:
        return rows, ""
    lines = [
        f"IOI of the set monitored during training (its own prompts), mean over the last {last} evaluations",
        "[min, max]; one checkpoint's P(IO) swings between evaluations:",
        "",
        "| run | arm | seed | steps | P(IO) | ABC P(IO) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['arm']} | {r['seed']} | {r['from_step']}-{r['to_step']} | "
            f"{r['p_io_mean']:.3f} [{r['p_io_min']:.3f}, {r['p_io_max']:.3f}] | {r['abc_p_io_mean']:.3f} |"
        )
    arms = compare_arms([{"prompts": "IOI", "arm": r["arm"], "seed": r["seed"], "p_io": r["p_io_mean"],
                          "logit_diff": np.nan, "correct": np.nan} for r in rows])  # fmt: skip
    lines += ["", "| arm | seeds | P(IO) mean (sd) | vs none: diff, higher on, paired t p |", "|---|---|---|---|"]
    for a in arms:
        vs = _versus(a)
        lines.append(f"| {a['arm']} | {a['seeds']} | {a['p_io_mean']:.3f} ({a['p_io_sd']:.3f}) | {vs} |")
    return rows, "\n".join(lines) + "\n"

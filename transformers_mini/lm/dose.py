"""IOI as a dose-response of the evidence: the IOI of language models against the share of training
stories that hold the IOI structure (``--ioi-rate``), per arm, paired over seeds (both arms of a seed
train on the same stories), and the evidence each arm needs to reach a given P(IO).

Each run is summarised by the IOI set it monitored during training (``lm train --ioi-prompts``),
averaged over its last ``last`` evaluations: one checkpoint's P(IO) swings between evaluations at a
constant learning rate. Everything here reads history.csv files, so it is recomputed from committed files.
"""

from __future__ import annotations

import numpy as np

from amicl.common.stats import mean_ci, percentile_interval, resample_indices

METRICS = ("p_io", "logit_diff", "correct")


def run_rows(runs: list[dict], last: int = 5) -> list[dict]:
    """One row per run: ``runs`` are dicts with run, arm, seed, rate and history (rows of history.csv);
    each metric is the mean of the monitored IOI set over the last ``last`` evaluations."""
    out = []
    for r in runs:
        hist = [h for h in r["history"] if h.get("ioi_p_io") not in ("", None)]
        if len(hist) < last:
            raise ValueError(f"{r['run']}: {len(hist)} monitored IOI evaluations, fewer than --last {last}")
        tail = hist[-last:]
        row = {"run": r["run"], "arm": r["arm"], "seed": r["seed"], "rate": r["rate"], "step": int(tail[-1]["step"])}
        for m in METRICS:
            row[m] = float(np.mean([float(h[f"ioi_{m}"]) for h in tail]))
        row["abc_p_io"] = float(np.mean([float(h["abc_p_io"]) for h in tail]))
        row["val_loss"] = float(tail[-1]["val_loss"])
        out.append(row)
    return out


def _cells(rows: list[dict]) -> dict:
    cells: dict = {}
    for r in rows:
        cell = cells.setdefault((r["rate"], r["arm"]), {})
        if r["seed"] in cell:
            raise ValueError(f"two runs of arm {r['arm']}, rate {r['rate']}, seed {r['seed']}")
        cell[r["seed"]] = r
    return cells


def arm_rate_table(rows: list[dict], base: str = "none") -> list[dict]:
    """Per rate and arm: each metric's mean over seeds with its 95% bootstrap interval; against ``base``
    at the same rate, the paired difference of P(IO) over the seeds both have (mean, interval, on how
    many seeds higher, paired t-test p)."""
    from scipy.stats import ttest_rel

    cells = _cells(rows)
    out = []
    for (rate, arm), seeds in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1] != base, kv[0][1])):
        row = {"rate": rate, "arm": arm, "seeds": len(seeds)}
        for m in (*METRICS, "abc_p_io", "val_loss"):
            row[m], row[f"{m}_low"], row[f"{m}_high"] = mean_ci([seeds[s][m] for s in sorted(seeds)])
        other = cells.get((rate, base))
        if arm != base and other:
            common = sorted(set(seeds) & set(other))
            d = np.array([seeds[s]["p_io"] - other[s]["p_io"] for s in common])
            row["paired"] = len(common)
            row["higher"] = int((d > 0).sum())
            row["diff"], row["diff_low"], row["diff_high"] = mean_ci(d) if len(d) else (np.nan,) * 3
            a, b = [seeds[s]["p_io"] for s in common], [other[s]["p_io"] for s in common]
            row["ttest_p"] = float(ttest_rel(a, b).pvalue) if len(common) > 1 and np.any(d != d[0]) else np.nan
        out.append(row)
    return out


def crossing(rates, values, target: float) -> float:
    """The smallest rate at which the curve (linear between the grid's rates) reaches ``target``; inf if
    it never does, 0 if it starts there."""
    rates, values = np.asarray(rates, float), np.asarray(values, float)
    if values[0] >= target:
        return float(rates[0])
    for i in range(1, len(rates)):
        if values[i] >= target:
            f = (target - values[i - 1]) / (values[i] - values[i - 1])
            return float(rates[i - 1] + f * (rates[i] - rates[i - 1]))
    return float("inf")


def evidence_needed(rows: list[dict], target: float, base: str = "none", n_boot: int = 2000,
                    seed: int = 0) -> list[dict]:  # fmt: skip
    """Per arm: the IOI rate at which its mean P(IO) curve reaches ``target``, and (other arms) how many
    times less evidence than ``base`` it needs (base's rate / its rate), with a 95% percentile interval
    from resampling the seeds every cell shares (paired: a resampled seed brings both arms' runs). A
    curve that never reaches the target within the grid is censored at the top rate (inf)."""
    cells = _cells(rows)
    rates = sorted({r for r, _ in cells})
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    seeds = sorted(set.intersection(*(set(c) for c in cells.values())))
    if not seeds or any((r, a) not in cells for r in rates for a in arms):
        raise ValueError("evidence_needed needs every arm at every rate with seeds in common")
    p = {a: np.array([[cells[(r, a)][s]["p_io"] for s in seeds] for r in rates]) for a in arms}  # (rates, seeds)
    rng = np.random.default_rng(seed)
    draws = resample_indices(len(seeds), n_boot, rng)
    boot = {a: np.array([crossing(rates, p[a][:, d].mean(1), target) for d in draws]) for a in arms}
    out = []
    for a in arms:
        row = {"arm": a, "target": target, "seeds": len(seeds), "rate_needed": crossing(rates, p[a].mean(1), target),
               "never_share": float(np.isinf(boot[a]).mean())}  # fmt: skip
        if a != base and base in p:
            point = row["rate_needed"]
            row["times_less"] = evidence_ratio(crossing(rates, p[base].mean(1), target), point)
            ratios = np.array([evidence_ratio(x, y) for x, y in zip(boot[base], boot[a])])
            ratios = ratios[~np.isnan(ratios)]  # resamples where neither arm reaches the target say nothing
            row["times_less_low"], row["times_less_high"] = (
                (percentile_interval(ratios, method="lower")[0], percentile_interval(ratios, method="higher")[1])
                if len(ratios)
                else (np.nan, np.nan)
            )
        out.append(row)
    return out


def evidence_ratio(base_rate: float, arm_rate: float) -> float:
    """base_rate / arm_rate: inf when only the base never reaches it, nan when neither does."""
    if np.isinf(base_rate) and np.isinf(arm_rate):
        return float("nan")
    if arm_rate == 0:
        return float("inf") if base_rate > 0 else 1.0
    return float(base_rate / arm_rate)


def _ci(r: dict, m: str, fmt: str = ".3f", n: int = 2) -> str:
    """The value with its interval; the value alone from fewer than two seeds (no interval to give)."""
    if n < 2:
        return f"{r[m]:{fmt}}"
    return f"{r[m]:{fmt}} [{r[m + '_low']:{fmt}}, {r[m + '_high']:{fmt}}]"


def markdown(table: list[dict], evidence: list[dict], last: int) -> str:
    lines = [
        f"IOI of the monitored set (200 prompts + 100 ABC), mean of the last {last} evaluations per run; per",
        "rate and arm the mean over seeds [95% bootstrap interval over seeds]; V - none paired over seeds.",
        "",
        "| IOI rate | arm | seeds | P(IO) | logit diff | IO > S | ABC P(IO) | val loss | V - none P(IO) | higher "
        "| paired t p |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        vs = ["-"] * 3
        if "diff" in r:
            p = f"{r['ttest_p']:.3g}" if r["paired"] > 1 else "-"
            vs = [_ci(r, "diff", "+.3f", r["paired"]), f"{r['higher']}/{r['paired']}", p]
        n = r["seeds"]
        cells = [_ci(r, "p_io", n=n), _ci(r, "logit_diff", ".2f", n), _ci(r, "correct", n=n),
                 _ci(r, "abc_p_io", n=n), f"{r['val_loss']:.4f}", *vs]  # fmt: skip
        lines.append(f"| {r['rate']:g} | {r['arm']} | {r['seeds']} | " + " | ".join(cells) + " |")
    if evidence:
        t = evidence[0]["target"]
        lines += [
            "",
            f"Evidence needed to reach P(IO) = {t:g} (the IOI rate where the arm's mean curve crosses it, linear",
            "between grid rates; inf: not within the grid), and how many times less than none:",
            "",
            "| arm | seeds | IOI rate needed | bootstrap share never | times less evidence than none [95%] |",
            "|---|---|---|---|---|",
        ]
        for e in evidence:
            less = "-"
            if "times_less" in e:
                less = _ci(e, "times_less", ".2f", e["seeds"])
            lines.append(f"| {e['arm']} | {e['seeds']} | {e['rate_needed']:.3g} | {e['never_share']:.2f} | {less} |")
    return "\n".join(lines) + "\n"


def tokens_to_reach(history: list[dict], target: float) -> float:
    """Training tokens at which validation loss first reaches ``target`` (log-linear between evaluations);
    inf if it never does."""
    pts = [(int(h["tokens"]), float(h["val_loss"])) for h in history if h.get("tokens") not in ("", None)]
    for (t0, l0), (t1, l1) in zip(pts, pts[1:]):
        if l1 <= target:
            if l0 <= target or t0 == 0 or l1 == target:
                return float(t1 if l0 > target else t0)
            f = (l0 - target) / (l0 - l1)
            return float(np.exp(np.log(t0) + f * (np.log(t1) - np.log(t0))))
    return float("inf")


def iso_loss(runs: list[dict], base: str = "none") -> list[dict]:
    """ResFormer's data-efficiency form: per model shape and seed, the tokens ``base`` needed to reach its
    own final validation loss against the tokens each other arm needed for the same loss; per shape and
    arm the per-seed saving 1 - arm/base (median with its 95% bootstrap interval; an arm that never
    reaches the loss saves nothing: 0, counted in ``never``). ``runs``: dicts with model, arm, seed, history."""
    from amicl.common.stats import bootstrap_ci

    by = {(r["model"], r["arm"], r["seed"]): r["history"] for r in runs}
    out = []
    for model in dict.fromkeys(r["model"] for r in runs):
        for arm in dict.fromkeys(r["arm"] for r in runs if r["model"] == model and r["arm"] != base):
            savings, never = [], 0
            for seed in sorted({s for m, a, s in by if m == model and a == arm and (m, base, s) in by}):
                ref = by[(model, base, seed)]
                target = float(ref[-1]["val_loss"])
                t_base, t_arm = tokens_to_reach(ref, target), tokens_to_reach(by[(model, arm, seed)], target)
                never += int(np.isinf(t_arm))
                savings.append(0.0 if np.isinf(t_arm) else 1 - t_arm / t_base)
            if not savings:
                continue
            s = np.array(savings)
            lo, hi = bootstrap_ci((s,), lambda v, axis=-1: np.median(v, axis=axis))[:2] if len(s) > 1 else (s[0], s[0])
            out.append({"model": model, "arm": arm, "seeds": len(s), "saving_median": float(np.median(s)),
                        "saving_low": lo, "saving_high": hi, "never": never,
                        "savings": " ".join(f"{x:.3f}" for x in s)})  # fmt: skip
    return out

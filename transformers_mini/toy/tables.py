"""Tables of the toy room generated from committed result files (``amicl tables``). Torch-free."""

from __future__ import annotations

from pathlib import Path

from amicl.common.io import read_csv

ESTIMATORS = ("median_saving", "ratio_of_medians", "ratio_of_means")


def _pct(r: dict, name: str) -> str:
    if r.get(f"{name}_vs_none") in ("", None):
        return "-"
    point, lo, hi = (float(r[k]) for k in (f"{name}_vs_none", f"{name}_low", f"{name}_high"))
    return f"{point:.1%} [{lo:.1%}, {hi:.1%}]"


def savings(root: Path, run: str, test_set: str = "ic") -> list[str]:
    """Per arm of a streams run (its compare.csv): runs that reached the threshold, the never-learns rate,
    median steps, and the paired savings over none by the package's three estimators (primary first)."""
    lines = [
        f"| arm ({test_set}) | reached | never learns [95% CI] | median steps [95% CI] | median per-seed saving "
        "| ratio of medians | ratio of means |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [r for r in read_csv(Path(root) / run / "compare.csv") if r["test_set"] == test_set]
    if not rows:
        raise KeyError(f"{run}/compare.csv has no rows for test set {test_set}")
    for r in sorted(rows, key=lambda r: (r["arm"] != "none", r["arm"])):
        never = f"{float(r['never_rate']):.0%} [{float(r['never_low']):.0%}, {float(r['never_high']):.0%}]"
        median = (
            f"{float(r['median_steps']):,.0f} [{float(r['median_ci_low']):,.0f}, {float(r['median_ci_high']):,.0f}]"
        )
        cells = " | ".join(_pct(r, name) for name in ESTIMATORS)
        lines.append(f"| {r['arm']} | {r['n_reached']}/{r['n_seeds']} | {never} | {median} | {cells} |")
    return lines


def groups(root: Path, run: str, size: str = "8", test_set: str = "ic") -> list[str]:
    """Seed groups of a streams run (consecutive blocks of ``size`` seeds, e.g. the groups trained on
    different machines): the baseline's median steps and V's median per-seed saving per group, and
    Kruskal-Wallis tests of whether either differs between the groups."""
    import numpy as np
    from scipy.stats import kruskal

    from amicl.common.io import read_json
    from amicl.common.stats import paired_savings

    members = read_csv(Path(root) / run / "members.csv")
    cap = float(read_json(Path(root) / run / "config.json")["run"]["train"]["steps"])

    def steps(arm: str) -> dict[int, float]:
        col = f"steps_{test_set}"
        return {int(r["seed"]): float(r[col]) if r[col] not in ("", "None") else np.inf for r in members
                if r["arm"] == arm}  # fmt: skip

    none, v = steps("none"), steps("V")
    seeds = sorted(none)
    blocks = [seeds[i : i + int(size)] for i in range(0, len(seeds), int(size))]
    lines = [f"| seeds | none: median steps ({test_set}) | V: median steps | V's median per-seed saving [95% CI] |",
             "|---|---|---|---|"]  # fmt: skip
    base_groups, saving_groups = [], []
    for block in blocks:
        b, a = np.array([none[s] for s in block]), np.array([v[s] for s in block])
        sv = paired_savings(b, a, cap=cap)
        saving = f"{sv['median_saving']:.1%} [{sv['median_saving_low']:.1%}, {sv['median_saving_high']:.1%}]"
        lines.append(f"| {block[0]}-{block[-1]} | {np.median(b):,.0f} | {np.median(a):,.0f} | {saving} |")
        base_groups.append(np.minimum(b, cap))
        saving_groups.append(1 - np.minimum(a, cap) / np.minimum(b, cap))
    p_base, p_saving = kruskal(*base_groups).pvalue, kruskal(*saving_groups).pvalue
    lines += ["", f"Kruskal-Wallis across the groups: none's steps p = {p_base:.3f}; V's per-seed saving "
              f"p = {p_saving:.3f}."]  # fmt: skip
    return lines

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

"""Tables of the Hopfield room generated from committed result files (``amicl tables``)."""

from __future__ import annotations

from pathlib import Path

from amicl.common.io import read_csv


def comparison(root: Path, path: str = "results/amicl/comparison.csv") -> list[str]:
    """The notebook's published values beside ours: measured accuracy, its 95% Clopper-Pearson interval,
    whether the published value lies inside it, and Fisher's two-sample p where the count is known."""
    lines = [
        "| setting (D=100, T=20, dot, argmax unless stated) | published | measured | 95% CI | in CI | two-sample p |",
        "|---|---|---|---|---|---|",
    ]
    for r in read_csv(Path(root) / path):
        p = f"{float(r['p_two_sample']):.2f}" if r["p_two_sample"] not in ("", None) else "–"
        inside = "yes" if r["published_in_ci"] == "True" else "no"
        lines.append(
            f"| {r['setting']} | {float(r['published']):.3f} | {float(r['measured']):.3f} | "
            f"[{float(r['ci_low']):.3f}, {float(r['ci_high']):.3f}] | {inside} | {p} |"
        )
    return lines

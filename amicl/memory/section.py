"""The memory room's section of ``amicl reproduce all``: the AMICL notebook's accuracies beside ours."""

from __future__ import annotations

from pathlib import Path

from amicl.common.sections import Committed, Section, Step, md_file


def _steps(size: dict) -> list[Step]:
    return [Step("amicl", ("reproduce", "amicl", "--out", "{root}", *size["trials"]))]


def _body(root: Path) -> list[str]:
    return ["Each published accuracy beside the measured one (95% binomial interval):",
            md_file(root / "amicl" / "comparison.md")]  # fmt: skip


SECTION = Section(
    title="Associative memory for in-context learning (AMICL notebook)",
    sizes={"quick": {"trials": ("--trials", "1000")}, "paper": {"trials": ("--trials", "1000")}},
    steps=_steps,
    body=_body,
    committed=(
        Committed(
            "AMICL notebook",
            "Each published accuracy beside ours (1000 trials, 95% Clopper-Pearson interval).",
            "amicl-comparison",
            ("results/amicl/comparison.csv",),
        ),
    ),  # fmt: skip
    figures=("amicl/figures",),
)

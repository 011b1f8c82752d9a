"""The NAMM room's section of ``amicl reproduce all``: a base model, an evolved NAMM, and every registered
training-free policy given NAMM's per-layer cache on the same prompts."""

from __future__ import annotations

from pathlib import Path

from amicl.common.sections import Committed, Section, Step, md_file
from evolution.config import POLICIES

REFERENCES = ("full", "namm")  # the policies every other one is compared with, not baselines themselves


def baselines() -> list[str]:
    """The registered policies the section compares NAMM with, read when the plan is built."""
    return [p for p in POLICIES.names if p not in REFERENCES]


def _steps(size: dict) -> list[Step]:
    eval_args = size["eval"]
    steps = [
        Step("namm/base", ("namm", "train-base", *size["base"], "--out", "{dir}"), "base.pt"),
        Step("namm/evolve", ("namm", "evolve", "--base", "{root}/namm/base", *size["evolve"], "--out", "{dir}"),
             "evolution.pkl"),
        Step("namm/eval/namm", ("namm", "eval", "--base", "{root}/namm/base", "--policy", "namm", "--namm",
                                "{root}/namm/evolve", *eval_args, "--out", "{dir}")),
    ]  # fmt: skip
    for p in baselines():
        args = ("--base", "{root}/namm/base", "--policy", p, "--match", "{root}/namm/eval/namm", *eval_args)
        steps.append(Step(f"namm/eval/match_{p}", ("namm", "eval", *args, "--out", "{dir}")))
    evals = ["{root}/namm/eval/namm", *(f"{{root}}/namm/eval/match_{p}" for p in baselines())]
    steps.append(Step("namm/table", ("namm", "table", *evals, "--out", "{dir}")))
    steps.append(
        Step("namm/figures", ("figures", "namm", "{root}/namm/evolve", *evals, "--out", "{dir}", "--format", "png"))
    )
    return steps


def _body(root: Path) -> list[str]:
    return [
        "Published (NAMM paper): NAMM above the full cache on LongBench with about 25% of it, ahead of H2O and L2. "
        "Here: scores normalised by the full cache on the same prompts, every baseline given NAMM's per-layer cache; "
        "bootstrap 95% intervals:",
        md_file(root / "namm" / "table" / "table.md"),
    ]


SECTION = Section(
    title="NAMM: evolved KV-cache memory against the training-free policies",
    sizes={
        "quick": {
            "base": (
                "--layers",
                "2",
                "--d-model",
                "64",
                "--steps",
                "400",
                "--batch",
                "8",
                "--min-context",
                "128",
                "--max-context",
                "256",
                "--curriculum",
                "200",
                "--eval-every",
                "200",
                "--tasks",
                "kv_retrieval,needle",
            ),
            "evolve": (
                "--stages",
                "kv_retrieval;kv_retrieval,needle",
                "--generations",
                "2,2",
                "--popsize",
                "8",
                "--prompts",
                "4",
                "--dev-prompts",
                "16",
                "--dev-every",
                "2",
                "--context",
                "256",
            ),
            "eval": ("--tasks", "kv_retrieval,needle", "--prompts", "32", "--context", "256", "--metric", "prob"),
        },
        "paper": {
            "base": ("--steps", "6250"),
            "evolve": (),
            "eval": ("--tasks", "kv_retrieval,variable_tracking,icl_classification,needle", "--prompts", "128"),
        },
    },  # fmt: skip
    steps=_steps,
    body=_body,
    committed=(
        Committed(
            "NAMM: every training-free policy at 10/25/50% of the cache (frozen base, 128 prompts per task)",
            "Normalised score with bootstrap intervals. No NAMM is ahead of KeyDiff; the NAMM that meets the "
            "trained-task target is the best of four evolutions (docs/namm.md).",
            "include",
            ("results/namm/sweeps/table_frozen/table.md",),
        ),
    ),  # fmt: skip
    figures=("namm/figures",),
)

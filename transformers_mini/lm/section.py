"""The language-model room's section of ``amicl reproduce all``: both arms trained on the story world, then
scored on the IOI prompts."""

from __future__ import annotations

from pathlib import Path

from amicl.common.sections import Committed, Section, Step, md_file

ARMS = ("none", "V")


def _steps(size: dict) -> list[Step]:
    runs = [(arm, s, f"lm/{arm}_seed{s}") for s in range(size["seeds"]) for arm in ARMS]
    steps = [
        Step(name, ("lm", "train", "--stream", arm, "--seed", str(s), *size["train"], "--out", "{dir}"), "lm.pt")
        for arm, s, name in runs
    ]
    folders = [f"{{root}}/{name}" for _, _, name in runs]
    steps.append(Step("lm/ioi", ("lm", "ioi", *folders, *size["ioi"], "--out", "{dir}")))
    figures = ("figures", "lm", *folders, "--ioi", "{root}/lm/ioi", "--out", "{dir}", "--format", "png")
    steps.append(Step("lm/figures", figures))
    return steps


def _body(root: Path) -> list[str]:
    return [
        "Published (AMICL paper, 8M GPT on TinyStories, 3 models per arm): P(IO) about 7% (baseline) and 41% "
        "(V-pass). Here, on the package's story world and its IOI frames:",
        md_file(root / "lm" / "ioi" / "ioi.md"),
    ]


SECTION = Section(
    title="Language model and IOI",
    sizes={
        "quick": {
            "train": ("--stories", "5000", "--steps", "300", "--batch", "16", "--eval-every", "100"),
            "seeds": 1,
            "ioi": ("--prompts", "400"),
        },
        "paper": {
            "train": ("--model", "paper-8m", "--tokenizer", "gpt2", "--batch", "64", "--steps", "99400"),
            "seeds": 3,
            "ioi": ("--prompts", "1000"),
        },
    },  # fmt: skip
    steps=_steps,
    body=_body,
    committed=(
        Committed(
            "Language model and IOI, story world 1 (3 seeds per arm; superseded)",
            "This regime cannot test "
            "the paper's claim: world 1 teaches the IOI structure itself and most prompt tokens are untrained "
            "(docs/lm.md).",
            "include",
            ("results/lm/world1/ioi/ioi.md",),
        ),
    ),  # fmt: skip
    figures=("lm/figures",),
)

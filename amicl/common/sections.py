"""The sections of ``amicl reproduce all``'s report, each owned by its room and registered here by path.

A section states its steps (ordinary ``amicl`` commands, sized per scale), the part of the report its
re-run fills (Part C), the committed headlines it contributes to Part A, and the folders whose figures the
page embeds. The report (amicl/report.py) only composes them in registration order, so a new section is one
``SECTIONS.register`` call. Torch-free: a section's functions import what they need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amicl.common.io import read_csv
from amicl.common.registry import Registry


@dataclass(frozen=True)
class Step:
    """One command of a scale: ``argv`` with {root} (OUT) and {dir} (this step's folder) filled in;
    ``resume``: the file whose presence means an interrupted run to continue with --resume."""

    name: str
    argv: tuple[str, ...]
    resume: str | None = None

    def args(self, root: Path) -> list[str]:
        return [a.format(root=root, dir=root / self.name) for a in self.argv]


@dataclass(frozen=True)
class Committed:
    """A Part A headline: a generator of ``amicl.tables.TABLES`` with its arguments (paths relative to the
    repository root; the first is named as the source)."""

    heading: str
    text: str
    generator: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Section:
    """``steps(size)``: the steps at one size (``sizes[scale]``, a dict the section alone reads);
    ``body(root)``: Part C's markdown after the re-run (the report adds the commands);
    ``figures``: folders under the results root whose PNGs the page embeds."""

    title: str
    sizes: dict
    steps: Callable[[dict], list[Step]]
    body: Callable[[Path], list[str]]
    committed: tuple[Committed, ...] = ()
    figures: tuple[str, ...] = ()


SECTIONS = Registry(
    "report section",
    {
        "amicl": "amicl.memory.section:SECTION",
        "streams": "transformers_mini.toy.section:STREAMS",
        "theory": "transformers_mini.toy.section:THEORY",
        "namm": "evolution.section:SECTION",
        "lm": "transformers_mini.lm.section:SECTION",
    },
)


def md_file(path: Path) -> str:
    """A generated markdown file of a run, or a note that it is missing."""
    return path.read_text().strip() if path.exists() else f"(missing: {path.name})"


def pct(v) -> str:
    v = float(v)
    return "undefined" if v != v or abs(v) == float("inf") else f"{v:+.1%}"


def rows_of(path: Path, **match) -> list[dict]:
    """The rows of a CSV whose columns equal ``match``; none when the file is missing."""
    rows = read_csv(path) if path.exists() else []
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]

"""Theory vs network over task parameters: the AMICL memory's in-context accuracy beside trained toys'.

For every cell of a grid of burstiness B and within-class noise epsilon, the paired stream arms (none
and V by default) train for a fixed budget on that cell's task, and the AMICL memory (a = 2, dot,
argmax, one step: it needs no training) answers the very same ic/ic2 test sequences of every seed. The
memory says what an ideal associative memory can do with the context; the network says what training
on that data distribution produces. Each cell is an ordinary ``streams`` run folder under ``cells/``
(checkpointed, resumable); the phase folder holds the grid and the summary.

    amicl transformer phase --grid-B 1,2,4 --grid-epsilon 0.1,0.5,1.0 --steps 20000 --out runs/phase
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from amicl.common.io import atomic_write_bytes, read_csv, read_json, write_csv, write_run_config
from transformers_mini.toy.run import Run, resumable_part, summarise_members

SETS = ("ic", "ic2", "iw")


def cell_name(B: int, epsilon: float) -> str:
    return f"B{B}_eps{epsilon:g}"


def cell_runs(base: Run, grid_B, grid_epsilon) -> dict[str, Run]:
    """One run per (B, epsilon), everything else as ``base``; ValueError for a cell the task cannot make."""
    if not grid_B or not grid_epsilon:
        raise ValueError("the grid needs at least one B and one epsilon")
    runs = {}
    for B in grid_B:
        for eps in grid_epsilon:
            if int(B) < 1:
                raise ValueError(f"grid B values must be >= 1 (the ic test needs bursty sequences), got {B}")
            task = replace(base.task, B=int(B), epsilon=float(eps))
            runs[cell_name(int(B), float(eps))] = Run(base.arms, base.seeds, task, base.train)
    return runs


def train_cells(out: Path, runs: dict[str, Run], device: str, executor=None, threads: int | None = None) -> None:
    """Train (or finish) every cell, each in ``out/cells/NAME``, as tasks of ``executor`` (default: in
    turn, in this process); cells are independent, so the numbers do not depend on what trains them."""
    from amicl.common.parallel import run_tasks
    from transformers_mini.toy.train import train_group

    tasks = [(run.to_dict(), str(out / "cells" / name), device, threads) for name, run in runs.items()]
    run_tasks(train_group, tasks, executor, desc="phase cells")


def budget_history(history: list[dict], steps: int, name: str = "cell") -> list[dict]:
    """The evaluations up to the budget. The optimiser has no schedule (plain SGD, fixed lr), so a
    longer run read at step ``steps`` is exactly a ``steps``-step run; every member must have been
    evaluated at that very step (ValueError otherwise)."""
    kept = [r for r in history if int(r["step"]) <= steps]
    members = {(r["arm"], r["seed"]) for r in history}
    at = {(r["arm"], r["seed"]) for r in kept if int(r["step"]) == steps}
    if not members or at != members:
        raise ValueError(f"{name}: not every member was evaluated at step {steps:,}")
    return kept


def summarise(out: Path, runs: dict[str, Run]) -> list[dict]:
    """phase.csv rows: per cell, arm and seed the final accuracies (and the memory's on the same sets)."""
    from transformers_mini.toy.compare import memory_on_test_sets

    rows = []
    for name, run in runs.items():
        history = budget_history(read_csv(out / "cells" / name / "history.csv"), run.train.steps, name)
        members = summarise_members(history, run.train.threshold) + memory_on_test_sets(run)
        for m in members:
            row = {"cell": name, "B": run.task.B, "epsilon": run.task.epsilon, "arm": m["arm"], "seed": m["seed"]}
            row.update({s: m[f"final_{s}"] for s in SETS if f"final_{s}" in m})
            row["steps"] = m.get("last_step", "")
            row["steps_ic"] = m.get("steps_ic") or ""
            rows.append(row)
    return rows


def phase_table(rows: list[dict], arms: list[str], test_set: str = "ic") -> str:
    """Markdown: per cell, the memory's and every arm's accuracy (mean [min, max] over seeds)."""
    memory = sorted({r["arm"] for r in rows if r["arm"] not in arms})
    cols = memory + arms
    lines = [
        f"| B | epsilon | {' | '.join(cols)} |",
        "|---|---|" + "---|" * len(cols),
    ]
    for cell in dict.fromkeys(r["cell"] for r in rows):
        mine = [r for r in rows if r["cell"] == cell]
        cells = []
        for arm in cols:
            v = np.array([float(r[test_set]) for r in mine if r["arm"] == arm])
            cells.append(f"{v.mean():.2f} [{v.min():.2f}, {v.max():.2f}]" if len(v) > 1 else f"{v.mean():.2f}")
        lines.append(f"| {mine[0]['B']} | {mine[0]['epsilon']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_phase(
    out: Path, base: Run, grid_B, grid_epsilon, device: str = "auto", resume: bool = False, executor=None, threads=None
) -> str:
    """Train (or resume) every cell, then write phase.csv, phase.md and config.json; returns the markdown."""
    out = Path(out)
    runs = cell_runs(base, grid_B, grid_epsilon)
    config = {
        "kind": "theory-phase",
        "grid": {"B": [int(b) for b in grid_B], "epsilon": [float(e) for e in grid_epsilon]},
        "run": base.to_dict(),
    }
    if resume:
        saved = read_json(out / "config.json")
        same = resumable_part(Run.from_dict(saved["run"]).to_dict()) == resumable_part(base.to_dict())
        if saved["grid"] != config["grid"] or not same:
            raise ValueError(f"{out} holds a phase run with another grid, arms or settings; use a new --out")
    write_run_config(out / "config.json", config)
    train_cells(out, runs, device, executor, threads)
    rows = summarise(out, runs)
    write_csv(out / "phase.csv", rows)
    arms = list(base.arms)
    steps = base.train.steps
    md = (
        f"ICL accuracy on the ic test (novel classes) after {steps:,} training steps, {len(base.seeds)} seeds "
        f"per cell (mean [min, max]); the AMICL memory answers the same sequences untrained.\n\n"
        + phase_table(rows, arms, "ic")
        + "\nic2 (known classes, labels swapped: ICL against the weights):\n\n"
        + phase_table(rows, arms, "ic2")
    )
    atomic_write_bytes(out / "phase.md", md.encode())
    return md

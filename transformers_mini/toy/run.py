"""A training run's fixed description and its history, torch-free so that the CLI validates options,
and analyses and figures read results, without loading torch.

For every seed, all arms share the parameter init, the task (mu, lambda), the online training batches
and the four test sets, so arm differences are paired; a member's data depends on its seed only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amicl.common.io import read_csv, read_json
from amicl.common.runs import expect_run
from amicl.task import TaskConfig
from transformers_mini.core.config import ToyConfig, TrainConfig


def seed_streams(seed: int):
    """Independent streams per seed: 0 the task (mu, lambda), 1 training batches, 2 test sets
    (4: the initial-state batch, 5: the probe set)."""
    return [np.random.SeedSequence(seed, spawn_key=(i,)) for i in range(3)]


def probe_stream(seed: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(5,))


@dataclass
class Run:
    """A training run's fixed description (written to config.json; a resume must match it)."""

    arms: dict[str, ToyConfig]
    seeds: list[int]
    task: TaskConfig
    train: TrainConfig

    def __post_init__(self):
        if not self.arms:
            raise ValueError("need at least one arm")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers, got {self.seeds}")
        for name, cfg in self.arms.items():
            if cfg.d_in != self.task.input_dim or cfg.n_labels != self.task.L:
                raise ValueError(
                    f"arm {name}: model d_in={cfg.d_in}, n_labels={cfg.n_labels} do not fit the task "
                    f"(input_dim={self.task.input_dim}, L={self.task.L})"
                )

    def check_ensemble(self) -> None:
        """Training only: the arms of one run train as one batched ensemble, so they share stream source,
        mix, learn and init. A join of separately trained runs may mix them."""
        shared = {(c.stream.source, c.stream.mix, c.stream.learn, c.init) for c in self.arms.values()}
        if len(shared) > 1:
            raise ValueError(
                "the arms of one run share stream source, mix, learn and init (they train as one "
                "ensemble); train the others in a run of their own and pair them with 'transformer join'"
            )

    @property
    def members(self) -> list[tuple[str, int]]:
        """(arm, seed) of every ensemble member, seed-major."""
        return [(a, s) for s in self.seeds for a in self.arms]

    def to_dict(self) -> dict:
        return {
            "arms": {k: v.to_dict() for k, v in self.arms.items()},
            "seeds": self.seeds,
            "task": self.task.to_dict(),
            "train": self.train.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Run":
        return cls(
            {k: ToyConfig.from_dict(v) for k, v in d["arms"].items()},
            list(d["seeds"]),
            TaskConfig.from_dict(d["task"]),
            TrainConfig.from_dict(d["train"]),
        )


def resumable_part(run: dict) -> dict:
    """What must match to resume: everything but the step budget, the early-stop flag, the probes and
    compilation (which changes the arithmetic only by rounding, as a change of device does)."""
    skip = ("steps", "stop_when_reached", "probe_size", "compile")
    train = {k: v for k, v in run["train"].items() if k not in skip}
    return {**run, "train": train}


def steps_to_threshold(history: list[dict], arm: str, seed: int, test_set: str, threshold: float):
    """First evaluated step at which ``test_set`` accuracy reached ``threshold`` (None if never).

    Accuracies are multiples of 1/eval_size; histories written before accuracies were divided in
    float64 hold float32 roundings (0.95 as 0.9499999881), hence the 1e-6 tolerance, far below 1/eval_size."""
    for row in history:
        if row["arm"] == arm and int(row["seed"]) == seed and float(row[test_set]) >= threshold - 1e-6:
            return int(row["step"])
    return None


def summarise_members(history: list[dict], threshold: float) -> list[dict]:
    """Per (arm, seed): steps to threshold on ic and ic2, and the last evaluation's accuracies."""
    members = list(dict.fromkeys((r["arm"], int(r["seed"])) for r in history))
    rows = []
    for arm, seed in members:
        last = [r for r in history if r["arm"] == arm and int(r["seed"]) == seed][-1]
        rows.append(
            {
                "arm": arm,
                "seed": seed,
                "steps_ic": steps_to_threshold(history, arm, seed, "ic", threshold) if "ic" in last else None,
                "steps_ic2": steps_to_threshold(history, arm, seed, "ic2", threshold) if "ic2" in last else None,
                "last_step": int(last["step"]),
                **{f"final_{k}": float(last[k]) for k in ("test", "ic", "ic2", "iw") if k in last},
            }
        )
    return rows


def load_history(out: Path, option: str = "RESULTS") -> tuple[Run, list[dict]]:
    """The run description and history of a stream run or join folder."""
    out = expect_run(out, ("streams", "streams-join"), option)
    return Run.from_dict(read_json(out / "config.json")["run"]), read_csv(out / "history.csv")

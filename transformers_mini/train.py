"""Training the ICL toy on Reddy's task: paired seeds x stream arms as one batched ensemble.

For every seed, all arms share the parameter init (same shapes, same generator), the task (mu,
lambda), the online training batches and the four test sets, so arm differences are paired. One run
is an ensemble of len(seeds) x len(arms) members trained together (``ToyTransformer``).

Optimiser (AMICL / Reddy code): plain SGD, theta <- (1 - wd) theta - lr grad, every step.
Checkpoints every ``checkpoint_every`` steps hold the model, the data generators' states and the
history, so ``resume`` continues exactly as if the run had never stopped. A NaN or inf loss stops the
run (``TrainingDiverged``) and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amicl._validate import RunStopped
from amicl.results import atomic_write_bytes, read_json, run_metadata, write_csv, write_json
from amicl.task import ICLTask, TaskConfig
from transformers_mini.config import TrainConfig, ToyConfig
from transformers_mini.model import ToyTransformer

EVAL_CHUNK = 2000


class TrainingDiverged(RunStopped):
    """The loss became NaN or inf; the last good checkpoint is kept."""


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda; got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but torch.cuda.is_available() is False")
    return torch.device(device)


def _streams(seed: int):
    """Independent streams per seed: 0 the task (mu, lambda), 1 training batches, 2 test sets."""
    return [np.random.SeedSequence(seed, spawn_key=(i,)) for i in range(3)]


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
                raise ValueError(f"arm {name}: model d_in={cfg.d_in}, n_labels={cfg.n_labels} do not fit the task "
                                 f"(input_dim={self.task.input_dim}, L={self.task.L})")

    @property
    def members(self) -> list[tuple[str, int]]:
        """(arm, seed) of every ensemble member, seed-major."""
        return [(a, s) for s in self.seeds for a in self.arms]

    def to_dict(self) -> dict:
        return {"arms": {k: v.to_dict() for k, v in self.arms.items()}, "seeds": self.seeds,
                "task": self.task.to_dict(), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Run":
        return cls({k: ToyConfig.from_dict(v) for k, v in d["arms"].items()}, list(d["seeds"]),
                   TaskConfig.from_dict(d["task"]), TrainConfig.from_dict(d["train"]))


class Trainer:
    """Holds the ensemble, the per-seed data streams and the history; ``fit`` runs to ``train.steps``."""

    def __init__(self, run: Run, device: str = "auto"):
        self.run = run
        self.device = resolve_device(device)
        arms, seeds = list(run.arms), run.seeds
        self.model = ToyTransformer([run.arms[a] for a, _ in run.members], [s for _, s in run.members]).to(self.device)
        self.tasks = [ICLTask.from_seed(run.task, _streams(s)[0]) for s in seeds]
        self.rngs = [np.random.default_rng(_streams(s)[1]) for s in seeds]
        self.test_sets = [t.test_sets(run.train.eval_size, np.random.default_rng(_streams(s)[2]))
                          for t, s in zip(self.tasks, seeds)]
        self.member_seed = torch.tensor([seeds.index(s) for _, s in run.members], device=self.device)
        self.step = 0
        self.history: list[dict] = []
        self._loss_sum = torch.zeros(len(run.members), device=self.device)
        self._loss_n = 0
        self.arm_names = arms

    # -- one step ---------------------------------------------------------------------------------
    def _batch(self):
        bs = [t.sample(self.run.train.batch, r) for t, r in zip(self.tasks, self.rngs)]
        x = torch.from_numpy(np.stack([b.x for b in bs])).to(self.device)
        y = torch.from_numpy(np.stack([b.y for b in bs])).to(self.device)
        return x[self.member_seed], y[self.member_seed]  # (E, B, T, d), (E, B)

    def train_step(self) -> torch.Tensor:
        """One SGD step for every member; returns the per-member loss (E,)."""
        c = self.run.train
        x, y = self._batch()
        logits = self.model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        loss = loss.view(y.shape).mean(dim=1)  # (E,)
        if not torch.isfinite(loss).all():
            bad = [self.run.members[i] for i in torch.nonzero(~torch.isfinite(loss)).flatten().tolist()]
            raise TrainingDiverged(f"non-finite loss at step {self.step + 1} for (arm, seed) {bad}; "
                                   "the last good checkpoint is kept")
        self.model.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: each gets the gradient of its own mean loss
        with torch.no_grad():
            for p in self.model.parameters():
                p.mul_(1.0 - c.weight_decay).add_(p.grad, alpha=-c.lr)
        self.step += 1
        self._loss_sum += loss.detach()
        self._loss_n += 1
        return loss.detach()

    # -- evaluation -------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, np.ndarray]:
        """Accuracy of every member on its seed's four test sets: name -> (E,)."""
        out = {}
        for name in self.test_sets[0]:
            correct = torch.zeros(len(self.run.members), device=self.device)
            n = self.test_sets[0][name].x.shape[0]
            for lo in range(0, n, EVAL_CHUNK):
                x = torch.from_numpy(np.stack([ts[name].x[lo:lo + EVAL_CHUNK] for ts in self.test_sets])).to(self.device)
                y = torch.from_numpy(np.stack([ts[name].y[lo:lo + EVAL_CHUNK] for ts in self.test_sets])).to(self.device)
                pred = self.model(x[self.member_seed]).argmax(-1)
                correct += (pred == y[self.member_seed]).float().sum(1)
            out[name] = correct.cpu().numpy().astype(np.float64) / n  # exact counts; 1900/2000 is 0.95, not 0.9499
        return out

    def record(self) -> dict[str, np.ndarray]:
        acc = self.evaluate()
        loss = (self._loss_sum / max(self._loss_n, 1)).cpu().numpy()
        for i, (arm, seed) in enumerate(self.run.members):
            row = {"step": self.step, "arm": arm, "seed": seed, "train_loss": float(loss[i]) if self._loss_n else ""}
            row.update({name: float(a[i]) for name, a in acc.items()})
            self.history.append(row)
        self._loss_sum.zero_()
        self._loss_n = 0
        return acc

    # -- checkpoints ------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"run": self.run.to_dict(), "step": self.step, "model": self.model.state_dict(),
                "rngs": [r.bit_generator.state for r in self.rngs], "history": self.history}

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        atomic_write_bytes(path, buf.getvalue())

    def load(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        if _resumable(state["run"]) != _resumable(self.run.to_dict()):
            raise ValueError(f"checkpoint {path} belongs to a different run configuration; use a new --out")
        self.model.load_state_dict(state["model"])
        for r, s in zip(self.rngs, state["rngs"]):
            r.bit_generator.state = s
        self.step = state["step"]
        self.history = state["history"]

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self, out: Path | None = None, progress: bool | None = None) -> list[dict]:
        """Train to ``train.steps`` (or until every member reached the threshold on ic and ic2 when
        ``stop_when_reached``), evaluating every ``eval_every`` steps and checkpointing into ``out``."""
        from tqdm.auto import tqdm

        c = self.run.train
        show = sys.stderr.isatty() if progress is None else progress
        if self.step == 0 and not self.history:
            self.record()  # the curves start at step 0
        with tqdm(total=c.steps, initial=self.step, desc="train", disable=not show, file=sys.stderr) as bar:
            while self.step < c.steps:
                self.train_step()
                bar.update()
                if self.step % c.eval_every == 0 or self.step == c.steps:
                    acc = self.record()
                    bar.set_postfix({a: f"{acc['ic'][i]:.2f}" for i, a in enumerate(self.arm_names)} if "ic" in acc else {})
                    if out is not None and (self.step % c.checkpoint_every == 0 or self.step == c.steps):
                        self.save_outputs(out)
                    if c.stop_when_reached and self._all_reached():
                        break
        if out is not None:
            self.save_outputs(out)
        return self.history

    def _all_reached(self) -> bool:
        rows = summarise_members(self.history, self.run.train.threshold)
        return all(r["steps_ic"] is not None and r["steps_ic2"] is not None for r in rows)

    def save_outputs(self, out: Path) -> None:
        out = Path(out)
        self.save(out / "checkpoint.pt")
        write_csv(out / "history.csv", self.history)
        write_json(out / "config.json", {"run": self.run.to_dict(), "step": self.step, "device": str(self.device),
                                         "n_params_per_member": self.model.n_params(), **run_metadata()})


def _resumable(run: dict) -> dict:
    """What must match to resume: everything but the step budget and the early-stop flag."""
    train = {k: v for k, v in run["train"].items() if k not in ("steps", "stop_when_reached")}
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
        rows.append({"arm": arm, "seed": seed,
                     "steps_ic": steps_to_threshold(history, arm, seed, "ic", threshold) if "ic" in last else None,
                     "steps_ic2": steps_to_threshold(history, arm, seed, "ic2", threshold) if "ic2" in last else None,
                     "last_step": int(last["step"]),
                     **{f"final_{k}": float(last[k]) for k in ("test", "ic", "ic2", "iw") if k in last}})
    return rows


def load_history(out: Path) -> tuple[Run, list[dict]]:
    from amicl.results import read_csv

    out = Path(out)
    return Run.from_dict(read_json(out / "config.json")["run"]), read_csv(out / "history.csv")

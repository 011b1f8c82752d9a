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

import sys
from pathlib import Path

import numpy as np
import torch

from amicl.common.io import load_torch, save_torch, write_csv, write_run_config
from amicl.common.runs import drive
from amicl.common.validate import RunStopped
from amicl.task import ICLTask
from transformers_mini.core.device import precision, resolve_device
from transformers_mini.core.model import ToyTransformer
from transformers_mini.toy.run import Run, probe_stream, resumable_part, seed_streams, summarise_members

EVAL_CHUNK = 2000


class TrainingDiverged(RunStopped):
    """The loss became NaN or inf; the run folder keeps its last checkpoint, if one was written."""


class Trainer:
    """Holds the ensemble, the per-seed data streams and the history; ``fit`` runs to ``train.steps``."""

    def __init__(self, run: Run, device: str = "auto"):
        run.check_ensemble()
        self.run = run
        self.device = resolve_device(device)
        seeds = run.seeds
        self.model = ToyTransformer([run.arms[a] for a, _ in run.members], [s for _, s in run.members]).to(self.device)
        self.tasks = [ICLTask.from_seed(run.task, seed_streams(s)[0]) for s in seeds]
        self.rngs = [np.random.default_rng(seed_streams(s)[1]) for s in seeds]
        self.samplers = None  # device-drawn training batches, one generator per seed (TrainConfig.data)
        if run.train.data == "device":
            from transformers_mini.toy.device_data import DeviceSampler

            streams = [int(seed_streams(s)[1].generate_state(1)[0]) for s in seeds]
            self.samplers = [DeviceSampler(t, self.device, k) for t, k in zip(self.tasks, streams)]
        self.test_sets = [
            t.test_sets(run.train.eval_size, np.random.default_rng(seed_streams(s)[2]))
            for t, s in zip(self.tasks, seeds)
        ]
        self.active = list(range(len(run.members)))  # members still training (see ``retire``)
        self.member_seed = torch.tensor([seeds.index(s) for _, s in run.members], device=self.device)
        # a host copy for the data loop: reading the device copy every step would wait for the GPU
        self.member_seed_host = self.member_seed.cpu().numpy()
        self.step = 0
        self.saved_step: int | None = None  # step of the last checkpoint written or loaded
        self.history: list[dict] = []
        self.probes: list[dict] = []  # mechanistic probes per evaluation and member (transformers_mini.toy.probes)
        self.probe_sets = self._probe_sets()
        self._loss_sum = torch.zeros(len(run.members), device=self.device)
        self._loss_n = 0
        # a check of every step's loss waits for the GPU, so that there the loss sum is checked at each
        # evaluation instead: still before any checkpoint is written, as checkpoints follow evaluations
        self.check_every_step = self.device.type == "cpu"
        self._loss = self._member_loss
        if run.train.compile and run.train.clamp == "none":  # clamp hooks are Python closures: left eager
            from transformers_mini.core.device import compiled

            self._loss = compiled(self._member_loss)

    # -- one step ---------------------------------------------------------------------------------
    def _batch(self):
        """(E, B, T, d), (E, B): each active member's batch; a seed with no active member draws none
        (its generator is its own, so the others' data does not change)."""
        used = sorted(set(self.member_seed_host.tolist()))
        members = self.member_seed_host
        induction = self.run.train.clamp == "induction"  # the only use of the items' classes in a step
        if self.samplers is not None:  # drawn on the training device: no host work, no copy
            bs = {i: self.samplers[i].sample(self.run.train.batch) for i in used}
            x, y = (torch.stack([bs[i][k] for i in members]) for k in range(2))
            self._classes = torch.stack([bs[i][2] for i in members]) if induction else None
            return x, y
        bs = {i: self.tasks[i].sample(self.run.train.batch, self.rngs[i]) for i in used}
        x = torch.from_numpy(np.stack([bs[i].x for i in members])).to(self.device)
        y = torch.from_numpy(np.stack([bs[i].y for i in members])).to(self.device)
        self._classes = np.stack([bs[i].classes for i in members]) if induction else None
        return x, y

    def _clamp(self, x: torch.Tensor, classes=None):
        """The hooks holding the clamped pattern (``TrainConfig.clamp``) for the inputs x, or None;
        ``classes`` (E, B, N + 1): the items' classes, which only the induction clamp reads."""
        c = self.run.train
        if c.clamp == "none":
            return None
        from transformers_mini.toy.interventions import clamp_hooks

        classes = None if classes is None else torch.as_tensor(classes, device=self.device)
        return clamp_hooks(c.clamp, c.clamp_w, x.shape[-2], classes)

    def _member_loss(self, x: torch.Tensor, y: torch.Tensor, hooks) -> torch.Tensor:
        """(E,) each member's mean cross-entropy on its batch."""
        with precision(self.device, self.run.train.precision):
            logits = self.model(x, hooks=hooks)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
        return loss.view(y.shape).mean(dim=1)

    def train_step(self) -> torch.Tensor:
        """One SGD step for every member; returns the per-member loss (E,)."""
        c = self.run.train
        x, y = self._batch()
        loss = self._loss(x, y, self._clamp(x, self._classes))  # (E,)
        if self.check_every_step:
            self._check_finite(loss, f"at step {self.step + 1}")
        self.model.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: each gets the gradient of its own mean loss
        with torch.no_grad():  # one fused launch per operation on a GPU; the same arithmetic on the CPU
            params = list(self.model.parameters())
            torch._foreach_mul_(params, 1.0 - c.weight_decay)
            torch._foreach_add_(params, [p.grad for p in params], alpha=-c.lr)
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
            correct = torch.zeros(len(self.active), device=self.device)
            n = self.test_sets[0][name].x.shape[0]
            for lo in range(0, n, EVAL_CHUNK):
                x = torch.from_numpy(np.stack([ts[name].x[lo : lo + EVAL_CHUNK] for ts in self.test_sets])).to(
                    self.device
                )
                y = torch.from_numpy(np.stack([ts[name].y[lo : lo + EVAL_CHUNK] for ts in self.test_sets])).to(
                    self.device
                )
                classes = None
                if self.run.train.clamp == "induction":
                    classes = np.stack([ts[name].classes[lo : lo + EVAL_CHUNK] for ts in self.test_sets])
                    classes = classes[self.member_seed_host]
                xm = x[self.member_seed]
                with precision(self.device, self.run.train.precision):
                    pred = self.model(xm, hooks=self._clamp(xm, classes)).argmax(-1)
                correct += (pred == y[self.member_seed]).float().sum(1)
            out[name] = correct.cpu().numpy().astype(np.float64) / n  # exact counts; 1900/2000 is 0.95, not 0.9499
        return out

    def _probe_sets(self) -> tuple[torch.Tensor, np.ndarray] | None:
        """Each seed's fixed probe sequences (ic: novel classes, bursty), stacked; None where the probes
        do not apply (probe_size 0, no ic test set, not a two-layer toy)."""
        run = self.run
        if not run.train.probe_size or "ic" not in run.task.test_sets or self.model.config.n_layer != 2:
            return None
        if run.train.clamp != "none":  # the probes would read the clamped pattern, not what was learned
            return None
        size = run.train.probe_size
        sets = [t.test_set("ic", size, np.random.default_rng(probe_stream(s))) for t, s in zip(self.tasks, run.seeds)]
        return torch.from_numpy(np.stack([b.x for b in sets])).to(self.device), np.stack([b.classes for b in sets])

    def record_probes(self) -> None:
        from transformers_mini.toy.probes import probe_model

        x, classes = self.probe_sets
        idx = self.member_seed_host
        values = probe_model(self.model, x[self.member_seed], classes[idx], self.run.task.n_pos)
        for i, (arm, seed) in enumerate(self.run.members[m] for m in self.active):
            row = {"step": self.step, "arm": arm, "seed": seed}
            self.probes.append({**row, **{k: float(v[i]) for k, v in values.items()}})

    def _check_finite(self, loss: torch.Tensor, when: str) -> None:
        if not torch.isfinite(loss).all():
            bad = [self.run.members[self.active[i]] for i in torch.nonzero(~torch.isfinite(loss)).flatten().tolist()]
            kept = (
                "no checkpoint was written"
                if self.saved_step is None
                else f"the checkpoint of step {self.saved_step} is kept"
            )
            raise TrainingDiverged(f"non-finite loss {when} for (arm, seed) {bad}; {kept}")

    def record(self) -> dict[str, np.ndarray]:
        if not self.check_every_step and self._loss_n:
            self._check_finite(self._loss_sum, f"between steps {self.step - self._loss_n + 1} and {self.step}")
        if self.probe_sets is not None:
            self.record_probes()
        acc = self.evaluate()
        loss = (self._loss_sum / max(self._loss_n, 1)).cpu().numpy()
        lam = self._learned_weights()
        for i, (arm, seed) in enumerate(self.run.members[m] for m in self.active):
            row = {"step": self.step, "arm": arm, "seed": seed, "train_loss": float(loss[i]) if self._loss_n else ""}
            row.update({name: float(a[i]) for name, a in acc.items()})
            row.update({name: float(v[i]) for name, v in lam.items()})
            self.history.append(row)
        self._loss_sum.zero_()
        self._loss_n = 0
        return acc

    def _learned_weights(self) -> dict[str, np.ndarray]:
        """A learned stream's weight per later layer, (E,) each (``stream_lam_l{l}``: the weight on the
        member's streamed projection; 0 for a member without a stream); empty for fixed weights."""
        if not self.model.config.stream.learn:
            return {}
        lam = self.model.stream_weights().cpu().numpy()  # (E, L)
        return {f"stream_lam_l{k}": lam[:, k] for k in range(1, lam.shape[1])}

    # -- checkpoints ------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "run": self.run.to_dict(),
            "step": self.step,
            "model": self.model.state_dict(),
            "rngs": [r.bit_generator.state for r in self.rngs],
            **({"samplers": [sm.state() for sm in self.samplers]} if self.samplers is not None else {}),
            "history": self.history,
            "probes": self.probes,
            "active": self.active,
        }

    def save(self, path: Path) -> None:
        save_torch(path, self.state())
        self.saved_step = self.step

    def load(self, path: Path) -> None:
        self.load_state(load_torch(path, map_location=self.device), path)

    def load_state(self, state: dict, path: Path | str = "the checkpoint") -> None:
        """Continue from a checkpoint's ``state`` (``load`` reads it from ``path``)."""
        saved = Run.from_dict(state["run"]).to_dict()  # fills fields added since the checkpoint was written
        if resumable_part(saved) != resumable_part(self.run.to_dict()):
            raise ValueError(f"checkpoint {path} belongs to a different run configuration; use a new --out")
        self._keep(state.get("active", self.active))
        self.model.load_state_dict(state["model"])
        for r, s in zip(self.rngs, state["rngs"]):
            r.bit_generator.state = s
        for sm, s in zip(self.samplers or [], state.get("samplers", [])):
            sm.set_state(s.cpu() if hasattr(s, "cpu") else s)
        self.step = self.saved_step = state["step"]
        self.history = state["history"]
        self.probes = state.get("probes", [])  # checkpoints from before the probes have none

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self, out: Path | None = None, progress: bool | None = None) -> list[dict]:
        """Train to ``train.steps`` (or until every member reached the threshold on ic and ic2 when
        ``stop_when_reached``), evaluating every ``eval_every`` steps and checkpointing into ``out``."""
        c = self.run.train
        if self.step == 0 and not self.history:
            self.record()  # the curves start at step 0
        stopped = c.stop_when_reached and self.retire()

        def step() -> dict | None:
            nonlocal stopped
            self.train_step()
            if self.step % c.eval_every and self.step != c.steps:
                return None
            acc = self.record()
            shown = self._postfix(acc)
            if c.stop_when_reached:
                stopped = self.retire()
            return {
                "postfix": shown,
                "save": self.step % c.checkpoint_every == 0 or self.step == c.steps,
                "stop": stopped,
            }

        drive(
            step,
            lambda: self.step >= c.steps or stopped,
            total=c.steps,
            initial=self.step,
            desc="train",
            save=(lambda: self.save_outputs(out)) if out is not None else None,
            progress=progress,
        )
        if out is not None:
            self.save_outputs(out)
        return self.history

    def _postfix(self, acc: dict[str, np.ndarray]) -> dict[str, str] | None:
        """Median ic accuracy per arm over the members still training (and how many there are)."""
        if "ic" not in acc:
            return None
        arms = [self.run.members[m][0] for m in self.active]
        shown = {a: f"{np.median([x for x, b in zip(acc['ic'], arms) if b == a]):.2f}" for a in dict.fromkeys(arms)}
        return {**shown, "training": str(len(arms))}

    def finished(self) -> bool:
        """True once training is over: the step budget is spent, or (``stop_when_reached``) every member
        reached the threshold on ic and ic2."""
        c = self.run.train
        if self.step >= c.steps:
            return True
        rows = summarise_members(self.history, c.threshold)
        return c.stop_when_reached and all(r["steps_ic"] is not None and r["steps_ic2"] is not None for r in rows)

    def retire(self) -> bool:
        """Stop training the members that reached the threshold on ic and ic2 (their history ends at
        that evaluation); True once none is left. Members never interact, so the others go on as they
        would have, up to float rounding, and the censored tail costs only the slow members' compute."""
        rows = summarise_members(self.history, self.run.train.threshold)
        done = {(r["arm"], r["seed"]) for r in rows if r["steps_ic"] is not None and r["steps_ic2"] is not None}
        left = [m for m in self.active if self.run.members[m] not in done]
        if not left:
            return True
        self._keep(left)
        return False

    def _keep(self, members: list[int]) -> None:
        if members == self.active:
            return
        pos = [self.active.index(m) for m in members]
        self.model.keep_members(pos)
        self.member_seed = self.member_seed[pos]
        self.member_seed_host = self.member_seed_host[pos]
        self._loss_sum = self._loss_sum[pos]
        self.active = list(members)

    def save_outputs(self, out: Path) -> None:
        out = Path(out)
        self.save(out / "checkpoint.pt")
        write_csv(out / "history.csv", self.history)
        if self.probes:
            write_csv(out / "probes.csv", self.probes)
        write_run_config(
            out / "config.json",
            {
                "kind": "streams",
                "run": self.run.to_dict(),
                "step": self.step,
                "finished": self.finished(),
                "device": str(self.device),
                "n_params_per_member": self.model.n_params(),
            },
        )


def load_trainer(folder: str | Path, device: str = "auto") -> Trainer:
    """The ``Trainer`` of a ``streams`` run's checkpoint (its model, test sets and history), checked."""
    from amicl.common.runs import expect_run

    folder = expect_run(folder, "streams", "RUN")
    state = load_torch(folder / "checkpoint.pt", map_location="cpu")  # read once: it names its own run
    trainer = Trainer(Run.from_dict(state["run"]), device)
    trainer.load_state(state, folder / "checkpoint.pt")
    return trainer


def evaluate_checkpoint(folder: str | Path, device: str = "auto") -> tuple[list[dict], list[dict], list[dict]]:
    """Re-measure the members of a ``streams`` run's checkpoint on the run's own test and probe sets,
    drawn again from its seeds: (accuracy rows, probe rows, the checkpoint's own rows of that step). Equal
    rows show that the checkpoint and the code still reproduce the run's history."""
    trainer = load_trainer(folder, device)
    own = [r for r in trainer.history if r["step"] == trainer.step]
    trainer.history, trainer.probes, trainer._loss_n = [], [], 0
    trainer.record()
    return trainer.history, trainer.probes, own


def finished_history(folder: Path, run: dict) -> int | None:
    """The step of a finished seed group whose checkpoint is gone but whose history.csv and config.json
    (recording it finished, for this run) are kept, as in a repository that commits results but not
    checkpoints; None when the group is to be trained or resumed. Joining needs only the history."""
    from amicl.common.io import read_json

    if (folder / "checkpoint.pt").exists() or not (folder / "history.csv").exists():
        return None
    try:
        cfg = read_json(folder / "config.json")
    except (OSError, ValueError):
        return None
    if cfg.get("kind") != "streams" or not cfg.get("finished"):
        return None
    budget = ("steps", "stop_when_reached")
    if resumable_part(cfg["run"]) != resumable_part(run) or any(
        cfg["run"]["train"][k] != run["train"][k] for k in budget
    ):
        return None
    print(f"{folder}: finished at step {cfg['step']}; its history is kept (no checkpoint)", file=sys.stderr)
    return int(cfg["step"])


def train_group(run: dict, folder: str, device: str, threads: int | None = None) -> int:
    """Train (or resume) one seed group of a grouped comparison in its own ``streams`` run folder; a task
    for any Executor (it sets its own torch threads). Returns the step reached."""
    from amicl.common.runs import claim_run_folder, run_kind

    if threads:
        torch.set_num_threads(threads)
    folder = Path(folder)
    kept = finished_history(folder, run)
    if kept is not None:
        return kept
    started = run_kind(folder) is not None
    with claim_run_folder(folder, "streams", started, marker="checkpoint.pt") as claimed:
        trainer = Trainer(Run.from_dict(run), device)
        if claimed.resume:
            trainer.load(folder / "checkpoint.pt")
        trainer.fit(folder, progress=False)
    return trainer.step

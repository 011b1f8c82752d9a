"""Train the frozen base model that NAMM policies manage: a small GPT on the synthetic tasks.

The loss is the cross-entropy of the answer tokens only (the prompts are random symbols, so
modelling them is wasted capacity). Training prompts end with ``queries`` questions about the same
body, each answer supervised where it is asked, so one forward pass over a long body teaches several
retrievals; evaluation prompts have one query, the format memory policies are scored on. Every
step draws one task and one context length (powers of two between ``min_context`` and
``max_context``), so the rotary model sees every length. With ``curriculum`` = n, the first n steps use
the shortest length only and every further n steps admit the next doubling: the skills are learned
where steps are cheap (a 128-token step costs a small fraction of a 1,024-token one) and then carried
to long contexts. Checkpoints hold model, optimiser, generator state and history; ``resume`` is exact.

The model has token shift (``GPTConfig.token_shift``): every input carries its predecessor's
embedding. Without it, key matching needs a previous-token head and an induction head to form together,
and on these tasks it had not formed after 4,000 steps (results/namm/base_4k). On kv_retrieval at 128
tokens, with token shift, accuracy went from chance to 0.81 in 200 steps; without it, it was 0.08 at
step 500 (same optimiser and data; results/namm/token_shift_probe).
"""

from __future__ import annotations

import io
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from amicl._validate import RunStopped, check_float, check_int
from amicl.results import atomic_write_bytes, read_json, run_metadata, write_csv, write_json
from evolution.tasks import ANSWER, TASKS, sample
from transformers_mini.config import GPTConfig
from transformers_mini.model import GPT


@dataclass(frozen=True)
class BaseConfig:
    """What to train: the model, the task mix and the optimisation (AdamW, warm-up, clipping)."""

    model: GPTConfig = field(default_factory=lambda: GPTConfig(vocab_size=256, block_size=4096, n_layer=4, n_head=4,
                                                               n_kv_head=2, d_model=128, pos="rotary",
                                                               token_shift=True))
    tasks: tuple[str, ...] = TASKS
    min_context: int = 128
    max_context: int = 1024
    filler_frac: float = 0.5
    queries: int = 8
    curriculum: int = 1000
    steps: int = 4000
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 100
    eval_every: int = 250
    eval_size: int = 64
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", GPTConfig.from_dict(self.model))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        for t in self.tasks:
            if t not in TASKS:
                raise ValueError(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
        for name, lo in (("min_context", 32), ("max_context", 32), ("queries", 1), ("curriculum", 0), ("steps", 1),
                         ("batch", 1), ("warmup", 0), ("eval_every", 1), ("eval_size", 1), ("seed", 0)):
            object.__setattr__(self, name, check_int(name, getattr(self, name), lo=lo))
        object.__setattr__(self, "lr", check_float("lr", self.lr, lo=0.0, lo_open=True))
        if self.max_context < self.min_context or self.max_context > self.model.block_size:
            raise ValueError(f"need min_context <= max_context <= block_size; got {self.min_context}, "
                             f"{self.max_context}, {self.model.block_size}")
        if self.model.vocab_size < 256:
            raise ValueError("the tasks need vocab_size >= 256")

    @property
    def contexts(self) -> list[int]:
        out, c = [], self.min_context
        while c <= self.max_context:
            out.append(c)
            c *= 2
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "model": self.model.to_dict(), "tasks": list(self.tasks)}

    @classmethod
    def from_dict(cls, d: dict) -> "BaseConfig":
        return cls(**d)


def answer_logits(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    """Logits at the last position (the ANSWER marker): (B, vocab)."""
    return model(tokens)[:, -1]


class BaseTrainer:
    def __init__(self, config: BaseConfig, device: str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        torch.manual_seed(config.seed)
        self.model = GPT(config.model).to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.01)
        self.rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1,)))
        self.step = 0
        self.history: list[dict] = []
        eval_rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2,)))
        self.eval_sets = {(t, c): sample(t, config.eval_size, c, eval_rng, config.filler_frac)
                          for t in config.tasks for c in (config.contexts[0], config.contexts[-1])}

    def draw_context(self) -> int:
        """This step's context length, uniform over the lengths the curriculum admits by now."""
        c = self.config
        allowed = c.contexts[: 1 + self.step // c.curriculum] if c.curriculum else c.contexts
        return allowed[self.rng.integers(len(allowed))]

    def train_step(self) -> float:
        c = self.config
        task = c.tasks[self.rng.integers(len(c.tasks))]
        ctx = self.draw_context()
        p = sample(task, c.batch, ctx, self.rng, c.filler_frac, c.queries)
        self.model.train()
        tokens = torch.from_numpy(p.tokens).to(self.device)
        logits = self.model(tokens)[tokens == ANSWER]  # (batch * queries, vocab), row-major like answers
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(p.answers.reshape(-1)).to(self.device))
        if not torch.isfinite(loss):
            raise RunStopped(f"non-finite loss at step {self.step + 1}; the last good checkpoint is kept")
        for g in self.opt.param_groups:
            g["lr"] = c.lr * min(1.0, (self.step + 1) / max(c.warmup, 1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.step += 1
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        out = {}
        for (task, ctx), p in self.eval_sets.items():
            pred = answer_logits(self.model, torch.from_numpy(p.tokens).to(self.device)).argmax(-1).cpu().numpy()
            out[f"{task}@{ctx}"] = float((pred == p.answer).mean())
        return out

    def save(self, out: Path) -> None:
        out = Path(out)
        buf = io.BytesIO()
        torch.save({"config": self.config.to_dict(), "step": self.step, "model": self.model.state_dict(),
                    "opt": self.opt.state_dict(), "rng": self.rng.bit_generator.state, "history": self.history}, buf)
        atomic_write_bytes(out / "base.pt", buf.getvalue())
        write_csv(out / "history.csv", self.history)
        write_json(out / "config.json", {"base": self.config.to_dict(), "step": self.step,
                                         "n_params": self.model.n_params(), **run_metadata()})

    def load(self, out: Path) -> None:
        state = torch.load(Path(out) / "base.pt", map_location=self.device, weights_only=False)
        mine = {k: v for k, v in self.config.to_dict().items() if k != "steps"}
        if {k: v for k, v in state["config"].items() if k != "steps"} != mine:
            raise ValueError(f"{out} holds a base model trained with a different configuration")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.rng.bit_generator.state = state["rng"]
        self.step, self.history = state["step"], state["history"]

    def fit(self, out: Path | None = None, progress: bool | None = None) -> list[dict]:
        from tqdm.auto import tqdm

        c = self.config
        show = sys.stderr.isatty() if progress is None else progress
        losses = []
        with tqdm(total=c.steps, initial=self.step, desc="base model", disable=not show, file=sys.stderr) as bar:
            while self.step < c.steps:
                losses.append(self.train_step())
                bar.update()
                if self.step % c.eval_every == 0 or self.step == c.steps:
                    acc = self.evaluate()
                    self.history.append({"step": self.step, "train_loss": float(np.mean(losses)), **acc})
                    losses = []
                    bar.set_postfix(mean_acc=f"{np.mean(list(acc.values())):.2f}")
                    if out is not None:
                        self.save(out)
        return self.history


def load_base(out: str | Path, device: str = "cpu") -> GPT:
    """The trained, frozen base model stored in ``out``."""
    out = Path(out)
    cfg = BaseConfig.from_dict(read_json(out / "config.json")["base"])
    model = GPT(cfg.model).to(device)
    model.load_state_dict(torch.load(out / "base.pt", map_location=device, weights_only=False)["model"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model

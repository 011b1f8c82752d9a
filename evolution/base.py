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
embedding (why: results/namm/README.md, the token-shift probe).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from amicl.common.io import load_torch, read_json, save_torch, write_csv, write_run_config
from amicl.common.runs import expect_run, train_with_evals
from evolution.config import BaseConfig
from evolution.tasks import ANSWER, sample
from transformers_mini.core.device import precision
from transformers_mini.core.model import GPT


def answer_logits(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    """Logits at the last position (the ANSWER marker): (B, vocab)."""
    return model(tokens)[:, -1]


class BaseTrainer:
    def __init__(self, config: BaseConfig, device: str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):  # the init draws from a seeded global RNG, restored after
            torch.manual_seed(config.seed)
            self.model = GPT(config.model).to(self.device)
        fused = self.device.type == "cuda"  # one fused kernel per step on a GPU; the CPU keeps the foreach path
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.01, fused=fused
        )
        self.rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1,)))
        self.step = 0
        self.saved_step: int | None = None
        self.history: list[dict] = []
        for t in config.tasks:  # a training prompt of every task must fit the shortest context (own RNG: no draw)
            try:
                sample(t, 1, config.contexts[0], np.random.default_rng(0), config.filler_frac, config.queries)
            except ValueError:
                raise ValueError(
                    f"--min-context {config.contexts[0]} is too short for task {t} with {config.queries} queries"
                ) from None
        eval_rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2,)))
        self.eval_sets = {
            (t, c): sample(t, config.eval_size, c, eval_rng, config.filler_frac)
            for t in config.tasks
            for c in (config.contexts[0], config.contexts[-1])
        }

    def draw_context(self) -> int:
        """This step's context length, uniform over the lengths the curriculum admits by now."""
        c = self.config
        allowed = c.contexts[: 1 + self.step // c.curriculum] if c.curriculum else c.contexts
        return allowed[self.rng.integers(len(allowed))]

    def train_step(self) -> torch.Tensor:
        """One optimiser step; returns the loss as a tensor on the device (read at the next evaluation,
        where a non-finite one stops the run), so that nothing here waits for the device."""
        c = self.config
        task = c.tasks[self.rng.integers(len(c.tasks))]
        ctx = self.draw_context()
        p = sample(task, c.batch, ctx, self.rng, c.filler_frac, c.queries)
        self.model.train()
        tokens = torch.from_numpy(p.tokens).to(self.device)
        rows, cols = (torch.from_numpy(i).to(self.device) for i in np.nonzero(p.tokens == ANSWER))  # on the host
        with precision(self.device, c.precision):
            logits = self.model(tokens)[rows, cols]  # (batch * queries, vocab), row-major like answers
        target = torch.from_numpy(p.answers.reshape(-1)).to(self.device)
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
        for g in self.opt.param_groups:
            g["lr"] = c.lr * min(1.0, (self.step + 1) / max(c.warmup, 1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.step += 1
        return loss.detach()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        out = {}
        for (task, ctx), p in self.eval_sets.items():
            pred = answer_logits(self.model, torch.from_numpy(p.tokens).to(self.device)).argmax(-1).cpu().numpy()
            out[f"{task}@{ctx}"] = float((pred == p.answer).mean())
        return out

    def save(self, out: Path) -> None:
        """base.pt (the checkpoint, one atomic file) first; history.csv and config.json derive from it."""
        out = Path(out)
        save_torch(
            out / "base.pt",
            {
                "config": self.config.to_dict(),
                "step": self.step,
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "rng": self.rng.bit_generator.state,
                "history": self.history,
            },
        )
        self.saved_step = self.step
        write_csv(out / "history.csv", self.history)
        write_run_config(
            out / "config.json",
            {
                "kind": "namm-base",
                "base": self.config.to_dict(),
                "step": self.step,
                "n_params": self.model.n_params(),
            },
        )

    def load(self, out: Path) -> None:
        state = load_torch(Path(out) / "base.pt", map_location=self.device)
        # through from_dict, so that a checkpoint saved before a field with a default existed still resumes
        saved = replace(BaseConfig.from_dict(state["config"]), steps=self.config.steps)
        if saved != self.config:
            raise ValueError(f"{out} holds a base model trained with a different configuration")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.rng.bit_generator.state = state["rng"]
        self.step, self.history = state["step"], state["history"]
        self.saved_step = self.step

    def fit(self, out: Path | None = None, progress: bool | None = None) -> list[dict]:
        c = self.config
        return train_with_evals(
            self,
            c.steps,
            c.eval_every,
            self.evaluate,
            desc="base model",
            save=(lambda: self.save(out)) if out is not None else None,
            progress=progress,
            postfix=lambda acc: {"mean_acc": f"{np.mean(list(acc.values())):.2f}"},
        )


def load_base(out: str | Path, device: str = "cpu") -> GPT:
    """The trained, frozen base model stored in the namm-base run ``out``."""
    out = expect_run(out, "namm-base", "--base")
    cfg = BaseConfig.from_dict(read_json(out / "config.json")["base"])
    model = GPT(cfg.model).to(device)
    model.load_state_dict(load_torch(out / "base.pt", map_location=device)["model"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model

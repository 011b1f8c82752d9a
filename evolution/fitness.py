"""Population fitness: task score under a memory policy, normalised by the full cache on the same prompts.

NAMM's fitness (reference notes sec. 6) is the mean over tasks of score / full-cache score, on prompts
shared by the whole generation. The population runs as one batched rollout with one parameter vector
per batch row (rows = members x prompts, processed ``batch_rows`` at a time), or through an Executor.
``metric="accuracy"`` is exact match of the greedy answer (the paper's kind of metric);
``metric="prob"`` is the probability of the correct answer, a smooth score for weak base models.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from amicl.common.validate import check_choice, check_int
from evolution.config import METRICS
from evolution.policies import NAMM, FullCache
from evolution.rollout import rollout
from evolution.scorers import Scorer
from evolution.spectrogram import NormStats
from evolution.tasks import Prompts
from transformers_mini.core.model import GPT


def prompt_scores(model: GPT, tokens: np.ndarray, answer: np.ndarray, policy, metric: str):
    """Per-row score (B,) and the rollout's statistics for prompts ``tokens`` (B, T) under ``policy``."""
    check_choice("metric", metric, METRICS)
    out, stats = rollout(model, torch.from_numpy(tokens), 1, policy)
    target = torch.from_numpy(answer).to(out.device)
    if metric == "accuracy":
        score = (out[:, 0] == target).float()
    else:
        score = torch.softmax(stats.answer_logits.float(), -1).gather(1, target[:, None])[:, 0]
    return score.cpu().numpy(), stats


def full_cache_scores(model: GPT, prompts: dict[str, Prompts], metric: str, n_up: int, batch_rows: int = 64):
    """Per-prompt full-cache scores, task -> (n,)."""
    return {
        task: np.concatenate(
            [
                prompt_scores(
                    model, p.tokens[i : i + batch_rows], p.answer[i : i + batch_rows], FullCache(n_up), metric
                )[0]
                for i in range(0, len(p.answer), batch_rows)
            ]
        )
        for task, p in prompts.items()
    }


def reference_scores(model: GPT, prompts: dict[str, Prompts], metric: str, n_up: int, batch_rows: int = 64):
    """Mean full-cache score per task on exactly these prompts (the normaliser)."""
    return mean_scores(full_cache_scores(model, prompts, metric, n_up, batch_rows))


def mean_scores(per_prompt: dict[str, np.ndarray]) -> dict[str, float]:
    ref = {}
    for task, s in per_prompt.items():
        ref[task] = float(s.mean())
        if ref[task] <= 0:
            raise ValueError(
                f"the full-cache model scores 0 on {task}: the normalised fitness is undefined "
                "(train the base model longer, or use metric='prob')"
            )
    return ref


def evaluate_population(
    model: GPT,
    scorer: Scorer,
    params: np.ndarray,
    prompts: dict[str, Prompts],
    reference: dict[str, float],
    n_up: int,
    norm: NormStats,
    metric: str = "accuracy",
    budget=None,
    batch_rows: int = 64,
    executor=None,
):
    """Fitness (P,), normalised score per task (P, tasks) and mean final cache fraction (P,) of each
    parameter vector in ``params`` (P, n_params), all members on the same prompts. Rows (member x
    prompt) go in batches of ``batch_rows``, through ``executor`` when given (one task per batch, so
    the numbers never depend on what runs them)."""
    from amicl.common.parallel import InProcessExecutor, run_tasks, share

    params = np.atleast_2d(np.asarray(params, dtype=np.float32))
    P = params.shape[0]
    batch_rows = check_int("batch_rows", batch_rows, lo=1)
    device = str(next(model.parameters()).device)
    if device != "cpu" and executor is not None and not isinstance(executor, InProcessExecutor):
        # Dask serialises tensors through NumPy: a GPU model travels as a CPU copy, put back by each task
        model = copy.deepcopy(model).cpu()
    shared = share(executor, model)
    tasks, task_of = [], []  # one executor task per batch, and the prompt task it belongs to
    for j, p in enumerate(prompts.values()):
        n = len(p.answer)
        member = np.repeat(np.arange(P), n)  # rows: member-major, every member sees every prompt
        prompt = np.tile(np.arange(n), P)
        for lo in range(0, P * n, batch_rows):
            rows = slice(lo, lo + batch_rows)
            idx = prompt[rows]
            tasks.append(
                (shared, device, scorer, params[member[rows]], p.tokens[idx], p.answer[idx], n_up, norm, metric, budget)
            )
            task_of.append(j)
    results = run_tasks(score_batch, tasks, executor, progress=False)
    per_task = np.zeros((P, len(prompts)))
    fraction = np.zeros((P, len(prompts)))
    for j, (task, p) in enumerate(prompts.items()):
        n = len(p.answer)
        mine = [r for k, r in zip(task_of, results) if k == j]
        scores = np.concatenate([r[0] for r in mine])
        fracs = np.concatenate([r[1] for r in mine])
        per_task[:, j] = scores.reshape(P, n).mean(1) / reference[task]
        fraction[:, j] = fracs.reshape(P, n).mean(1)
    return per_task.mean(1), per_task, fraction.mean(1)


def score_batch(model, device, scorer, params, tokens, answer, n_up, norm, metric, budget):
    """(scores, final cache fractions) of one batch of rows, each under its own NAMM parameter row, on
    ``device`` (a no-op move when the model is already there)."""
    model = model.to(device)
    policy = NAMM(scorer, params, n_up=n_up, budget=budget, norm=norm)
    scores, stats = prompt_scores(model, tokens, answer, policy, metric)
    return scores, stats.row_fraction


def gather_norm_stats(model: GPT, scorer: Scorer, prompts: dict[str, Prompts], n_up: int, batch_rows: int = 64):
    """NAMM's first full-cache pass: the all-zero scorer keeps everything while the per-bin feature
    statistics accumulate; they are then frozen."""
    norm = NormStats()
    zero = np.zeros(scorer.n_params, dtype=np.float32)
    for p in prompts.values():
        for i in range(0, len(p.answer), batch_rows):
            prompt_scores(
                model,
                p.tokens[i : i + batch_rows],
                p.answer[i : i + batch_rows],
                NAMM(scorer, zero, n_up=n_up, norm=norm),
                "prob",
            )
    norm.freeze()
    return norm

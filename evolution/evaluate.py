"""``amicl namm eval``: one policy at one or more budgets on every task, normalised by the full cache."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from amicl.results import read_json, run_metadata, write_csv, write_json, write_npz
from evolution.fitness import prompt_scores, reference_scores
from evolution.policies import NAMM, POLICIES
from evolution.spectrogram import NormStats
from evolution.tasks import sample

BATCH_ROWS = 32


def parse_budgets(policy: str, budget: str | None, fraction: str | None, match_dir: str | None, context: int) -> list:
    """Budgets to evaluate: token counts, fractions of the context, or a NAMM eval's per-layer cache."""
    given = [x for x in (budget, fraction, match_dir) if x]
    if len(given) > 1:
        raise ValueError("give only one of --budget, --budget-fraction and --match")
    if budget:
        out = [int(b) for b in budget.split(",")]
    elif fraction:
        fr = [float(f) for f in fraction.split(",")]
        if any(not 0 < f <= 1 for f in fr):
            raise ValueError(f"--budget-fraction values must be in (0, 1], got {fraction}")
        out = [max(1, round(f * context)) for f in fr]
    elif match_dir:
        layers = read_json(Path(match_dir) / "eval.json")["layer_fraction"]
        first = next(iter(layers.values()))
        out = [[max(1, round(f * context)) for f in first]]
    else:
        out = [None]
    if out == [None] and policy not in ("full", "namm"):
        raise ValueError(f"policy {policy} needs --budget, --budget-fraction or --match")
    if any(b is not None and not isinstance(b, list) and b < 1 for b in out):
        raise ValueError("budgets must be >= 1 token")
    return out


def load_namm(namm_dir: Path, n_up: int, budget):
    """The best mean of an evolve run, with its frozen normalisation statistics."""
    from evolution.evolve import EvolveConfig

    cfg = EvolveConfig(**read_json(namm_dir / "config.json")["evolve"])
    params = np.load(namm_dir / "best_params.npy")
    with open(namm_dir / "evolution.pkl", "rb") as f:
        norm = NormStats.from_dict(pickle.load(f)["norm"])
    return NAMM(cfg.make_scorer(), params, n_up=n_up, budget=budget, norm=norm)


def evaluate_policy(base_dir: Path, policy: str, namm_dir: Path | None, budgets: list, tasks: list[str], n_prompts: int,
                    context: int, n_up: int, metric: str, seed: int, out: Path) -> list[dict]:
    from evolution.base import load_base

    if policy == "namm" and namm_dir is None:
        raise ValueError("--policy namm needs --namm RUN")
    model = load_base(base_dir)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3,)))
    prompts = {t: sample(t, n_prompts, context, rng) for t in tasks}
    ref = reference_scores(model, prompts, metric, n_up, BATCH_ROWS)
    rows, layer_fraction, ages, example = [], {}, {}, None
    for budget in budgets:
        key = str(budget)
        per_layer, kept = [], []
        for task, p in prompts.items():
            scores, fracs = [], []
            for lo in range(0, n_prompts, BATCH_ROWS):
                pol = load_namm(namm_dir, n_up, budget) if policy == "namm" else POLICIES[policy](n_up, budget)
                s, stats = prompt_scores(model, p.tokens[lo : lo + BATCH_ROWS], p.answer[lo : lo + BATCH_ROWS], pol, metric)
                scores.append(s)
                fracs.append(stats.row_fraction)
                per_layer.append(stats.layer_fraction)
                kept.append(np.concatenate(stats.kept_ages))
                if policy == "namm" and example is None and pol.example is not None:
                    example = pol.example.numpy()
            rows.append({"policy": policy, "budget": key, "task": task, "score": float(np.concatenate(scores).mean()),
                         "full_score": ref[task], "normalised": float(np.concatenate(scores).mean() / ref[task]),
                         "cache_fraction": float(np.concatenate(fracs).mean()), "prompts": n_prompts,
                         "context": context})
        layer_fraction[key] = np.mean(per_layer, axis=0).tolist()
        ages[key] = np.histogram(np.concatenate(kept), bins=32, range=(0, context))[0].tolist()
    write_csv(out / "eval.csv", rows)
    write_json(out / "eval.json", {"layer_fraction": layer_fraction, "age_histogram": ages, "age_range": [0, context]})
    if example is not None:
        write_npz(out / "example_spectrogram.npz", spectrogram=example)
    write_json(out / "config.json", {"eval": {"policy": policy, "budgets": budgets, "tasks": tasks, "prompts": n_prompts,
                                              "context": context, "n_up": n_up, "metric": metric, "seed": seed,
                                              "base": str(base_dir), "namm": str(namm_dir) if namm_dir else None},
                                     **run_metadata()})
    return rows

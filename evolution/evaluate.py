"""``amicl namm eval``: one policy at one or more budgets on every task, normalised by the full cache."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from amicl.results import (
    read_csv,
    read_json,
    run_metadata,
    write_csv,
    write_json,
    write_npz,
)
from evolution.fitness import full_cache_scores, mean_scores, prompt_scores
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
    full = full_cache_scores(model, prompts, metric, n_up, BATCH_ROWS)
    ref = mean_scores(full)
    rows, per_prompt, layer_fraction, ages, example = [], [], {}, {}, None
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
            scores = np.concatenate(scores)
            per_prompt += [{"budget": key, "task": task, "prompt": i, "score": float(a), "full_score": float(b)}
                           for i, (a, b) in enumerate(zip(scores, full[task]))]
            rows.append({"policy": policy, "budget": key, "task": task, "score": float(scores.mean()),
                         "full_score": ref[task], "normalised": float(scores.mean() / ref[task]),
                         "cache_fraction": float(np.concatenate(fracs).mean()), "prompts": n_prompts,
                         "context": context})
        layer_fraction[key] = np.mean(per_layer, axis=0).tolist()
        ages[key] = np.histogram(np.concatenate(kept), bins=32, range=(0, context))[0].tolist()
    write_csv(out / "eval.csv", rows)
    write_csv(out / "prompt_scores.csv", per_prompt)
    write_json(out / "eval.json", {"layer_fraction": layer_fraction, "age_histogram": ages, "age_range": [0, context]})
    if example is not None:
        write_npz(out / "example_spectrogram.npz", spectrogram=example)
    write_json(out / "config.json", {"eval": {"policy": policy, "budgets": budgets, "tasks": tasks, "prompts": n_prompts,
                                              "context": context, "n_up": n_up, "metric": metric, "seed": seed,
                                              "base": str(base_dir), "namm": str(namm_dir) if namm_dir else None},
                                     **run_metadata()})
    return rows


def summary_table(eval_dirs: list[Path], trained: set[str], against: str = "namm", n_boot: int = 2000,
                  seed: int = 0) -> tuple[list[dict], str]:
    """Normalised score per task with percentile-bootstrap 95% intervals (prompts resampled, the
    policy's and the full cache's scores together), means over trained and held-out tasks, and where
    every eval ran on the same prompts, the paired difference of each mean from policy ``against``."""
    cells = {}  # (policy, budget) -> task -> (scores, full)
    fraction = {}
    for d in eval_dirs:
        if not (d / "prompt_scores.csv").exists():
            raise ValueError(f"{d} has no prompt_scores.csv (not an eval folder, or made before it was written)")
        policy = read_json(d / "config.json")["eval"]["policy"]
        for r in read_csv(d / "eval.csv"):
            fraction[policy, r["budget"]] = fraction.get((policy, r["budget"]), []) + [float(r["cache_fraction"])]
        for r in read_csv(d / "prompt_scores.csv"):
            s, f = cells.setdefault((policy, r["budget"]), {}).setdefault(r["task"], ([], []))
            s.append(float(r["score"]))
            f.append(float(r["full_score"]))
    tasks = sorted({t for v in cells.values() for t in v}, key=lambda t: (t not in trained, t))
    fulls = {t: {tuple(v[t][1]) for v in cells.values() if t in v} for t in tasks}
    paired = all(len(f) == 1 for f in fulls.values())
    rng = np.random.default_rng(seed)
    # Bootstrap indices per (task, prompt count): paired evals resample the same prompts together.
    idx = {(t, n): rng.integers(0, n, size=(n_boot, n)) for t in tasks for n in sorted({len(f) for f in fulls[t]})}
    boots, rows = {}, []
    for key, per_task in cells.items():
        row, b = {"policy": key[0], "budget": key[1], "cache_fraction": float(np.mean(fraction[key]))}, {}
        for t in tasks:
            if t not in per_task:
                continue
            s, f = (np.asarray(x) for x in per_task[t])
            i = idx[t, len(s)]
            b[t] = s[i].mean(1) / f[i].mean(1)
            row[t] = (s.mean() / f.mean(), *np.percentile(b[t], [2.5, 97.5]))
        for group, members in (("trained", [t for t in tasks if t in trained]), ("held_out", [t for t in tasks if t not in trained])):
            members = [t for t in members if t in b]
            if members:
                b[group] = np.mean([b[t] for t in members], axis=0)
                row[group] = (float(np.mean([row[t][0] for t in members])), *np.percentile(b[group], [2.5, 97.5]))
        boots[key] = b
        rows.append(row)
    refs = [(k, r) for k, r in zip(cells, rows) if k[0] == against]
    if paired and len(refs) == 1:
        (ref_key, ref_row), = refs
        for key, row in zip(cells, rows):
            for group in ("trained", "held_out"):
                if group in row and group in ref_row and key != ref_key:
                    d = boots[ref_key][group] - boots[key][group]
                    row[f"{against}_minus_this_{group}"] = (ref_row[group][0] - row[group][0],
                                                            *np.percentile(d, [2.5, 97.5]))
    cols = tasks + ["trained", "held_out"] + [c for c in (f"{against}_minus_this_trained", f"{against}_minus_this_held_out")
                                              if any(c in r for r in rows)]
    fmt = lambda v: f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]" if isinstance(v, tuple) else ""
    md = ["| policy | budget | cache kept | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
          "|---" * (len(cols) + 3) + "|"]
    shown = lambda b: "own (score < 0)" if b == "None" else f"{b} per layer" if b.isdigit() else f"per layer {b}"
    md += [f"| {r['policy']} | {shown(r['budget'])} | {r['cache_fraction']:.3f} | " + " | ".join(fmt(r.get(c)) for c in cols) + " |"
           for r in sorted(rows, key=lambda r: (r["policy"] != against, r["policy"], r["cache_fraction"]))]
    flat = [{k: (v[0] if isinstance(v, tuple) else v) for k, v in r.items()} |
            {f"{k}_ci": f"{v[1]:.4f},{v[2]:.4f}" for k, v in r.items() if isinstance(v, tuple)} for r in rows]
    return flat, "\n".join(md) + "\n"


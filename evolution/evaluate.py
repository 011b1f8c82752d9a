"""``amicl namm eval``: one policy at one or more budgets on every task, normalised by the full cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amicl.common.io import (
    DamagedFile,
    load_pickle,
    read_csv,
    read_json,
    run_metadata,
    write_csv,
    write_json,
    write_npz,
)
from amicl.common.runs import expect_run
from evolution.config import POLICIES, EvalConfig, EvolveConfig
from evolution.fitness import full_cache_scores, mean_scores, prompt_scores
from evolution.policies import FullCache
from evolution.spectrogram import NormStats
from evolution.tasks import sample


def parse_budgets(budget: list[int] | None, fraction: list[float] | None, match_dir: str | None, context: int) -> tuple:
    """Budgets to evaluate: token counts, fractions of the context, or a NAMM eval's per-layer cache."""
    given = [x for x in (budget, fraction, match_dir) if x]
    if len(given) > 1:
        raise ValueError("give only one of --budget, --budget-fraction and --match")
    if budget:
        return tuple(budget)
    if fraction:
        if any(not 0 < f <= 1 for f in fraction):
            raise ValueError(f"--budget-fraction values must be in (0, 1], got {fraction}")
        return tuple(max(1, round(f * context)) for f in fraction)
    if match_dir:
        layers = read_json(expect_run(match_dir, "namm-eval", "--match") / "eval.json")["layer_fraction"]
        first = next(iter(layers.values()))
        return ([max(1, round(f * context)) for f in first],)
    return (None,)


def load_namm(namm_dir: Path, n_up: int, budget):
    """The best mean of a namm-evolve run, with its frozen normalisation statistics, both read from its
    checkpoint (one atomic file, so they always belong to the same generation)."""
    namm_dir = expect_run(namm_dir, "namm-evolve", "--namm")
    cfg = EvolveConfig.from_dict(read_json(namm_dir / "config.json")["evolve"])
    state = load_pickle(namm_dir / "evolution.pkl")
    return POLICIES["namm"](
        cfg.make_scorer(),
        np.asarray(state["best"]["params"]),
        n_up=n_up,
        budget=budget,
        norm=NormStats.from_dict(state["norm"]),
    )


def make_policy(cfg: EvalConfig, budget, namm_dir: Path | None):
    if cfg.policy == "namm":
        return load_namm(namm_dir, cfg.n_up, budget)
    return POLICIES[cfg.policy](cfg.n_up, budget, **cfg.policy_options())


FULL_FROM_SAME = ("tasks", "prompts", "context", "seed", "metric", "n_up")  # what draws and scores the prompts


def reused_full_scores(source: Path, cfg: EvalConfig, base_dir: Path, model, prompts: dict) -> dict[str, np.ndarray]:
    """The full cache's per-prompt scores of an earlier eval (``--full-from``) instead of recomputing them: in
    a one-budget eval the full cache is about half the time. Refused (``ValueError``) unless the earlier eval
    drew the same prompts and scored them alike (FULL_FROM_SAME, and a base folder of the same name), and
    unless this base, rerun on the first batch of every task, gives its scores bit for bit."""
    source = expect_run(source, "namm-eval", "--full-from")
    then, now = read_json(source / "config.json")["eval"], cfg.to_dict()
    for key in FULL_FROM_SAME:
        if then.get(key) != now[key]:
            raise ValueError(f"--full-from {source}: its {key} is {then.get(key)!r}, this eval's is {now[key]!r}")
    if Path(then["base"]).name != Path(base_dir).name:
        raise ValueError(f"--full-from {source}: it was scored on base {then['base']}, this eval on {base_dir}")
    path = source / "prompt_scores.csv"
    rows = read_csv(path, ("budget", "task", "prompt", "full_score"))
    full = {t: np.full(cfg.prompts, np.nan) for t in cfg.tasks}
    try:
        for r in rows:
            if r["budget"] == rows[0]["budget"]:
                full[r["task"]][int(r["prompt"])] = float(r["full_score"])
    except (KeyError, IndexError, ValueError) as exc:
        raise DamagedFile(path, exc) from None
    if any(np.isnan(v).any() for v in full.values()):
        raise DamagedFile(path, hint="it lacks the full-cache score of some prompt")
    n = min(cfg.batch_rows, cfg.prompts)
    for task, p in prompts.items():
        again = np.asarray(prompt_scores(model, p.tokens[:n], p.answer[:n], FullCache(cfg.n_up), cfg.metric)[0])
        if not np.array_equal(again.astype(np.float64), full[task][:n]):
            raise ValueError(
                f"--full-from {source}: its full-cache scores of {task} differ from this base's on the first "
                f"{n} prompts: not the same base or prompts"
            )
        full[task] = full[task].astype(again.dtype)  # exact (the CSV holds them in full), and averaged alike
    return full


def run_config(cfg: EvalConfig, base_dir: Path, namm_dir: Path | None, full_from: Path | None) -> dict:
    """An eval's config.json: the options its policy reads (not another policy's), what it ran on, the run's
    metadata."""
    unused = {"batch_rows", "window", "kernel"} - set(cfg.policy_options())
    eval_dict = {k: v for k, v in cfg.to_dict().items() if k not in unused}
    eval_dict.update(base=str(base_dir), namm=str(namm_dir) if namm_dir else None)
    if full_from is not None:
        eval_dict["full_from"] = str(full_from)
    return {"kind": "namm-eval", "eval": eval_dict, **run_metadata()}


def evaluate_policy(
    base_dir: Path,
    cfg: EvalConfig,
    out: Path,
    namm_dir: Path | None = None,
    device: str = "cpu",
    full_from: Path | None = None,
) -> list[dict]:
    """Score ``cfg.policy`` at each budget on fresh prompts; writes eval.csv, prompt_scores.csv,
    eval.json (per-layer cache and kept-token ages) and config.json into ``out``. ``full_from``: an eval
    on the same base and prompts whose full-cache scores are reused (``reused_full_scores``)."""
    from evolution.base import load_base

    if (cfg.policy == "namm") != (namm_dir is not None):
        raise ValueError("--namm RUN goes with --policy namm, and only with it")
    model = load_base(base_dir, device)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(3,)))
    prompts = {t: sample(t, cfg.prompts, cfg.context, rng) for t in cfg.tasks}
    if full_from is not None:
        full = reused_full_scores(Path(full_from), cfg, base_dir, model, prompts)
    else:
        full = full_cache_scores(model, prompts, cfg.metric, cfg.n_up, cfg.batch_rows)
    ref = mean_scores(full)
    rows, per_prompt, layer_fraction, ages, example = [], [], {}, {}, None
    for budget in cfg.budgets:
        key = str(budget)
        policy = make_policy(cfg, budget, namm_dir)  # each rollout resets the policy's state
        per_layer, kept = [], []
        for task, p in prompts.items():
            scores, fracs = [], []
            for lo in range(0, cfg.prompts, cfg.batch_rows):
                hi = lo + cfg.batch_rows
                s, stats = prompt_scores(model, p.tokens[lo:hi], p.answer[lo:hi], policy, cfg.metric)
                scores.append(s)
                fracs.append(stats.row_fraction)
                per_layer.append(stats.layer_fraction)
                kept.append(np.concatenate(stats.kept_ages))
                if cfg.policy == "namm" and example is None and policy.example is not None:
                    example = policy.example.cpu().numpy()
            scores = np.concatenate(scores)
            per_prompt += [
                {"budget": key, "task": task, "prompt": i, "score": float(a), "full_score": float(b)}
                for i, (a, b) in enumerate(zip(scores, full[task]))
            ]
            rows.append(
                {
                    "policy": cfg.policy,
                    "budget": key,
                    "task": task,
                    "score": float(scores.mean()),
                    "full_score": ref[task],
                    "normalised": float(scores.mean() / ref[task]),
                    "cache_fraction": float(np.concatenate(fracs).mean()),
                    "prompts": cfg.prompts,
                    "context": cfg.context,
                }
            )
        layer_fraction[key] = np.mean(per_layer, axis=0).tolist()
        ages[key] = np.histogram(np.concatenate(kept), bins=32, range=(0, cfg.context))[0].tolist()
    write_csv(out / "eval.csv", rows)
    write_csv(out / "prompt_scores.csv", per_prompt)
    write_json(
        out / "eval.json", {"layer_fraction": layer_fraction, "age_histogram": ages, "age_range": [0, cfg.context]}
    )
    if example is not None:
        write_npz(out / "example_spectrogram.npz", spectrogram=example)
    write_json(out / "config.json", run_config(cfg, base_dir, namm_dir, full_from))
    return rows

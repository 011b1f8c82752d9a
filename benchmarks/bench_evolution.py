"""NAMM evolution costs, in one run: engine overhead per generation as a share of generation time,
batched population evaluation vs one member at a time, and KV memory saved at a cache fraction.

    python benchmarks/bench_evolution.py --out benchmarks/results/evolution.json [--namm RUN --base RUN]

Without --base the base model is the default NAMM testbed shape, randomly initialised (timings do not
depend on the weights). Without --namm the memory saving is measured for a BAM with random parameters.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from amicl.common.io import run_metadata, write_json
from evolution.config import BaseConfig
from evolution.engine import CMAEngine, EngineConfig
from evolution.fitness import evaluate_population, gather_norm_stats, reference_scores
from evolution.policies import NAMM
from evolution.rollout import rollout
from evolution.scorers import BAM
from evolution.tasks import sample
from transformers_mini.core.model import GPT


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results/evolution.json")
    p.add_argument("--base", default=None)
    p.add_argument("--namm", default=None)
    p.add_argument("--popsize", type=int, default=16)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--n-up", type=int, default=64)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.base:
        from evolution.base import load_base

        model = load_base(a.base)
    else:
        torch.manual_seed(0)
        model = GPT(BaseConfig().model).eval()  # the shape train-base builds by default
    scorer = BAM()
    rng = np.random.default_rng(0)
    prompts = {"kv_retrieval": sample("kv_retrieval", a.prompts, a.context, rng)}
    ref = reference_scores(model, prompts, "prob", a.n_up)
    norm = gather_norm_stats(model, scorer, prompts, a.n_up)

    # 1. engine overhead: ask + tell vs a whole generation (separable CMA-ES, 4,172 parameters)
    engine = CMAEngine(EngineConfig(scorer.n_params, a.popsize, separable=True))
    eng_t, gen_t = 0.0, 0.0
    for _ in range(a.generations):
        X, t_ask = timed(engine.ask)
        (fit, _, _), t_eval = timed(
            lambda X=X: evaluate_population(
                model, scorer, X, prompts, ref, a.n_up, norm, "prob", batch_rows=a.popsize * a.prompts
            )
        )
        _, t_tell = timed(lambda X=X, fit=fit: engine.tell(X, fit))
        eng_t += t_ask + t_tell
        gen_t += t_ask + t_eval + t_tell
    full_engine = CMAEngine(EngineConfig(scorer.n_params, a.popsize, separable=False))
    Xf, t_full_ask = timed(full_engine.ask)
    _, t_full_tell = timed(lambda: full_engine.tell(Xf, np.zeros(len(Xf))))

    # 2. batched population evaluation vs one member at a time (same prompts, same parameters)
    X = engine.ask()
    _, t_batched = timed(
        lambda: evaluate_population(
            model, scorer, X, prompts, ref, a.n_up, norm, "prob", batch_rows=a.popsize * a.prompts
        )
    )
    _, t_single = timed(
        lambda: [
            evaluate_population(model, scorer, X[i], prompts, ref, a.n_up, norm, "prob", batch_rows=a.prompts)
            for i in range(len(X))
        ]
    )
    by_rows = {}
    for rows in sorted({a.prompts, 2 * a.prompts, 4 * a.prompts, a.popsize * a.prompts}):
        by_rows[rows] = timed(
            lambda rows=rows: evaluate_population(model, scorer, X, prompts, ref, a.n_up, norm, "prob", batch_rows=rows)
        )[1]

    # 3. the BAM scorer at the evolved context: torch's fused attention vs the plain masked softmax
    g = torch.Generator().manual_seed(0)
    Xs = torch.randn(a.popsize, model.config.n_kv_head, a.context, scorer.features, generator=g)
    valid = torch.rand(Xs.shape[:3], generator=g) > 0.1
    params = torch.randn(a.popsize, scorer.n_params, generator=g) * 0.065
    plain = BAM(reference=True)
    bam_t = {
        name: min(timed(lambda s=s: s.score(params, Xs, valid))[1] for _ in range(3))
        for name, s in (("fused", scorer), ("reference", plain))
    }

    # 4. KV memory at a NAMM's cache fraction vs the full cache, on the same prompts (the NAMM's context)
    kv_context = a.context
    if a.namm:
        from amicl.common.io import read_json
        from evolution.evaluate import load_namm

        policy = load_namm(Path(a.namm), a.n_up, None)
        kv_context = read_json(Path(a.namm) / "config.json")["evolve"]["context"]
        source = a.namm
    else:
        policy = NAMM(scorer, np.random.default_rng(1).normal(0, 0.5, scorer.n_params), n_up=a.n_up, norm=norm)
        source = "BAM with random parameters (no evolved NAMM given)"
    tokens = torch.from_numpy(sample("kv_retrieval", a.prompts, kv_context, rng).tokens)
    _, full = rollout(model, tokens, 1)
    _, managed = rollout(model, tokens, 1, policy)
    result = {
        "benchmark": "NAMM evolution costs",
        "threads": a.threads,
        "popsize": a.popsize,
        "prompts": a.prompts,
        "context": a.context,
        "n_up": a.n_up,
        "n_params": scorer.n_params,
        "engine_seconds_per_generation_separable": eng_t / a.generations,
        "generation_seconds": gen_t / a.generations,
        "engine_share_of_generation": eng_t / gen_t,
        "full_cma_ask_tell_seconds": t_full_ask + t_full_tell,
        "population_eval_batched_seconds": t_batched,
        "population_eval_one_by_one_seconds": t_single,
        "batched_vs_one_by_one": t_single / t_batched,
        "population_eval_seconds_by_batch_rows": by_rows,
        "bam_score_seconds": bam_t,
        "bam_fused_vs_reference": bam_t["reference"] / bam_t["fused"],
        "kv_context": kv_context,
        "kv_bytes_full": full.final_bytes,
        "kv_bytes_managed": managed.final_bytes,
        "kv_alive_fraction_managed": float(managed.row_fraction.mean()),
        "kv_bytes_saved_fraction": 1 - managed.final_bytes / full.final_bytes,
        "memory_policy": source,
        "targets": {"engine_share_of_generation": "< 0.05", "batched_vs_one_by_one": ">= 3"},
        **run_metadata(),
    }
    write_json(a.out, result)
    print(
        f"engine {result['engine_share_of_generation']:.2%} of a generation ({gen_t / a.generations:.1f} s); "
        f"full CMA ask+tell {result['full_cma_ask_tell_seconds']:.2f} s | BAM fused "
        f"{result['bam_fused_vs_reference']:.1f}x plain | batched population "
        f"{result['batched_vs_one_by_one']:.2f}x one-by-one | KV bytes {managed.final_bytes:,} vs {full.final_bytes:,} "
        f"({result['kv_bytes_saved_fraction']:.1%} saved at alive fraction {result['kv_alive_fraction_managed']:.2f})"
    )


if __name__ == "__main__":
    main()

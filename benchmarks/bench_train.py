"""Training throughput of the ICL toy: one seed, S seeds batched as one ensemble, S seeds in sequence;
and the share of step time spent generating data. One run, same machine, same settings.

    python benchmarks/bench_train.py --out benchmarks/results/train.json

Throughput is counted in seed-steps per second (one SGD step of one seed's model). Each number is the
best of --repeats windows of --steps steps after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from amicl.common.io import run_metadata, write_json
from amicl.task import TaskConfig
from transformers_mini.config import ToyConfig, TrainConfig, parse_arm
from transformers_mini.run import Run
from transformers_mini.train import Trainer


def trainer(seeds: list[int], arm: str = "none") -> Trainer:
    task = TaskConfig()
    cfg = ToyConfig(stream=parse_arm(arm))
    run = Run({arm: cfg}, seeds, task, TrainConfig(eval_size=10, eval_every=10, checkpoint_every=10))
    return Trainer(run, "cpu")


def arm_costs(arms: list[str], steps: int, repeats: int) -> dict[str, float]:
    """Seconds per training step of one seed's model in each arm, measured round-robin in one run so that
    a change of machine load affects every arm alike."""
    trainers = {a: trainer([0], a) for a in arms}
    best = {a: float("inf") for a in arms}
    for t in trainers.values():
        t.train_step()  # warm-up
    for _ in range(repeats):
        for a, t in trainers.items():
            start = time.perf_counter()
            for _ in range(steps):
                t.train_step()
            best[a] = min(best[a], (time.perf_counter() - start) / steps)
    return best


def best_rate(step_fn, steps: int, repeats: int, per_call: int) -> float:
    step_fn()  # warm-up
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            step_fn()
        best = max(best, steps * per_call / (time.perf_counter() - t))
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results/train.json")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--arms", default="none,V,K,Q,V:detach,V:lam=0.5", help="Arms whose step cost is compared.")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    S = a.seeds

    one = trainer([0])
    batched = trainer(list(range(S)))
    singles = [trainer([s]) for s in range(S)]
    r_one = best_rate(one.train_step, a.steps, a.repeats, 1)
    r_batched = best_rate(batched.train_step, a.steps, a.repeats, S)

    def sequential():
        for t in singles:
            t.train_step()

    r_seq = best_rate(sequential, max(1, a.steps // S), a.repeats, S)
    # data generation alone, as train_step does it (numpy generation + tensor conversion)
    r_data_one = best_rate(one._batch, a.steps, a.repeats, 1)
    r_data_batched = best_rate(batched._batch, a.steps, a.repeats, 1)
    costs = arm_costs(a.arms.split(","), a.steps, a.repeats)
    result = {
        "benchmark": "ICL toy training throughput, seed-steps/s (higher is better)",
        "arm_seconds_per_step": costs,
        "arm_cost_vs_none": {arm: c / costs["none"] for arm, c in costs.items()} if "none" in costs else {},
        "threads": a.threads,
        "cpu_count": os.cpu_count(),
        "seeds": S,
        "batch": 128,
        "one_seed_steps_per_s": r_one,
        "batched_seed_steps_per_s": r_batched,
        "sequential_seed_steps_per_s": r_seq,
        "batched_vs_sequential": r_batched / r_seq,
        "data_share_of_step_one_seed": r_one / r_data_one,
        "data_share_of_step_batched": (r_batched / S) / r_data_batched,
        "targets": {"batched_vs_sequential": ">= 2 (S=8)", "data_share_of_step_one_seed": "< 0.10"},
        **run_metadata(),
    }
    write_json(a.out, result)
    print(
        f"one seed {r_one:.1f} steps/s | {S} batched {r_batched:.1f} seed-steps/s | {S} sequential {r_seq:.1f} "
        f"seed-steps/s | batched/sequential {r_batched / r_seq:.2f}x | "
        f"data share {result['data_share_of_step_one_seed']:.1%}"
        f" (one seed), {result['data_share_of_step_batched']:.1%} (batched)"
    )
    print("step cost vs none: " + ", ".join(f"{k} {v:.2f}x" for k, v in result["arm_cost_vs_none"].items()))


if __name__ == "__main__":
    main()

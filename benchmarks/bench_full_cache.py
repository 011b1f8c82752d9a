"""The full cache's share of a one-budget ``namm eval``: what ``--full-from`` saves. Times the full cache's
rollouts and each policy's on the same prompts (one thread, the frozen base, 1,024-token context).

    python benchmarks/bench_full_cache.py --out benchmarks/results/full_cache_share.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from amicl.common.artifacts import resolve
from amicl.common.io import run_metadata, write_json
from evolution.base import load_base
from evolution.config import POLICIES
from evolution.fitness import full_cache_scores, prompt_scores
from evolution.tasks import sample


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64, help="Prompts per task.")
    ap.add_argument("--policies", default="keydiff,snapkv,h2o")
    ap.add_argument("--out", default="benchmarks/results/full_cache_share.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = load_base(resolve("builtin:namm-base"), "cpu")
    rng = np.random.default_rng(0)
    prompts = {t: sample(t, a.prompts, 1024, rng) for t in ("kv_retrieval", "needle")}
    start = time.perf_counter()
    full_cache_scores(model, prompts, "accuracy", 64, 32)
    seconds = {"full": time.perf_counter() - start}
    for name in a.policies.split(","):
        policy, start = POLICIES[name](64, 128), time.perf_counter()
        for p in prompts.values():
            for lo in range(0, a.prompts, 32):
                prompt_scores(model, p.tokens[lo : lo + 32], p.answer[lo : lo + 32], policy, "accuracy")
        seconds[name] = time.perf_counter() - start
    share = {k: seconds["full"] / (seconds["full"] + v) for k, v in seconds.items() if k != "full"}
    write_json(a.out, {"benchmark": __doc__.splitlines()[0], "prompts_per_task": a.prompts, "budget": 128,
                       "seconds": seconds, "full_share_of_one_budget_eval": share, **run_metadata()})  # fmt: skip
    print("full cache's share of a one-budget eval: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))


if __name__ == "__main__":
    main()

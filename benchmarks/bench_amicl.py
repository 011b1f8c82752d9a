"""Episodes per second of AMICL retrieval: numba kernel vs vectorised NumPy reference vs a per-trial
Python loop like the published notebook's, in one run, with data generation timed separately.

    python benchmarks/bench_amicl.py --out benchmarks/results/amicl.json

Each timing repeats its call until at least --min-seconds have passed and reports the best rate of
--repeats such windows. The per-trial loop is timed on a subset of the batch (it is the slow one).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from amicl.common.io import run_metadata, write_json
from amicl.memory import reference
from amicl.memory.hopfield import MemoryConfig, retrieve
from amicl.task import EpisodeConfig, sample_episodes


def rate(fn, n_items: int, min_seconds: float, repeats: int) -> float:
    """Best items/second over ``repeats`` windows of at least ``min_seconds`` each."""
    best = 0.0
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, calls * n_items / elapsed)
    return best


def bench(D: int, T: int, batch: int, loop_n: int, min_seconds: float, repeats: int) -> dict:
    cfg = EpisodeConfig(D=D, T=T, K=512)
    rng = np.random.default_rng(0)
    ep = sample_episodes(cfg, batch, rng)
    mem = MemoryConfig(a=2.0)
    retrieve(ep, mem)  # compile / load the cached kernel outside the timing
    args = (ep.tokens, ep.token_labels, ep.decoy, None, 2.0, "dot", "argmax", 1.0, 2.0, 0, 1e-8)

    def loop():
        for e in range(loop_n):
            reference.retrieve_single_loop(ep.tokens[e], ep.token_labels[e], ep.decoy[e], 2.0)

    out = {
        "D": D,
        "T": T,
        "batch": batch,
        "generate_episodes_per_s": rate(lambda: sample_episodes(cfg, batch, rng), batch, min_seconds, repeats),
        "numba_episodes_per_s": rate(lambda: retrieve(ep, mem), batch, min_seconds, repeats),
        "numpy_vectorised_episodes_per_s": rate(lambda: reference.retrieve(*args), batch, min_seconds, repeats),
        "per_trial_loop_episodes_per_s": rate(loop, loop_n, min_seconds, repeats),
    }
    out["numba_vs_loop"] = out["numba_episodes_per_s"] / out["per_trial_loop_episodes_per_s"]
    out["numba_vs_numpy"] = out["numba_episodes_per_s"] / out["numpy_vectorised_episodes_per_s"]
    acc = [retrieve(ep, mem).accuracy(ep.target), retrieve(ep, mem, backend="numpy").accuracy(ep.target)]
    out["accuracy_numba_numpy"] = acc
    return out


def end_to_end(D: int, T: int, trials: int, threads: int, min_seconds: float, repeats: int) -> dict:
    """Generation + retrieval, episodes/s: the streaming engine, today's materialising path (chunks of 250
    as a sweep runs them), and a notebook-style loop that redraws all K class vectors every trial; beside
    the RNG limit measured in the same run: NumPy's normals/s x threads / normals per episode."""
    import numba

    from amicl.memory.kernels import stream_normals_kernel
    from amicl.memory.streaming import _tables, score_stream

    numba.set_num_threads(threads)
    cfg, mem = EpisodeConfig(D=D, T=T, K=512), MemoryConfig(a=2.0)
    P = T // 2 - 1
    normals_per_episode = (3 * P + 2) * D  # as sample_episodes draws them (means and labels for every pair)
    rng = np.random.default_rng(0)
    score_stream(cfg, mem, 100, seed=0)  # compile / load outside the timing
    numpy_normals = rate(lambda: rng.standard_normal(1_000_000), 1_000_000, min_seconds, repeats)
    stream_normals_kernel(np.uint64(1), 10, *_tables())
    own_normals = rate(
        lambda: stream_normals_kernel(np.uint64(1), 1_000_000, *_tables()), 1_000_000, min_seconds, repeats
    )

    def materialise():
        for _ in range(trials // 250):
            ep = sample_episodes(cfg, 250, rng)
            retrieve(ep, mem).correct(ep.target)

    def notebook(n=200):  # the published notebook: every trial draws K means and K labels, then loops
        for _ in range(n):
            mu = rng.standard_normal((512, D)) / np.sqrt(D)
            lam = rng.standard_normal((512, D)) / np.sqrt(D)
            cls = rng.integers(1, 512, P)
            x = np.zeros((T, D))
            x[0 : 2 * P : 2], x[1 : 2 * P : 2] = mu[cls], lam[cls]
            x[2 * P] = mu[cls[rng.integers(P)]]
            labels = np.full(T, -1)
            labels[1 : 2 * P : 2] = cls
            reference.retrieve_single_loop(x, labels, rng.standard_normal(D) / np.sqrt(D), 2.0)

    out = {
        "D": D,
        "T": T,
        "threads": threads,
        "trials": trials,
        "stream_episodes_per_s": rate(lambda: score_stream(cfg, mem, trials, seed=1), trials, min_seconds, repeats),
        "materialise_episodes_per_s": rate(materialise, trials // 250 * 250, min_seconds, repeats),
        "notebook_loop_episodes_per_s": rate(notebook, 200, min_seconds, repeats),
        "numpy_normals_per_s_per_thread": numpy_normals,
        "stream_normals_per_s_per_thread": own_normals,
        "normals_per_episode": normals_per_episode,
    }
    out["rng_limit_episodes_per_s"] = numpy_normals * threads / normals_per_episode
    out["stream_vs_rng_limit"] = out["stream_episodes_per_s"] / out["rng_limit_episodes_per_s"]
    out["stream_vs_materialise"] = out["stream_episodes_per_s"] / out["materialise_episodes_per_s"]
    out["stream_vs_notebook_loop"] = out["stream_episodes_per_s"] / out["notebook_loop_episodes_per_s"]
    return out


def peak_memory_mib(D: int, T: int, trials: int, engine: str) -> float:
    """Peak resident memory of ``amicl memory run`` in a fresh process, MiB (its own ru_maxrss at exit)."""
    import subprocess
    import sys

    code = (
        "import resource, sys; from amicl.cli import amicl; "
        "from click.testing import CliRunner; "
        f"r = CliRunner().invoke(amicl, ['memory', 'run', '--D', '{D}', '--T', '{T}', '--trials', '{trials}', "
        f"'--engine', '{engine}']); assert r.exit_code == 0, r.output; "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results/amicl.json")
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="Threads for the end-to-end case [default: all].")
    a = p.parse_args()
    from numba import get_num_threads

    threads = a.threads or get_num_threads()
    # memory first, each in a fresh process that reports its own peak
    peak_memory_mib(10, 4, 1, "stream")  # warm-up: compiling and caching the kernels peaks higher
    peaks = {
        "baseline_D10_T4_1_trial": peak_memory_mib(10, 4, 1, "stream"),
        **{f"stream_D1000_T1000_{n}_trials": peak_memory_mib(1000, 1000, n, "stream") for n in (200, 1000)},
        "materialise_D1000_T1000_200_trials": peak_memory_mib(1000, 1000, 200, "materialise"),
    }
    end = end_to_end(100, 20, 100_000, threads, a.min_seconds, a.repeats)
    cases = [bench(100, 20, 20000, 2000, a.min_seconds, a.repeats), bench(1000, 1000, 64, 8, a.min_seconds, a.repeats)]
    result = {
        "benchmark": "amicl retrieval, episodes/s (higher is better)",
        "targets": {"numba_vs_loop": ">= 50", "numba_vs_numpy": ">= 3"},
        "numba_threads": get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor(),
        "cases": cases,
        "end_to_end": end,
        "peak_memory_mib": peaks,
        "end_to_end_targets": {
            "stream_vs_rng_limit": ">= 0.8 (D=100, T=20, 2 threads)",
            "peak_memory_mib at D=T=1000, 100,000 trials": "< 200 (constant in trials)",
        },
        **run_metadata(),
    }
    write_json(a.out, result)
    for c in cases:
        print(
            f"D={c['D']:5d} T={c['T']:5d}  numba {c['numba_episodes_per_s']:12.0f}/s  "
            f"numpy {c['numpy_vectorised_episodes_per_s']:11.0f}/s  loop {c['per_trial_loop_episodes_per_s']:9.0f}/s  "
            f"gen {c['generate_episodes_per_s']:9.0f}/s  numba/loop {c['numba_vs_loop']:6.1f}x  "
            f"numba/numpy {c['numba_vs_numpy']:5.1f}x"
        )
    print(
        f"end to end D=100 T=20, {end['threads']} thread(s): stream {end['stream_episodes_per_s']:.0f}/s = "
        f"{end['stream_vs_rng_limit']:.2f} x the RNG limit ({end['rng_limit_episodes_per_s']:.0f}/s), "
        f"{end['stream_vs_materialise']:.1f} x materialise, {end['stream_vs_notebook_loop']:.0f} x the notebook loop; "
        f"peak MiB at D=T=1000: {peaks}"
    )


if __name__ == "__main__":
    main()

"""Benchmark tables generated from the JSON files the benchmarks write (``benchmarks/results/*.json``), so a
speed quoted in a document cannot drift from its measurement. Torch-free."""

from __future__ import annotations

from pathlib import Path

from amicl.common.io import read_json


def amicl_retrieval(root: Path, path: str = "benchmarks/results/amicl.json") -> list[str]:
    """``bench_amicl.py``: retrieval alone per (D, T), numba against the NumPy reference and the
    notebook-style loop, side by side in one run."""
    b = read_json(Path(root) / path)
    head = f"| D, T | numba ({b['numba_threads']} threads) | NumPy reference, vectorised | per-trial loop (notebook "
    lines = [head + "style) | numba / loop | numba / NumPy | generation (NumPy) |", "|---|---|---|---|---|---|---|"]
    for c in b["cases"]:
        rates = [
            c[k] for k in ("numba_episodes_per_s", "numpy_vectorised_episodes_per_s", "per_trial_loop_episodes_per_s")
        ]
        cells = [f"{_sig(r)}/s" for r in rates] + [f"{c['numba_vs_loop']:.1f}×", f"{c['numba_vs_numpy']:.1f}×"]
        lines.append(f"| {c['D']}, {c['T']} | " + " | ".join(cells) + f" | {_sig(c['generate_episodes_per_s'])}/s |")
    return lines


def amicl_end_to_end(root: Path, path: str = "benchmarks/results/amicl.json") -> list[str]:
    """``bench_amicl.py``: generation + retrieval, the streaming engine against the materialising path, the
    notebook-style loop and the limit NumPy's random generator sets."""
    e = read_json(Path(root) / path)["end_to_end"]
    return [
        "| streaming engine | materialising path | notebook-style loop | RNG limit: NumPy's normals/s × 2 / "
        f"{e['normals_per_episode']:,} | engine / RNG limit |",
        "|---|---|---|---|---|",
        f"| {_sig(e['stream_episodes_per_s'])}/s | {_sig(e['materialise_episodes_per_s'])}/s "
        f"({e['stream_vs_materialise']:.1f}× slower) | {_sig(e['notebook_loop_episodes_per_s'])}/s "
        f"({e['stream_vs_notebook_loop']:.0f}× slower) | {_sig(e['rng_limit_episodes_per_s'])}/s | "
        f"{e['stream_vs_rng_limit']:.2f}× |",
    ]


def toy_training(root: Path, path: str = "benchmarks/results/train.json") -> list[str]:
    """``bench_train.py``: ICL toy training throughput, one seed against S seeds batched and in sequence."""
    b = read_json(Path(root) / path)
    return [
        f"| one seed | {b['seeds']} seeds batched (one ensemble) | {b['seeds']} seeds in sequence | batched / "
        "sequential | data generation share of a step (one seed / batched) |",
        "|---|---|---|---|---|",
        f"| {b['one_seed_steps_per_s']:.1f} steps/s | {b['batched_seed_steps_per_s']:.1f} seed-steps/s | "
        f"{b['sequential_seed_steps_per_s']:.1f} seed-steps/s | {b['batched_vs_sequential']:.2f}× | "
        f"{b['data_share_of_step_one_seed']:.1%} / {b['data_share_of_step_batched']:.1%} |",
    ]


def _sig(x: float) -> str:
    """Three significant figures, with thousands separators from 100 up (1,040,000; 3,470; 296; 45.9)."""
    from math import floor, log10

    return f"{round(x, 2 - floor(log10(x))):,.0f}" if x >= 100 else f"{x:.3g}"

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


def toy_costs(root: Path, *paths: str) -> list[str]:
    """``bench_train.py``, per run (thread count): one seed's rate, the toy's and the NAMM base GPT's achieved
    FLOP/s as a share of a float32 matmul of the step's dominant shape on the same threads, and each
    stream arm's step time against none's (one seed, same run)."""
    lines = ["| threads | one seed | toy, share of matmul (one seed / batched) | NAMM base GPT step, share of "
             "matmul | step time against none |", "|---|---|---|---|---|"]  # fmt: skip
    for path in paths:
        b = read_json(Path(root) / path)
        t, g = b["toy_flops"], b["gpt_flops"]
        rates = f"{g['achieved_flops_per_s'] / 1e9:.1f} of {g['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s"
        gpt = f"{g['share_of_matmul']:.0%} ({rates})"
        arms = ", ".join(f"{a} {c:.2f}×" for a, c in b["arm_cost_vs_none"].items() if a != "none")
        toy = f"{t['share_of_matmul_one_seed']:.0%} / {t['share_of_matmul_batched']:.0%}"
        lines.append(f"| {b['threads']} | {b['one_seed_steps_per_s']:.1f} steps/s | {toy} | {gpt} | {arms} |")
    return lines


def plain_step(root: Path, *paths: str) -> list[str]:
    """``bench_train.py`` and ``bench_lm.py``: each trainer's step against the plain reference step (same
    batches, loss and update, none of the machinery), timed round-robin in the same run; the GPU path's
    additions must leave the CPU at >= 0.95 of it."""
    lines = ["| benchmark | device, threads | step | trainer / plain (steps/s) | ratio |", "|---|---|---|---|---|"]
    for path in paths:
        b = read_json(Path(root) / path)
        where = f"{b['device']}, {b['threads']}"
        if "trainer_vs_plain_step" in b:  # the toy: one seed and the batched ensemble
            for case in ("one_seed", "batched"):
                r = b["trainer_vs_plain_step"][case]
                per = 1 if case == "one_seed" else b["seeds"]
                rates = f"{r['trainer'] / per:.1f} / {r['plain'] / per:.1f}"
                name = "one seed" if case == "one_seed" else f"{b['seeds']} seeds batched"
                lines.append(f"| ICL toy | {where} | {name} | {rates} | {r['ratio']:.3f} |")
        else:  # the language model, per arm
            for arm, r in b["arms"].items():
                rates = f"{r['steps_per_s']:.2f} / {r['plain_steps_per_s']:.2f}"
                lines.append(f"| LM `{b['model']}`, batch {b['batch']} | {where} | {arm} | {rates} | "
                             f"{r['trainer_vs_plain_step']:.3f} |")  # fmt: skip
    return lines


def _sig(x: float) -> str:
    """Three significant figures, with thousands separators from 100 up (1,040,000; 3,470; 296; 45.9)."""
    from math import floor, log10

    return f"{round(x, 2 - floor(log10(x))):,.0f}" if x >= 100 else f"{x:.3g}"


def devices(root: Path, folder: str = "benchmarks/results") -> list[str]:
    """CPU against GPU, each figure from the JSON the benchmark wrote on that machine (``lm.json`` /
    ``lm_cuda.json``, ``train.json`` / ``train_cuda.json``, ``lm_paper8m_cuda.json``)."""
    d = Path(root) / folder
    lm, lm_gpu, big = (read_json(d / f) for f in ("lm.json", "lm_cuda.json", "lm_paper8m_cuda.json"))
    train, train_gpu = read_json(d / "train.json"), read_json(d / "train_cuda.json")

    def tok(b, arm):
        return b["arms"][arm]["tokens_per_s"]

    def pair(cpu, gpu):
        return f"{_sig(cpu)} | {_sig(gpu)} | {gpu / cpu:.1f}×"

    lines = [
        f"| benchmark | CPU ({lm['threads']} threads) | GPU ({lm_gpu.get('device', 'cuda')}) | ratio |",
        "|---|---|---|---|",
    ]
    lm_cells = [f"{_sig(tok(b, 'none'))} / {_sig(tok(b, 'V'))}" for b in (lm, lm_gpu)]
    ratios = " / ".join(f"{tok(lm_gpu, a) / tok(lm, a):.1f}×" for a in ("none", "V"))
    lines.append(
        f"| LM, `{lm['model']}` shape, batch {lm['batch']}, tokens/s (none / V) | {' | '.join(lm_cells)} | {ratios} |"
    )
    shares = " / ".join(f"{big['arms'][a]['share_of_matmul']:.0%}" for a in ("none", "V"))
    lines.append(f"| LM, `{big['model']}` shape, batch {big['batch']}, tokens/s (none / V) | not run | "
                 f"{_sig(tok(big, 'none'))} / {_sig(tok(big, 'V'))} ({shares} of float32 matmul) | |")  # fmt: skip
    gpt = pair(train["gpt_flops"]["steps_per_s"], train_gpu["gpt_flops"]["steps_per_s"])
    lines.append(f"| NAMM base GPT step (256 tokens, batch 8), steps/s | {gpt} |")
    toy = pair(train["batched_seed_steps_per_s"], train_gpu["batched_seed_steps_per_s"])
    lines.append(f"| ICL toy, {train['seeds']} seeds batched, seed-steps/s | {toy} |")
    return lines

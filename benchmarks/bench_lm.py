"""Language-model training throughput, baseline and V-pass side by side: tokens per second and achieved
FLOP/s as a share of this machine's measured matmul throughput, in one run.

    python benchmarks/bench_lm.py --threads 2 --out benchmarks/results/lm.json

Tokens are the non-padding targets of a step's story batch; FLOPs use the usual 6 N per token plus
attention's 6 n_layer T d (Kaplan et al. 2020), with T the batch's padded length.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import bench_train
import numpy as np
import torch
from bench_train import gpt_step_flops, interleaved_rates, matmul_peak

from amicl.common.io import run_metadata, write_json
from transformers_mini.lm.config import LMConfig
from transformers_mini.lm.train import LMTrainer, lm_loss, pad_batch


def arm(stream: str, model: str, batch: int, steps: int, repeats: int, folder: Path) -> dict:
    cfg = LMConfig(model=model, stream=stream, stories=5000, batch=batch, steps=10**6, precision=bench_train.PRECISION)
    tr = LMTrainer(cfg, folder, bench_train.DEVICE)
    # the batches the timed steps will draw: tokens and padded length, from a copy of the generator
    rng = np.random.default_rng()
    rng.bit_generator.state = tr.rng.bit_generator.state
    sizes = [pad_batch([tr.train[i] for i in rng.integers(len(tr.train), size=batch)], tr.eos).shape for _ in range(20)]
    T = float(np.mean([s[1] for s in sizes]))
    tokens = batch * float(np.mean([len(s) - 1 for s in tr.train]))  # targets per step, on average

    def plain():  # the reference step: same batches, loss and optimiser, none of the trainer's machinery
        idx = tr.rng.integers(len(tr.train), size=batch)
        b = torch.from_numpy(pad_batch([tr.train[i] for i in idx], tr.eos)).to(tr.device)
        loss = lm_loss(tr.model, b, tr.eos)
        tr.opt.zero_grad(set_to_none=True)
        loss.backward()
        tr.opt.step()

    # both replay the same batches (a step's time follows its batch's padded length)
    start = tr.rng.bit_generator.state

    def replay():
        tr.rng.bit_generator.state = start

    rates = interleaved_rates({"trainer": tr.train_step, "plain": plain}, steps, repeats, 1, before=replay)
    steps_per_s = rates["trainer"]
    m = tr.model.config
    n_non = tr.model.n_params() - m.vocab_size * m.d_model - m.block_size * m.d_model
    flops = gpt_step_flops(n_non, m.n_layer, m.d_model, int(T), batch) + 6 * batch * T * m.d_model * m.vocab_size
    peak = matmul_peak(batch * int(T), m.d_model, m.mlp_ratio * m.d_model, 1)
    return {
        "steps_per_s": steps_per_s,
        "tokens_per_s": steps_per_s * tokens,
        "padded_length": T,
        "flops_per_step": flops,
        "achieved_flops_per_s": flops * steps_per_s,
        "matmul_flops_per_s": peak,
        "share_of_matmul": flops * steps_per_s / peak,
        "parameters": tr.model.n_params(),
        "trainer_vs_plain_step": rates["trainer"] / rates["plain"],
        "plain_steps_per_s": rates["plain"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default="benchmarks/results/lm.json")
    ap.add_argument("--device", default="cpu", help="cpu or cuda.")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"), help="Arithmetic of the steps.")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    bench_train.set_device(a.device)
    bench_train.PRECISION = a.precision
    with tempfile.TemporaryDirectory() as tmp:
        arms = {s: arm(s, a.model, a.batch, a.steps, a.repeats, Path(tmp) / s) for s in ("none", "V")}
    peaks = bench_train.gemm_peaks()
    for r in arms.values():
        r["mfu"] = r["achieved_flops_per_s"] / peaks[a.precision]
    result = {
        "model": a.model,
        "precision": a.precision,
        "gemm_peak_flops_per_s": peaks,
        "targets": {
            "mfu": ">= 0.30 of the bf16 GEMM peak for paper-8m in bf16 on an H200 (>= 1.5M tokens/s)",
            "trainer_vs_plain_step": ">= 0.95 on the CPU (the GPU path costs the CPU nothing)",
        },
        "batch": a.batch,
        "threads": a.threads,
        "cpu_count": os.cpu_count(),
        "device": bench_train.device_name(),
        "arms": arms,
        "v_time_per_step_vs_none": arms["none"]["steps_per_s"] / arms["V"]["steps_per_s"],
        **run_metadata(),
    }
    write_json(a.out, result)
    for s, r in arms.items():
        print(
            f"{s}: {r['tokens_per_s']:.0f} tokens/s, {r['steps_per_s']:.2f} steps/s, "
            f"{r['share_of_matmul']:.0%} of matmul throughput ({r['achieved_flops_per_s'] / 1e9:.1f} of "
            f"{r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s), MFU {r['mfu']:.1%} of the {a.precision} GEMM peak"
        )
    print("trainer step vs plain step: " + ", ".join(f"{s} {r['trainer_vs_plain_step']:.3f}x" for s, r in arms.items()))
    print(f"V-pass step time vs none: {result['v_time_per_step_vs_none']:.3f}x")


if __name__ == "__main__":
    main()

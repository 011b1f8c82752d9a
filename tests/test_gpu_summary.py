"""benchmarks/gpu_summary.py on a made-up loan folder: every target beside its value, met or not, the parity
medians against the fp32 run's intervals, and what is missing said as missing."""

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEAKS = {"fp32": 5e13, "tf32": 3e14, "bf16": 7.9e14}


def toy(rate, share, precision):
    return {"precision": precision, "batched_seed_steps_per_s": rate, "data_share_of_step_batched": share,
            "gemm_peak_flops_per_s": PEAKS, "toy_flops": {"mfu_batched": 0.01}}  # fmt: skip


def compare_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["test_set", "arm", "n_seeds", "n_reached", "median_steps", "median_ci_low", "median_ci_high"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(rows)


def test_summary_sets_every_measurement_beside_its_target(tmp_path):
    out = tmp_path / "loan"
    out.mkdir()
    (out / "train_bf16_48.json").write_text(json.dumps(toy(6000.0, 0.05, "bf16")))
    (out / "train_fp32_8.json").write_text(json.dumps(toy(900.0, 0.2, "fp32")))
    arm = {"mfu": 0.31, "tokens_per_s": 1.2e6}
    lm = {"model": "paper-8m", "precision": "bf16", "batch": 256, "gemm_peak_flops_per_s": PEAKS, "arms": {"V": arm}}
    (out / "lm_bf16_256.json").write_text(json.dumps(lm))
    (out / "cuda_tests.json").write_text(json.dumps({"step": "cuda_tests", "exit": 0, "seconds": 40, "limit": 110}))
    bf16 = [["ic", "none", 8, 8, 30000, "", ""], ["ic", "V", 8, 7, 40000, "", ""]]
    compare_csv(out / "bf16_parity" / "compare.csv", bf16)
    ref = tmp_path / "ref"
    fp32 = [["ic", "none", 8, 8, 29750, 28750, 31500], ["ic", "V", 8, 8, 24250, 23500, 26000]]
    compare_csv(ref / "compare.csv", fp32)

    r = subprocess.run([sys.executable, ROOT / "benchmarks" / "gpu_summary.py", out, "--reference", ref],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = {m["what"]: m for m in json.loads((out / "summary.json").read_text())["measurements"]}
    assert got["toy seed-steps/s, 48 members, bf16"]["met"] is True
    assert got["toy data share of a step, 8 members"]["met"] is False
    assert got["24-seed headline at this rate, minutes (1.5M seed-steps)"]["value"] == 1.5e6 / 6000 / 60
    assert got["LM paper-8m V, bf16, batch 256: MFU"]["met"] is True
    assert got["LM paper-8m V, bf16, batch 256: tokens/s"]["met"] is False
    assert got["LM: lm_bf16_32.json"]["against"].startswith("missing")
    assert got["bf16 median steps to 0.95, none on ic (8/8 reached)"]["met"] is True
    assert got["bf16 median steps to 0.95, V on ic (7/8 reached)"]["met"] is False
    assert "step cuda_tests: exit 0, seconds 40, limit 110" in r.stdout
    assert "toy data share of a step, 8 members: 0.2 (target < 0.10) NOT met" in r.stdout


def test_an_unfinished_parity_run_is_said_so(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_summary import summary

    rows = summary(tmp_path, tmp_path)["measurements"]
    assert {r["against"] for r in rows if r["what"] == "bf16 parity"} == {"run not finished"}

"""What a GPU loan measured, beside the GPU issue's targets: reads the folder benchmarks/gpu_check.sh wrote,
writes OUT/summary.json and prints one line per measurement (value, target, met or not, and the peak an
MFU is measured against). gpu_check.sh runs it last, so the loan's answer is in its output even if the
folder never comes back.

    python benchmarks/gpu_summary.py OUT [--reference results/streams/none_V_8seeds]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

HEADLINE_SEED_STEPS = 1.5e6  # the 24-seed none/V headline to 0.95, about (the GPU issue's own figure)


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _row(what: str, value, target: str, met: bool | None, against: str = "") -> dict:
    return {"what": what, "value": value, "target": target, "met": met, "against": against}


def toy_rows(out: Path) -> list[dict]:
    rows = []
    for name, members in (("train_bf16_48", 48), ("train_fp32_8", 8)):
        d = _json(out / f"{name}.json")
        if d is None:
            rows.append(_row(f"toy, {members} members: {name}.json", None, "", None, "missing (step failed or cut)"))
            continue
        p = d["precision"]
        rate, share = d["batched_seed_steps_per_s"], d["data_share_of_step_batched"]
        peak = d["gemm_peak_flops_per_s"][p]
        rows.append(_row(f"toy seed-steps/s, {members} members, {p}", rate, ">= 5,000", rate >= 5000))
        rows.append(_row(f"toy data share of a step, {members} members", share, "< 0.10", share < 0.10))
        mfu = d["toy_flops"]["mfu_batched"]
        rows.append(_row(f"toy MFU, {members} members", mfu, "", None, f"{p} GEMM {peak:.3g} FLOP/s"))
        if members == 48:
            minutes = HEADLINE_SEED_STEPS / rate / 60
            rows.append(_row("24-seed headline at this rate, minutes (1.5M seed-steps)", minutes, "< 10", minutes < 10))
    d = _json(out / "train_compile.json")
    if d and "compiled_vs_eager_batched" in d:
        c = d["compiled_vs_eager_batched"]
        rows.append(_row("torch.compile / eager, batched toy step", c["ratio"], "offered where > 1", c["ratio"] > 1))
    return rows


def lm_rows(out: Path) -> list[dict]:
    rows = []
    for name in ("lm_bf16_256", "lm_bf16_32"):
        d = _json(out / f"{name}.json")
        if d is None:
            rows.append(_row(f"LM: {name}.json", None, "", None, "missing (step failed or cut)"))
            continue
        peak = d["gemm_peak_flops_per_s"][d["precision"]]
        for arm, r in d["arms"].items():
            what = f"LM {d['model']} {arm}, {d['precision']}, batch {d['batch']}"
            rows.append(_row(f"{what}: MFU", r["mfu"], ">= 0.30", r["mfu"] >= 0.30, f"GEMM {peak:.3g} FLOP/s"))
            rows.append(_row(f"{what}: tokens/s", r["tokens_per_s"], ">= 1.5M", r["tokens_per_s"] >= 1.5e6))
    return rows


def _medians(compare_csv: Path) -> dict:
    with open(compare_csv, newline="") as f:
        return {(r["test_set"], r["arm"]): r for r in csv.DictReader(f)}


def parity_rows(out: Path, reference: Path) -> list[dict]:
    """bf16's median steps to 0.95 per arm and test set against the fp32 run's median and interval."""
    folder = out / "bf16_parity"
    if not (folder / "compare.csv").exists():
        return [_row("bf16 parity", None, "bf16 medians inside fp32's intervals", None, "run not finished")]
    bf16, fp32 = _medians(folder / "compare.csv"), _medians(reference / "compare.csv")
    rows = []
    for key, r in sorted(bf16.items()):
        if key not in fp32 or not r["median_steps"]:
            continue
        ref = fp32[key]
        lo, hi, m = float(ref["median_ci_low"]), float(ref["median_ci_high"]), float(r["median_steps"])
        what = f"bf16 median steps to 0.95, {key[1]} on {key[0]} ({r['n_reached']}/{r['n_seeds']} reached)"
        rows.append(_row(what, m, f"in fp32's [{lo:g}, {hi:g}]", lo <= m <= hi, f"fp32 median {ref['median_steps']}"))
    return rows


def summary(out: Path, reference: Path) -> dict:
    steps = {p.stem: _json(p) for p in sorted(out.glob("*.json")) if (_json(p) or {}).get("step")}
    rows = toy_rows(out) + lm_rows(out) + parity_rows(out, reference)
    return {"steps": steps, "measurements": rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--reference", type=Path, default=Path("results/streams/none_V_8seeds"))
    a = ap.parse_args()
    s = summary(a.out, a.reference)
    (a.out / "summary.json").write_text(json.dumps(s, indent=1) + "\n")
    for name, st in s["steps"].items():
        print(f"step {name}: " + ", ".join(f"{k} {v}" for k, v in st.items() if k != "step"))
    for r in s["measurements"]:
        value = "-" if r["value"] is None else f"{r['value']:.4g}"
        met = {True: "met", False: "NOT met", None: ""}[r["met"]]
        print(f"{r['what']}: {value} (target {r['target'] or '-'}) {met} {r['against']}".rstrip())


if __name__ == "__main__":
    main()

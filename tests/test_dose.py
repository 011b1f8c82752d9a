"""IOI as a dose-response: per-run summaries, the paired table, and the evidence each arm needs."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from amicl.cli import amicl
from amicl.common.io import read_csv, write_csv
from transformers_mini.lm.dose import arm_rate_table, crossing, evidence_needed, run_rows

CURVES = {"none": {0.0: 0.0, 0.1: 0.04, 0.4: 0.1}, "V": {0.0: 0.0, 0.1: 0.1, 0.4: 0.3}}


def rows(noise=(0.0, 0.01, -0.01)):
    return [{"run": f"{a}_{r}_{s}", "arm": a, "seed": s, "rate": r, "p_io": p + e, "logit_diff": 1.0, "correct": 0.5,
             "abc_p_io": 0.01, "val_loss": 1.5}
            for a, curve in CURVES.items() for r, p in curve.items()
            for s, e in enumerate(noise if a == "none" else noise[::-1])]  # fmt: skip


def test_crossing_interpolates_between_grid_rates():
    assert crossing([0, 0.1, 0.4], [0.0, 0.04, 0.1], 0.07) == pytest.approx(0.25)
    assert crossing([0, 0.1, 0.4], [0.0, 0.1, 0.3], 0.07) == pytest.approx(0.07)
    assert crossing([0, 0.1], [0.2, 0.3], 0.07) == 0.0 and crossing([0, 0.1], [0.0, 0.01], 0.07) == np.inf


def test_the_table_pairs_arms_over_seeds_at_each_rate():
    table = arm_rate_table(rows())
    v = next(r for r in table if r["arm"] == "V" and r["rate"] == 0.1)
    assert v["p_io"] == pytest.approx(0.1) and v["diff"] == pytest.approx(0.06) and v["higher"] == 3
    assert 0 < v["ttest_p"] < 0.05
    assert v["p_io_low"] <= 0.1 <= v["p_io_high"] and [r["arm"] for r in table[:2]] == ["none", "V"]
    with pytest.raises(ValueError, match="two runs"):
        arm_rate_table(rows() + rows()[:1])


def test_one_seed_is_printed_without_an_interval():
    from transformers_mini.lm.dose import markdown

    one = [r for r in rows() if r["seed"] == 0]
    text = markdown(arm_rate_table(one), evidence_needed(one, target=0.07), last=5)
    v = next(line for line in text.splitlines() if line.startswith("| 0.1 | V |"))
    assert v.startswith("| 0.1 | V | 1 | 0.090 | 1.00 | 0.500 |") and "[" not in v  # one seed: no interval
    assert v.endswith("| +0.050 | 1/1 | - |")  # nor a paired test
    ev = next(line for line in text.splitlines() if line.startswith("| V | 1 |"))
    assert ev == "| V | 1 | 0.08 | 0.00 | 3.13 |"  # V's P(IO) -0.01, 0.09: 0.07 at rate 0.08; none's 0.25 / 0.08
    three = markdown(arm_rate_table(rows()), [], last=5)
    assert "| 0.1 | V | 3 | 0.100 [" in three


def test_evidence_needed_and_how_many_times_less():
    ev = {e["arm"]: e for e in evidence_needed(rows(noise=(0.0, 0.0, 0.0)), target=0.07)}
    assert ev["none"]["rate_needed"] == pytest.approx(0.25) and ev["V"]["rate_needed"] == pytest.approx(0.07)
    v = ev["V"]
    assert v["times_less"] == pytest.approx(0.25 / 0.07) and v["times_less_low"] == pytest.approx(v["times_less"])
    noisy = {e["arm"]: e for e in evidence_needed(rows(), target=0.07)}["V"]
    assert noisy["times_less_low"] < noisy["times_less"] < noisy["times_less_high"]
    # none never reaches 0.5 on the grid: censored (inf), the ratio is then unbounded or undefined
    assert {e["arm"]: e["rate_needed"] for e in evidence_needed(rows(), 0.5)} == {"none": np.inf, "V": np.inf}


def test_run_rows_average_the_last_evaluations_and_refuse_short_runs():
    hist = [{"step": s, "val_loss": 2 - s / 10, "ioi_p_io": s / 10, "ioi_logit_diff": s, "ioi_correct": 0.5,
             "abc_p_io": 0.0} for s in range(5)]  # fmt: skip
    (row,) = run_rows([{"run": "a", "arm": "V", "seed": 0, "rate": 0.1, "history": hist}], last=2)
    assert row["p_io"] == pytest.approx(0.35) and row["logit_diff"] == 3.5 and row["val_loss"] == 1.6
    with pytest.raises(ValueError, match="fewer than --last 9"):
        run_rows([{"run": "a", "arm": "V", "seed": 0, "rate": 0.1, "history": hist}], last=9)


def test_the_dose_command_reads_run_folders(tmp_path):
    folders = []
    for r in rows():
        f = tmp_path / r["run"]
        f.mkdir()
        cfg = {"stream": r["arm"], "seed": r["seed"], "ioi_rate": r["rate"], "world": 2, "steps": 600}
        (f / "config.json").write_text(json.dumps({"kind": "lm", "lm": cfg}))
        hist = [{"step": s, "tokens": s, "val_loss": 1.5, "ioi_p_io": r["p_io"], "ioi_logit_diff": 1.0,
                 "ioi_correct": 0.5, "abc_p_io": 0.01} for s in (200, 400, 600)]  # fmt: skip
        write_csv(f / "history.csv", hist)
        folders.append(str(f))
    res = CliRunner().invoke(amicl, ["lm", "dose", *folders, "--last", "3", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert "| V | 3 | 0.07 |" in res.output
    assert len(read_csv(tmp_path / "d" / "dose.csv")) == 6 and len(read_csv(tmp_path / "d" / "dose_runs.csv")) == 18
    res = CliRunner().invoke(amicl, ["figures", "lm", *folders[:2], "--dose", str(tmp_path / "d"), "--format", "png",
                                     "--out", str(tmp_path / "f")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "f" / "dose.png").stat().st_size > 5000 and (tmp_path / "f" / "lm_loss.png").exists()
    short = tmp_path / folders[1] / "config.json"
    short.write_text(
        json.dumps({"kind": "lm", "lm": {"stream": "none", "seed": 1, "ioi_rate": 0.0, "steps": 800, "world": 2}})
    )
    res = CliRunner().invoke(amicl, ["lm", "dose", *folders, "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "unfinished (step 600 of 800)" in res.output
    old = tmp_path / folders[0] / "config.json"
    old.write_text(json.dumps({"kind": "lm", "lm": {"stream": "none", "seed": 0}}))  # a world-1 run
    res = CliRunner().invoke(amicl, ["lm", "dose", *folders, "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "no IOI rate" in res.output


def test_tokens_to_reach_a_loss():
    from transformers_mini.lm.dose import iso_loss, tokens_to_reach

    hist = [{"tokens": t, "val_loss": v} for t, v in ((0, 7.0), (100, 3.0), (400, 2.0), (1600, 1.5))]
    assert tokens_to_reach(hist, 2.0) == 400 and tokens_to_reach(hist, 1.0) == np.inf
    assert tokens_to_reach(hist, 1.75) == pytest.approx(800)  # halfway between 400 and 1,600 in log tokens
    assert tokens_to_reach(hist, 5.0) == 100  # from the untrained model, no log-interpolation
    faster = [{"tokens": t, "val_loss": v} for t, v in ((0, 7.0), (100, 2.0), (400, 1.5), (1600, 1.4))]
    pairs = (("none", hist), ("V", faster))
    runs = [{"model": "cpu", "arm": a, "seed": s, "history": h} for s in (0, 1) for a, h in pairs]
    runs.append({"model": "cpu", "arm": "V", "seed": 2, "history": hist})  # no none of seed 2: not paired
    (row,) = iso_loss(runs)
    assert row["seeds"] == 2 and row["saving_median"] == pytest.approx(0.75) and row["never"] == 0
    slow = [{**runs[0], "arm": "V", "history": hist[:3]}, runs[0]]
    assert iso_loss(slow)[0]["saving_median"] == 0.0 and iso_loss(slow)[0]["never"] == 1

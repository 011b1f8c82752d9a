import json

import numpy as np
import pytest

from amicl.common.parallel import InProcessExecutor, make_executor, run_tasks
from amicl.common.stats import binomial_ci
from amicl.memory.hopfield import MemoryConfig
from amicl.memory.sweep import RunSpec, SweepResult, parse_grid, sweep
from amicl.task import EpisodeConfig, TaskConfig

SMALL = RunSpec(MemoryConfig(), EpisodeConfig(K=50, D=30, T=12), trials=300)


def test_two_parameter_sweep_round_trips_in_grid_order(tmp_path):
    # 'similarity' sorts after 'a': the saved grid must keep the product order it was run in.
    res = sweep(SMALL, {"similarity": ["dot", "pearson"], "a": [0.5, 2.0]}, seed=1)
    res.save(tmp_path)
    back = SweepResult.load(tmp_path)
    assert back.rows() == res.rows()
    np.testing.assert_array_equal(back.correct, res.correct)
    acc = {(r["similarity"], r["a"]): r["accuracy"] for r in res.rows()}
    assert acc[("dot", 2.0)] > 0.95 and acc[("dot", 0.5)] < 0.2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "results.npz", "summary.csv"]
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["seed"] == 1 and cfg["versions"]["numpy"] and "git_sha" in cfg


def test_results_do_not_depend_on_the_executor():
    grid = {"a": [1.0, 1.5]}
    spec = RunSpec(MemoryConfig(), EpisodeConfig(K=50, D=30, T=12), trials=600)  # 3 chunks per point
    serial = sweep(spec, grid, seed=4, executor=InProcessExecutor())
    with make_executor(2) as pool:
        parallel = sweep(spec, grid, seed=4, executor=pool)
    np.testing.assert_array_equal(serial.correct, parallel.correct)
    assert not np.array_equal(serial.correct, sweep(spec, grid, seed=5).correct)


def test_memory_sweeps_are_paired_on_the_same_episodes():
    res = sweep(SMALL, {"a": [2.0, 2.0]}, seed=0)  # same value twice -> identical trials
    np.testing.assert_array_equal(res.correct[0], res.correct[1])


def test_reddy_runs_use_the_requested_test_set():
    spec = RunSpec(MemoryConfig(a=2.0), TaskConfig(K=64, L=16, D=40), "ic2", trials=200)
    res = sweep(spec, {"B": [2, 8]}, seed=0)
    assert all(r["accuracy"] > 0.9 for r in res.rows())  # the memory solves swapped labels by ICL
    iw = sweep(spec.with_values(test_set="iw"), {}, seed=0).rows()[0]["accuracy"]
    assert iw < 0.3  # i.i.d. context: the answer is rarely in context


@pytest.mark.parametrize(
    "text, name, values",
    [
        ("a=1,1.5,2", "a", [1.0, 1.5, 2.0]),
        ("a=0:2:5", "a", [0.0, 0.5, 1.0, 1.5, 2.0]),
        ("beta=log:0:2:3", "beta", [1.0, 10.0, 100.0]),
        ("similarity=dot, pearson", "similarity", ["dot", "pearson"]),
        ("D=10,20", "D", [10, 20]),
    ],
)
def test_parse_grid(text, name, values):
    assert parse_grid("episodes", text) == (name, values)


@pytest.mark.parametrize(
    "text, match",
    [
        ("a", "name=values"),
        ("zeta=1", "cannot sweep"),
        ("D=1.5", "bad values"),
        ("a=x:y:z", "bad values"),
        ("a=", "no values"),
        ("B=2", "cannot sweep"),
    ],
)
def test_parse_grid_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_grid("episodes", text)


def test_invalid_specs_and_sweeps():
    with pytest.raises(ValueError, match="trials"):
        RunSpec(trials=0)
    with pytest.raises(ValueError, match="test_set"):
        RunSpec(data=TaskConfig(B=0, p_B=0.0, p_C=0.0), test_set="ic")
    with pytest.raises(ValueError, match="unknown parameter"):
        SMALL.with_values(B=2)
    with pytest.raises(ValueError, match="seed"):
        sweep(SMALL, {}, seed=-1)
    with pytest.raises(ValueError, match="a must be"):
        sweep(SMALL, {"a": [-1.0]})
    with pytest.raises(ValueError, match="workers"):
        make_executor(0)


def test_run_tasks_keeps_order_and_raises_errors():
    assert run_tasks(pow, [(2, 3), (3, 2)]) == [8, 9]
    with pytest.raises(ZeroDivisionError):
        run_tasks(divmod, [(1, 0)])


def test_binomial_interval_matches_scipy_exact():
    from scipy.stats import binomtest

    for k, n in [(0, 10), (3, 10), (907, 1000), (1000, 1000)]:
        lo, hi = binomial_ci(k, n)
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert np.isclose(lo, ref.low) and np.isclose(hi, ref.high)
    with pytest.raises(ValueError):
        binomial_ci(5, 3)


def test_kaplan_meier_and_log_rank_by_hand():
    from amicl.common.stats import kaplan_meier, km_median, logrank, paired_sign_test

    # 5 runs: reached at 10, 20, 20, 40; one censored at 30 (never reached by its last step)
    steps, surv = kaplan_meier([10, 20, 20, 30, 40], [True, True, True, False, True])
    np.testing.assert_allclose(steps, [0, 10, 20, 40])
    np.testing.assert_allclose(surv, [1, 4 / 5, 4 / 5 * 2 / 4, 0.0])  # at 40 one run is at risk, and it reaches
    assert km_median([10, 20, 20, 30, 40], [True, True, True, False, True]) == 20
    assert km_median([10, 30, 30], [True, False, False]) == float("inf")  # censoring keeps S above one half
    # identical groups: no evidence; disjoint groups: the statistic grows with the sample
    assert logrank([1, 2, 3], [True] * 3, [1, 2, 3], [True] * 3)[0] == 0
    stat, p = logrank([1, 2, 3, 4, 5, 6], [True] * 6, [7, 8, 9, 10, 11, 12], [True] * 6)
    assert stat > 8 and p < 0.01
    # by hand: a = {1}, b = {2}: at t=1, n=2, n_a=1, d=1 -> O-E = 1/2, V = 1/4; chi2 = 1
    assert logrank([1], [True], [2], [True])[0] == pytest.approx(1.0)
    assert paired_sign_test(np.array([1, 1, 1, 1, 1, 1, 1, 1])) == (8, 0, pytest.approx(2 / 2**8))
    assert paired_sign_test(np.array([1, -1, 0]))[:2] == (1, 1)

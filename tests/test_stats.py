"""The package's estimators (amicl/common/stats.py) against hand computations on small data, and the
survival functions against lifelines, the field's tested implementation."""

import numpy as np
import pytest
from scipy.stats import binomtest

from amicl.common import stats

BASE = np.array([100.0, 200.0, 300.0, 400.0, 1000.0])
ARM = np.array([80.0, 150.0, 270.0, 400.0, 500.0])


def test_paired_savings_by_hand():
    out = stats.paired_savings(BASE, ARM, cap=2000, seed=1)
    # per-seed savings 0.2, 0.25, 0.1, 0.0, 0.5 -> median 0.2
    assert out["median_saving"] == pytest.approx(0.2)
    assert out["ratio_of_medians"] == pytest.approx(1 - 270 / 300)
    assert out["ratio_of_means"] == pytest.approx(1 - 1400 / 2000)
    for name in stats.ESTIMATORS:
        assert out[f"{name}_low"] <= out[name] <= out[f"{name}_high"], name
    assert out["n"] == 5 and out["censored_base"] == out["censored_arm"] == 0


def test_a_censored_run_enters_at_the_cap():
    base = np.array([100.0, 200.0, np.inf, 400.0])
    arm = np.array([50.0, 100.0, 500.0, np.inf])
    out = stats.paired_savings(base, arm, cap=1000)
    # savings 0.5, 0.5, 1 - 500/1000 = 0.5, 1 - 1000/400 = -1.5 -> median 0.5
    assert out["median_saving"] == pytest.approx(0.5)
    assert out["censored_base"] == 1 and out["censored_arm"] == 1
    assert out["ratio_of_means"] == pytest.approx(1 - 1650 / 1700)


def test_identical_savings_give_a_degenerate_interval_not_nan():
    out = stats.paired_savings(np.array([100.0, 200.0, 300.0]), np.array([50.0, 100.0, 150.0]), cap=1000)
    assert out["median_saving"] == out["median_saving_low"] == out["median_saving_high"] == 0.5


@pytest.mark.parametrize(
    "bad",
    [dict(base=BASE, arm=ARM[:3], cap=10), dict(base=BASE, arm=ARM, cap=0), dict(base=-BASE, arm=ARM, cap=10)],
)
def test_paired_savings_refuses_bad_input(bad):
    with pytest.raises(ValueError):
        stats.paired_savings(**bad)


def test_the_bootstrap_interval_covers_a_known_mean():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(40):
        x = rng.normal(1.0, 1.0, 30)
        _, lo, hi = stats.mean_ci(x, seed=int(rng.integers(1 << 30)))
        hits += lo <= 1.0 <= hi
    assert hits >= 33  # nominal 95%: 38 of 40 expected; fewer than 33 would be P < 0.01


def test_never_learns_is_a_binomial_rate_with_the_exact_interval():
    out = stats.never_learns([True] * 23 + [False])
    ci = binomtest(1, 24).proportion_ci(method="exact")
    assert out["never"] == 1 and out["rate"] == pytest.approx(1 / 24)
    assert out["rate_low"] == pytest.approx(ci.low) and out["rate_high"] == pytest.approx(ci.high)
    assert stats.never_learns([True] * 5)["rate_high"] == pytest.approx(1 - 0.025 ** (1 / 5))


def test_stratified_logrank_on_pairs_is_the_sign_test_normal_approximation():
    # 8 pairs (strata); arm a first in 7 of them, no ties: (7 - 1)^2 / 8 with O-E = +-1/2, var = 1/4 each
    t = np.array([[10, 20], [11, 21], [12, 22], [13, 23], [14, 24], [15, 25], [16, 26], [30, 17]], float)
    times, in_a = t.ravel(), np.tile([True, False], 8)
    strata = np.repeat(np.arange(8), 2)
    chi2, p = stats.stratified_logrank(times, np.ones(16, bool), in_a, strata)
    assert chi2 == pytest.approx((7 - 1) ** 2 / 8)
    # ignoring the pairing, the same data give a different (independent-groups) statistic
    assert stats.logrank(t[:, 0], np.ones(8, bool), t[:, 1], np.ones(8, bool))[0] != pytest.approx(chi2)


def test_logrank_and_kaplan_meier_match_lifelines():
    lifelines = pytest.importorskip("lifelines")
    from lifelines.statistics import logrank_test

    rng = np.random.default_rng(3)
    ta, tb = rng.integers(1, 40, 25).astype(float), rng.integers(5, 50, 30).astype(float)
    ea, eb = rng.random(25) < 0.8, rng.random(30) < 0.7
    ours = stats.logrank(ta, ea, tb, eb)
    ref = logrank_test(ta, tb, event_observed_A=ea, event_observed_B=eb)
    assert ours[0] == pytest.approx(ref.test_statistic, rel=1e-10)
    assert ours[1] == pytest.approx(ref.p_value, rel=1e-8)
    steps, surv = stats.kaplan_meier(ta, ea)
    km = lifelines.KaplanMeierFitter().fit(ta, ea).survival_function_["KM_estimate"]
    for s, v in zip(steps, surv):
        assert km.loc[s] == pytest.approx(v, rel=1e-12)
    assert stats.km_median(ta, ea) == lifelines.KaplanMeierFitter().fit(ta, ea).median_survival_time_


def test_paired_t_power_and_seeds_needed():
    from amicl.common.stats import paired_seeds_needed, paired_t_power

    # the normal approximation ((1.96 + 0.84) sd / delta)^2 is a lower bound the t-test needs a pair or two above
    assert paired_seeds_needed(1.0, 0.5) == 34  # textbook: d = 0.5, 80% power, two-sided 5% -> 34 pairs
    assert paired_t_power(34, 1.0, 0.5) >= 0.8 > paired_t_power(33, 1.0, 0.5)
    assert paired_t_power(10, 1.0, 0.0) == pytest.approx(0.05)  # no effect: the test's size
    with pytest.raises(ValueError):
        paired_t_power(1, 1.0, 0.5)


def test_percentile_interval_is_the_hand_computed_order_statistics():
    from amicl.common.stats import percentile_interval

    draws = np.arange(1, 201, dtype=float)  # 2.5% and 97.5% of 1..200 by linear interpolation: 5.975, 195.025
    assert percentile_interval(draws) == pytest.approx((5.975, 195.025))
    assert percentile_interval(draws, method="lower") == (5.0, 195.0)
    assert percentile_interval(draws, level=0.5) == pytest.approx((50.75, 150.25))
    with pytest.raises(ValueError, match="no resamples"):
        percentile_interval([])


def test_resample_indices_keep_pairs_together_and_refuse_nothing_to_resample():
    from amicl.common.stats import resample_indices

    idx = resample_indices(5, 1000, np.random.default_rng(0))
    assert idx.shape == (1000, 5) and idx.min() == 0 and idx.max() == 4
    a, b = np.arange(5.0), 10 * np.arange(5.0)  # paired units: b = 10 a, in every resample too
    assert np.array_equal(b[idx], 10 * a[idx])
    assert np.allclose(np.bincount(idx.ravel()) / idx.size, 0.2, atol=0.02)  # each unit equally likely
    with pytest.raises(ValueError, match="at least one unit"):
        resample_indices(0, 10, np.random.default_rng(0))


def test_crossed_bootstrap_carries_both_sources_of_spread():
    """x[e, p] = a_e + b_p: the bootstrap variance of the grand mean is var(a)/E + var(b)/P (population
    variances, as resampling with replacement gives), and with one row it is the prompts' alone."""
    from amicl.common.stats import crossed_indices

    rng = np.random.default_rng(0)
    a, b = np.array([0.0, 1.0, 3.0]), rng.normal(0, 2, 50)
    x = a[:, None] + b[None, :]
    rows, cols = crossed_indices(3, 50, 20000, np.random.default_rng(1))
    means = np.array([x[r][:, c].mean() for r, c in zip(rows, cols)])
    assert means.var() == pytest.approx(a.var() / 3 + b.var() / 50, rel=0.05)
    rows, cols = crossed_indices(1, 50, 20000, np.random.default_rng(2))
    means = np.array([x[:1][r][:, c].mean() for r, c in zip(rows, cols)])
    assert means.var() == pytest.approx(b.var() / 50, rel=0.05)

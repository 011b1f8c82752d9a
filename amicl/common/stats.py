"""Interval estimates used in every results table."""

from __future__ import annotations

import numpy as np


def binomial_ci(k, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson (exact) interval for k successes in n trials; arrays broadcast."""
    from scipy.stats import beta

    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("binomial_ci needs 0 <= k <= n and n > 0")
    alpha = 1.0 - level
    lo = np.where(k > 0, beta.ppf(alpha / 2, k, n - k + 1), 0.0)
    hi = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    return lo, hi


def kaplan_meier(times, reached) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate of S(t) = P(not yet reached at t) from right-censored times.

    times: (n,) the step at which each run reached the threshold, or its last evaluated step if it
    never did; reached: (n,) bool, False for a censored run. Returns (steps, S) where S[i] is the
    survival just after steps[i]; the curve starts at (0, 1) and drops only at reaching times.
    """
    times, reached = np.asarray(times, dtype=float), np.asarray(reached, dtype=bool)
    if times.shape != reached.shape or times.ndim != 1 or not len(times):
        raise ValueError("kaplan_meier needs two equally long, non-empty 1-d arrays")
    steps, surv, s = [0.0], [1.0], 1.0
    for t in np.unique(times[reached]):
        at_risk = int((times >= t).sum())
        events = int(((times == t) & reached).sum())
        s *= 1.0 - events / at_risk
        steps.append(float(t))
        surv.append(s)
    return np.array(steps), np.array(surv)


def km_median(times, reached) -> float:
    """The first step at which the Kaplan-Meier survival drops to 0.5 or below; inf if it never does."""
    steps, surv = kaplan_meier(times, reached)
    below = np.nonzero(surv <= 0.5)[0]
    return float(steps[below[0]]) if below.size else float("inf")


def logrank(times_a, reached_a, times_b, reached_b) -> tuple[float, float]:
    """Two-sided log-rank test of equal survival in groups a and b: (chi-square statistic, p value)."""
    from scipy.stats import chi2

    t = np.r_[np.asarray(times_a, float), np.asarray(times_b, float)]
    e = np.r_[np.asarray(reached_a, bool), np.asarray(reached_b, bool)]
    in_a = np.r_[np.ones(len(times_a), bool), np.zeros(len(times_b), bool)]
    observed_minus_expected, variance = 0.0, 0.0
    for s in np.unique(t[e]):
        at_risk = t >= s
        n, n_a = at_risk.sum(), (at_risk & in_a).sum()
        d = ((t == s) & e).sum()
        d_a = ((t == s) & e & in_a).sum()
        observed_minus_expected += d_a - d * n_a / n
        if n > 1:
            variance += d * (n_a / n) * (1 - n_a / n) * (n - d) / (n - 1)
    if variance == 0:
        return 0.0, 1.0
    stat = observed_minus_expected**2 / variance
    return float(stat), float(chi2.sf(stat, 1))


def paired_sign_test(first: np.ndarray) -> tuple[int, int, float]:
    """Paired comparison of two arms on the same seeds. first: (n,) +1 where arm a reached the threshold
    first, -1 where arm b did, 0 for a tie (same evaluation, or neither reached it). Censoring needs no
    model: a run that reached the threshold was first against one that never did. Returns (wins of a,
    wins of b, two-sided exact binomial p over the untied seeds)."""
    from scipy.stats import binomtest

    first = np.asarray(first)
    a, b = int((first > 0).sum()), int((first < 0).sum())
    return a, b, float(binomtest(a, a + b).pvalue) if a + b else 1.0

"""The package's estimators, stated once: every results table reports through these.

Paired comparisons of arms trained on the same seeds (steps to a threshold; a run that never reaches it
is censored at the cap):

- primary: the median of the per-seed paired savings, 1 - arm/base, with a BCa bootstrap interval over
  seeds (``paired_savings``); a censored run enters at the cap, so its saving is a bound;
- secondary, shown beside it: the ratio of medians and the ratio of means, 1 - median(arm)/median(base)
  and 1 - mean(arm)/mean(base), with paired bootstrap intervals;
- the never-learns rate at the cap with its Clopper-Pearson interval (``never_learns``);
- a survival comparison stratified by seed (``stratified_logrank``, the paired log-rank test) beside
  the exact sign test on who reached the threshold first (``paired_sign_test``).

Bootstrap intervals are ``scipy.stats.bootstrap`` (BCa where the resamples allow it, percentile where
BCa is undefined, e.g. when every seed gives the same value or a bound is infinite). Statistics that
scipy's bootstrap cannot resample (several strata of different sizes resampled jointly, e.g. the NAMM
table's tasks, each resampling its prompts for every policy together; a crossing point over a grid of
rates, resampling seeds) draw their resamples with ``resample_indices`` and report
``percentile_interval``.
"""

from __future__ import annotations

import warnings

import numpy as np

LEVEL = 0.95
N_RESAMPLES = 9999


def bootstrap_ci(data: tuple, statistic, *, paired: bool = True, seed: int = 0, level: float = LEVEL,
                 n_resamples: int = N_RESAMPLES) -> tuple[float, float, str]:  # fmt: skip
    """``scipy.stats.bootstrap`` interval of ``statistic(*data)`` (vectorised over ``axis=-1``): BCa,
    or the percentile interval where BCa is undefined. Returns (low, high, method)."""
    from scipy.stats import bootstrap

    data = tuple(np.asarray(d, dtype=float) for d in data)
    if any(d.ndim != 1 or len(d) < 2 for d in data):
        raise ValueError("bootstrap_ci needs 1-d samples of at least 2 values")
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate BCa warns and returns NaN: fall back below
            res = bootstrap(data, statistic, paired=paired, vectorized=True, axis=-1, confidence_level=level,
                            n_resamples=n_resamples, method=method, rng=np.random.default_rng(seed))  # fmt: skip
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not (np.isnan(lo) or np.isnan(hi)):
            return lo, hi, method
    point = float(statistic(*data))
    return point, point, "degenerate"  # every resample gives one value


def resample_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) indices, each row one bootstrap resample of ``n`` units drawn with replacement. Index
    every paired quantity with the same row, so that pairs stay together."""
    if n < 1 or n_boot < 1:
        raise ValueError(f"need at least one unit and one resample, got n={n}, n_boot={n_boot}")
    return rng.integers(0, n, size=(n_boot, n))


def crossed_indices(n_rows: int, n_cols: int, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap of a crossed design, e.g. several evolutions (rows) each evaluated on the same prompts
    (columns): rows and columns are resampled independently (Owen's pigeonhole bootstrap), so an interval
    carries both the between-evolution spread and the prompt sampling. Returns (n_boot, n_rows) and
    (n_boot, n_cols) indices; draw b is ``x[rows[b]][:, cols[b]]``, and every quantity measured on the same
    prompts (the full cache, a baseline) takes the same ``cols[b]``."""
    return resample_indices(n_rows, n_boot, rng), resample_indices(n_cols, n_boot, rng)


def percentile_interval(draws, level: float = LEVEL, method: str = "linear") -> tuple[float, float]:
    """The percentile bootstrap interval of the resampled statistic ``draws`` (``method`` as in
    ``np.percentile``; "lower"/"higher" give the conservative order statistics)."""
    draws = np.asarray(draws, dtype=float)
    if draws.size == 0:
        raise ValueError("no resamples to take an interval from")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(draws, [tail, 100 - tail], method=method)
    return float(lo), float(hi)


def _saving(base, arm, axis=-1):
    return np.median(1.0 - arm / base, axis=axis)


def _ratio_of_medians(base, arm, axis=-1):
    return 1.0 - np.median(arm, axis=axis) / np.median(base, axis=axis)


def _ratio_of_means(base, arm, axis=-1):
    return 1.0 - np.mean(arm, axis=axis) / np.mean(base, axis=axis)


ESTIMATORS = {  # name -> (statistic, what it is); the first is the primary
    "median_saving": (_saving, "median of per-seed paired savings 1 - arm/base"),
    "ratio_of_medians": (_ratio_of_medians, "1 - median(arm)/median(base)"),
    "ratio_of_means": (_ratio_of_means, "1 - mean(arm)/mean(base)"),
}


def paired_savings(base, arm, cap: float, seed: int = 0, level: float = LEVEL) -> dict:
    """Fewer steps with ``arm`` than with ``base`` on the same seeds, by every estimator in ``ESTIMATORS``.

    base, arm: (S,) steps to the threshold per seed, aligned; ``inf`` (or a value above ``cap``) for a
    run that never reached it, which enters at ``cap``. Returns {name: point, name_low, name_high,
    name_method} for each estimator, plus ``n`` and ``censored_base``/``censored_arm``.
    """
    base, arm = np.asarray(base, dtype=float), np.asarray(arm, dtype=float)
    if base.shape != arm.shape or base.ndim != 1 or len(base) < 2:
        raise ValueError("paired_savings needs two aligned 1-d arrays of at least 2 seeds")
    if not (np.isfinite(cap) and cap > 0):
        raise ValueError(f"cap must be a positive number of steps, got {cap}")
    if np.any(base <= 0) or np.any(arm <= 0):
        raise ValueError("steps to the threshold must be positive")
    out = {"n": len(base), "censored_base": int((base > cap).sum()), "censored_arm": int((arm > cap).sum())}
    b, a = np.minimum(base, cap), np.minimum(arm, cap)
    for name, (stat, _) in ESTIMATORS.items():
        lo, hi, method = bootstrap_ci((b, a), stat, seed=seed, level=level)
        out.update({name: float(stat(b, a)), f"{name}_low": lo, f"{name}_high": hi, f"{name}_method": method})
    return out


def never_learns(reached, level: float = LEVEL) -> dict:
    """The share of runs that never reached the threshold by the cap, with its Clopper-Pearson interval."""
    reached = np.asarray(reached, dtype=bool)
    if reached.ndim != 1 or not len(reached):
        raise ValueError("never_learns needs a non-empty 1-d array")
    k, n = int((~reached).sum()), len(reached)
    lo, hi = binomial_ci(k, n, level)
    return {"never": k, "n": n, "rate": k / n, "rate_low": float(lo), "rate_high": float(hi)}


def mean_ci(x, seed: int = 0, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and its bootstrap interval (BCa where defined) over the values."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("no values to summarise")
    if len(x) == 1:
        return float(x[0]), float(x[0]), float(x[0])
    lo, hi, _ = bootstrap_ci((x,), lambda v, axis=-1: np.mean(v, axis=axis), seed=seed, level=level)
    return float(x.mean()), lo, hi


def paired_t_power(n: int, sd: float, delta: float, alpha: float = 0.05) -> float:
    """Power of a two-sided paired t-test on ``n`` pairs whose differences have standard deviation ``sd``,
    to detect a true mean difference ``delta`` (noncentral t)."""
    from scipy.stats import nct, t

    if n < 2 or sd <= 0 or not 0 < alpha < 1:
        raise ValueError("paired_t_power needs n >= 2, sd > 0 and 0 < alpha < 1")
    df, nc = n - 1, abs(delta) / sd * np.sqrt(n)
    crit = t.ppf(1 - alpha / 2, df)
    return float(nct.sf(crit, df, nc) + nct.cdf(-crit, df, nc))


def paired_seeds_needed(sd: float, delta: float, power: float = 0.8, alpha: float = 0.05, most: int = 10_000) -> int:
    """The fewest pairs (seeds) at which a two-sided paired t-test reaches ``power`` for ``delta``."""
    for n in range(2, most + 1):
        if paired_t_power(n, sd, delta, alpha) >= power:
            return n
    raise ValueError(f"more than {most} pairs needed")


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
    """Two-sided log-rank test of equal survival in independent groups a and b: (chi-square, p)."""
    t = np.r_[np.asarray(times_a, float), np.asarray(times_b, float)]
    e = np.r_[np.asarray(reached_a, bool), np.asarray(reached_b, bool)]
    in_a = np.r_[np.ones(len(times_a), bool), np.zeros(len(times_b), bool)]
    return stratified_logrank(t, e, in_a, np.zeros(len(t)))


def stratified_logrank(times, reached, in_a, strata) -> tuple[float, float]:
    """Two-sided log-rank test of equal survival in groups a and b within strata (e.g. seeds, so that
    paired arms are compared only with each other): observed-minus-expected and variance summed over
    strata. times: (n,) step reached or last evaluated; reached: (n,) bool; in_a: (n,) bool; strata: (n,).
    Returns (chi-square statistic, p). With one stratum it is the ordinary log-rank test; with pairs
    and no ties it is the normal approximation of the sign test."""
    from scipy.stats import chi2

    t, e = np.asarray(times, float), np.asarray(reached, bool)
    a, g = np.asarray(in_a, bool), np.asarray(strata)
    if not (t.shape == e.shape == a.shape == g.shape) or t.ndim != 1 or not len(t):
        raise ValueError("stratified_logrank needs equally long, non-empty 1-d arrays")
    o_minus_e, var = 0.0, 0.0
    for s in np.unique(g):
        m = g == s
        d_oe, d_var = _logrank_terms(t[m], e[m], a[m])
        o_minus_e, var = o_minus_e + d_oe, var + d_var
    if var == 0:
        return 0.0, 1.0
    stat = o_minus_e**2 / var
    return float(stat), float(chi2.sf(stat, 1))


def _logrank_terms(t, e, in_a) -> tuple[float, float]:
    """Observed minus expected events of group a, and its hypergeometric variance, over event times."""
    o_minus_e, var = 0.0, 0.0
    for s in np.unique(t[e]):
        at_risk = t >= s
        n, n_a = at_risk.sum(), (at_risk & in_a).sum()
        d, d_a = ((t == s) & e).sum(), ((t == s) & e & in_a).sum()
        o_minus_e += d_a - d * n_a / n
        if n > 1:
            var += d * (n_a / n) * (1 - n_a / n) * (n - d) / (n - 1)
    return float(o_minus_e), float(var)


def paired_sign_test(first: np.ndarray) -> tuple[int, int, float]:
    """Paired comparison of two arms on the same seeds. first: (n,) +1 where arm a reached the threshold
    first, -1 where arm b did, 0 for a tie (same evaluation, or neither reached it). Censoring needs no
    model: a run that reached the threshold was first against one that never did. Returns (wins of a,
    wins of b, two-sided exact binomial p over the untied seeds)."""
    from scipy.stats import binomtest

    first = np.asarray(first)
    a, b = int((first > 0).sum()), int((first < 0).sum())
    return a, b, float(binomtest(a, a + b).pvalue) if a + b else 1.0

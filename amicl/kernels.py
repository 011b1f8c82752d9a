"""numba kernels behind ``amicl.memory``: one fused pass per episode, episodes in parallel (prange).

Each kernel mirrors ``amicl.reference`` (the specification) and is tested against it in float64 to
rtol 1e-10. Integer codes select the similarity and separation (``reference.SIM_CODES``,
``reference.SEP_CODES``), so one compiled kernel serves every configuration.

Two choices make it fast: the keys k_t = (a x_{t-1} + x_t)/(a+1) are never stored (each is formed on
the fly, and the Hopfield update K^T w is rewritten as sum_t c_t x_t with per-token coefficients), and
floating-point reassociation is allowed so that the dot-product reductions vectorise. Results are
therefore equal to the reference to rounding, not bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

FAST = {"reassoc", "contract"}  # vectorised reductions; no assumptions about NaN or inf


@njit(cache=True, fastmath=FAST, inline="always")
def _key(x, decoy, a, inv, t, d):
    """k_t[d]: the bound memory (a x_{t-1} + x_t)/(a+1), or the decoy at the query's own slot."""
    if t == x.shape[0] - 1:
        return decoy[d]
    return (a * x[t - 1, d] + x[t, d]) * inv


@njit(cache=True, fastmath=FAST, inline="always")
def _similarity(x, decoy, a, inv, xi, sim, out):
    """out[t] = sim(k_t, xi): 0 dot, 1 Pearson, 2 negative Euclidean, 3 negative Manhattan."""
    T, D = x.shape
    xm = 0.0
    xss = 0.0
    if sim == 1:
        for d in range(D):
            xm += xi[d]
        xm /= D
        for d in range(D):
            xss += (xi[d] - xm) ** 2
    for t in range(T):
        acc = 0.0
        if sim == 0:
            for d in range(D):
                acc += _key(x, decoy, a, inv, t, d) * xi[d]
        elif sim == 1:  # two passes, as the reference: a constant key must give exactly 0
            km = 0.0
            for d in range(D):
                km += _key(x, decoy, a, inv, t, d)
            km /= D
            kss = 0.0
            for d in range(D):
                kc = _key(x, decoy, a, inv, t, d) - km
                kss += kc * kc
                acc += kc * (xi[d] - xm)
            den = math.sqrt(kss * xss)
            acc = acc / den if den > 0 else 0.0
        elif sim == 2:
            for d in range(D):
                diff = _key(x, decoy, a, inv, t, d) - xi[d]
                acc += diff * diff
            acc = -math.sqrt(acc)
        else:
            for d in range(D):
                acc += abs(_key(x, decoy, a, inv, t, d) - xi[d])
            acc = -acc
        out[t] = acc


@njit(cache=True, fastmath=FAST, inline="always")
def _separation(s, sep, beta, n, w):
    """w = sep(s): 0 argmax (first maximum), 1 softmax(beta s), 2 normalised max(s, 0)^n."""
    T = s.shape[0]
    best = 0
    for t in range(1, T):
        if s[t] > s[best]:
            best = t
    if sep == 0:
        for t in range(T):
            w[t] = 0.0
        w[best] = 1.0
        return
    tot = 0.0
    for t in range(T):
        if sep == 1:
            w[t] = math.exp(beta * (s[t] - s[best]))
        else:
            w[t] = s[t] ** n if s[t] > 0 else 0.0
        tot += w[t]
    if tot > 0:
        for t in range(T):
            w[t] /= tot


@njit(cache=True, fastmath=FAST, inline="always")
def _combine(x, decoy, a, inv, w, out):
    """out = K^T w = sum_t w_t k_t without forming K: x_t enters its own key (weight w_t/(a+1)) and, as
    predecessor, the next one (a w_{t+1}/(a+1)); the last slot's key is the decoy. The first key's
    predecessor wraps around to x_{T-1}."""
    T, D = x.shape
    for d in range(D):
        out[d] = w[T - 1] * decoy[d]
    for t in range(T):
        c = a * w[t + 1] if t + 1 < T - 1 else 0.0
        if t < T - 1:
            c += w[t]
        if t == T - 1:
            c = a * w[0]
        if c != 0.0:
            c *= inv
            for d in range(D):
                out[d] += c * x[t, d]


@njit(cache=True, parallel=True, fastmath=FAST)
def retrieve_kernel(tokens, token_labels, decoy, bank, use_bank, a, sim, sep, beta, n, max_iter, tol):
    """Fused bind -> similarity -> separation -> (iterate) -> output -> readout for every episode.

    Same contract as ``amicl.reference.retrieve``. tokens (E, T, D), token_labels (E, T),
    decoy (E, D), bank (M, D) (ignored unless use_bank). Returns pred, weights, output, n_iter.
    """
    E, T, D = tokens.shape
    inv = 1.0 / (a + 1.0)
    pred = np.empty(E, dtype=np.int64)
    weights = np.empty((E, T))
    output = np.empty((E, D))
    n_iter = np.zeros(E, dtype=np.int64)
    for e in prange(E):
        x = tokens[e]
        dec = decoy[e]
        w = weights[e]
        xi = np.empty(D)
        for d in range(D):  # query = the incomplete pattern m_T = (a x_{T-1} + x_T)/(a+1)
            xi[d] = (a * x[T - 2, d] + x[T - 1, d]) * inv
        s = np.empty(T)
        _similarity(x, dec, a, inv, xi, sim, s)
        _separation(s, sep, beta, n, w)
        it = 0
        xi_new = np.empty(D)
        while it < max_iter:  # xi <- K^T sep(sim(K, xi)) (Ramsauer et al. 2020, Eq. 3)
            _combine(x, dec, a, inv, w, xi_new)
            it += 1
            change = 0.0
            for d in range(D):
                change = max(change, abs(xi_new[d] - xi[d]))
                xi[d] = xi_new[d]
            _similarity(x, dec, a, inv, xi, sim, s)
            _separation(s, sep, beta, n, w)
            if change <= tol:
                break
        n_iter[e] = it
        y = output[e]  # y = V^T w with the raw tokens as values
        wsum = 0.0
        for d in range(D):
            y[d] = 0.0
        for t in range(T):
            wsum += w[t]
            if w[t] != 0.0:
                for d in range(D):
                    y[d] += w[t] * x[t, d]
        pred[e] = _readout(w, y, x, token_labels[e], bank, use_bank, sep, wsum)
    return pred, weights, output, n_iter


@njit(cache=True, fastmath=FAST, inline="always")
def _readout(w, y, x, labels, bank, use_bank, sep, wsum):
    """Label of the retrieved token (argmax) or of the label vector best aligned with y (see reference)."""
    if sep == 0:
        best = 0
        for t in range(1, w.shape[0]):
            if w[t] > w[best]:
                best = t
        return labels[best]
    if wsum <= 0:
        return -1
    rows = bank if use_bank else x
    found = -1
    best_score = -np.inf
    for r in range(rows.shape[0]):
        if not use_bank and labels[r] < 0:
            continue
        acc = 0.0
        for d in range(y.shape[0]):
            acc += rows[r, d] * y[d]
        if found < 0 or acc > best_score:
            best_score = acc
            found = r if use_bank else labels[r]
    return found

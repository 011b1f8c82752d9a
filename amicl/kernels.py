"""numba kernels behind ``amicl.memory``: one fused pass per episode, episodes in parallel (prange).

Each kernel mirrors a function of ``amicl.reference`` (the specification) and is tested against it in
float64 to rtol 1e-10. Integer codes select the similarity and separation (``reference.SIM_CODES``,
``reference.SEP_CODES``), so one compiled kernel serves every configuration.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _similarity(keys, xi, sim, out):
    """out[t] = sim(keys[t], xi): 0 dot, 1 Pearson, 2 negative Euclidean, 3 negative Manhattan."""
    T, D = keys.shape
    if sim == 1:
        xm = 0.0
        for d in range(D):
            xm += xi[d]
        xm /= D
        xss = 0.0
        for d in range(D):
            xss += (xi[d] - xm) ** 2
    for t in range(T):
        acc = 0.0
        if sim == 0:
            for d in range(D):
                acc += keys[t, d] * xi[d]
        elif sim == 1:
            km = 0.0
            for d in range(D):
                km += keys[t, d]
            km /= D
            kss = 0.0
            for d in range(D):
                kc = keys[t, d] - km
                kss += kc * kc
                acc += kc * (xi[d] - xm)
            den = math.sqrt(kss * xss)
            acc = acc / den if den > 0 else 0.0
        elif sim == 2:
            for d in range(D):
                diff = keys[t, d] - xi[d]
                acc += diff * diff
            acc = -math.sqrt(acc)
        else:
            for d in range(D):
                acc += abs(keys[t, d] - xi[d])
            acc = -acc
        out[t] = acc


@njit(cache=True, inline="always")
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


@njit(cache=True, parallel=True)
def retrieve_kernel(tokens, token_labels, decoy, bank, use_bank, a, sim, sep, beta, n, max_iter, tol):
    """Fused bind -> similarity -> separation -> (iterate) -> output -> readout for every episode.

    Same contract as ``amicl.reference.retrieve``. tokens (E, T, D), token_labels (E, T),
    decoy (E, D), bank (M, D) (ignored unless use_bank). Returns pred, weights, output, n_iter.
    """
    E, T, D = tokens.shape
    pred = np.empty(E, dtype=np.int64)
    weights = np.empty((E, T))
    output = np.empty((E, D))
    n_iter = np.zeros(E, dtype=np.int64)
    for e in prange(E):
        x = tokens[e]
        keys = np.empty((T, D))
        for t in range(T):  # m_t = (a x_{t-1} + x_t)/(a+1), the first predecessor wrapping around
            for d in range(D):
                keys[t, d] = (a * x[t - 1, d] + x[t, d]) / (a + 1.0)
        xi = keys[T - 1].copy()  # query = the incomplete pattern m_T
        keys[T - 1] = decoy[e]
        s = np.empty(T)
        w = weights[e]
        _similarity(keys, xi, sim, s)
        _separation(s, sep, beta, n, w)
        it = 0
        xi_new = np.empty(D)
        while it < max_iter:  # xi <- K^T sep(sim(K, xi)) (Ramsauer et al. 2020, Eq. 3)
            for d in range(D):
                acc = 0.0
                for t in range(T):
                    acc += w[t] * keys[t, d]
                xi_new[d] = acc
            it += 1
            change = 0.0
            for d in range(D):
                change = max(change, abs(xi_new[d] - xi[d]))
                xi[d] = xi_new[d]
            _similarity(keys, xi, sim, s)
            _separation(s, sep, beta, n, w)
            if change <= tol:
                break
        n_iter[e] = it
        y = output[e]
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


@njit(cache=True, inline="always")
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

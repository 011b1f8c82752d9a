"""numba kernels behind ``amicl.memory.hopfield``: one fused pass per episode, episodes in parallel (prange).

Each kernel mirrors ``amicl.memory.reference`` (the specification) and is tested against it in float64 to
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


@njit(cache=True, fastmath=FAST, inline="always")
def _retrieve_one(x, labels, dec, bank, use_bank, a, inv, sim, sep, beta, n, max_iter, tol, w, y, xi, xi_new, s):
    """One episode: bind -> similarity -> separation -> (iterate) -> output y -> readout. Fills w and y
    (and uses xi, xi_new, s as scratch); returns (predicted label, Hopfield updates run)."""
    T, D = x.shape
    for d in range(D):  # query = the incomplete pattern m_T = (a x_{T-1} + x_T)/(a+1)
        xi[d] = (a * x[T - 2, d] + x[T - 1, d]) * inv
    _similarity(x, dec, a, inv, xi, sim, s)
    _separation(s, sep, beta, n, w)
    it = 0
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
    wsum = 0.0  # y = V^T w with the raw tokens as values
    for d in range(D):
        y[d] = 0.0
    for t in range(T):
        wsum += w[t]
        if w[t] != 0.0:
            for d in range(D):
                y[d] += w[t] * x[t, d]
    return _readout(w, y, x, labels, bank, use_bank, sep, wsum), it


@njit(cache=True, parallel=True, fastmath=FAST)
def retrieve_kernel(tokens, token_labels, decoy, bank, use_bank, a, sim, sep, beta, n, max_iter, tol):
    """Fused bind -> similarity -> separation -> (iterate) -> output -> readout for every episode.

    Same contract as ``amicl.memory.reference.retrieve``. tokens (E, T, D), token_labels (E, T),
    decoy (E, D), bank (M, D) (ignored unless use_bank). Returns pred, weights, output, n_iter.
    """
    E, T, D = tokens.shape
    inv = 1.0 / (a + 1.0)
    pred = np.empty(E, dtype=np.int64)
    weights = np.empty((E, T))
    output = np.empty((E, D))
    n_iter = np.zeros(E, dtype=np.int64)
    for e in prange(E):
        xi, xi_new, s = np.empty(D), np.empty(D), np.empty(T)
        pred[e], n_iter[e] = _retrieve_one(
            tokens[e],
            token_labels[e],
            decoy[e],
            bank,
            use_bank,
            a,
            inv,
            sim,
            sep,
            beta,
            n,
            max_iter,
            tol,
            weights[e],
            output[e],
            xi,
            xi_new,
            s,
        )
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


# ------------------------------------------------------------------------------------------------
# Streaming: each episode is drawn from its own counter-derived stream, scored, and forgotten, so memory
# does not grow with the number of trials and results do not depend on the thread count. The draws
# follow ``reference.SplitMix64`` / ``reference.stream_episode`` exactly; they are compiled without
# fastmath so that no contraction can change a rejection decision of the ziggurat.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, inline="always")
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _uniform(st):
    """(state, u): u in [0, 1) from the top 53 bits of the next SplitMix64 output."""
    st = st + _GOLDEN
    return st, np.float64(_mix64(st) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, inline="always")
def _below(st, n):
    """(state, k): k uniform in [0, n) from the top 32 bits (Lemire's multiply-shift)."""
    st = st + _GOLDEN
    return st, np.int64(((_mix64(st) >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(cache=True, inline="always")
def _normal(st, ki, wi, fi):
    """(state, x): x standard normal by the 256-layer ziggurat of ``reference.SplitMix64.normal``. The
    state is threaded through locals (not an array) so that it stays in a register."""
    while True:
        st = st + _GOLDEN
        r = _mix64(st)
        idx = np.int64(r & np.uint64(0xFF))
        r = r >> np.uint64(8)
        rabs = (r >> np.uint64(1)) & np.uint64(0x000FFFFFFFFFFFFF)
        x = np.float64(rabs) * wi[idx]
        if r & np.uint64(1):
            x = -x
        if rabs < ki[idx]:
            return st, x
        if idx == 0:  # the tail beyond r = 3.654..., by Marsaglia's exponential rejection
            while True:
                st, u = _uniform(st)
                xx = -math.log1p(-u) / 3.6541528853610088
                st, u = _uniform(st)
                yy = -math.log1p(-u)
                if yy + yy > xx * xx:
                    tail = 3.6541528853610088 + xx
                    return st, (-tail if (rabs >> np.uint64(8)) & np.uint64(1) else tail)
        else:
            st, u = _uniform(st)
            if (fi[idx - 1] - fi[idx]) * u + fi[idx] < math.exp(-0.5 * x * x):
                return st, x


@njit(cache=True)
def _draw_episode(key, e, K, epsilon, noise_std, ki, wi, fi, x, labels, decoy, cls, means):
    """Fill x (T, D), labels (T,), decoy (D,) with episode e of stream ``key``; returns the target.
    cls (P,) and means (P + 1, 2, D) are scratch. Order of draws: ``reference.stream_episode``."""
    T, D = x.shape
    P = T // 2 - 1
    st = _mix64(key + _mix64(np.uint64(e) * _GOLDEN))
    for p in range(P):
        st, c = _below(st, K - 1)
        cls[p] = 1 + c
    st, q = _below(st, P)
    scale, norm = 1.0 / math.sqrt(D), 1.0 / math.sqrt(1.0 + epsilon * epsilon)
    x[:] = 0.0
    labels[:] = -1
    for p in range(P + 1):
        c = cls[p] if p < P else cls[q]
        m = -1
        for j in range(p if p < P else P):  # a repeated class shares its mean and label
            if cls[j] == c:
                m = j
                break
        if m < 0:
            m = p
            for d in range(D):
                st, z = _normal(st, ki, wi, fi)
                means[m, 0, d] = z * scale
            for d in range(D):
                st, z = _normal(st, ki, wi, fi)
                means[m, 1, d] = z * scale
        for d in range(D):
            st, z = _normal(st, ki, wi, fi)
            x[2 * p, d] = (means[m, 0, d] + epsilon * noise_std * z) * norm
        if p < P:
            for d in range(D):
                x[2 * p + 1, d] = means[m, 1, d]
            labels[2 * p + 1] = c
    for d in range(D):
        st, z = _normal(st, ki, wi, fi)
        decoy[d] = z * scale
    return cls[q]


@njit(cache=True, parallel=True)
def stream_episodes_kernel(key, first, n, K, D, T, epsilon, noise_std, ki, wi, fi):
    """Episodes first .. first+n-1 of stream ``key``, materialised: tokens, labels, target, decoy."""
    P = T // 2 - 1
    tokens, labels = np.empty((n, T, D)), np.empty((n, T), dtype=np.int64)
    target, decoy = np.empty(n, dtype=np.int64), np.empty((n, D))
    for i in prange(n):
        cls, means = np.empty(P, dtype=np.int64), np.empty((P + 1, 2, D))
        target[i] = _draw_episode(
            key, first + i, K, epsilon, noise_std, ki, wi, fi, tokens[i], labels[i], decoy[i], cls, means
        )
    return tokens, labels, target, decoy


# No fastmath here: numba compiles the callee _draw_episode with its caller's flags, and contraction
# would change the draws (found when the fastmath version, compiled first, broke draw-for-draw equality).
@njit(cache=True, parallel=True)
def stream_score_kernel(
    key, first, n, K, D, T, epsilon, noise_std, ki, wi, fi, a, sim, sep, beta, nn, max_iter, tol, blocks
):
    """correct (n,) bool for episodes first .. first+n-1, each drawn, scored and forgotten. Work is split
    in ``blocks`` contiguous blocks (one buffer set each, so memory is blocks x T x D); the result does
    not depend on the split, since every episode seeds its own stream."""
    P = T // 2 - 1
    inv = 1.0 / (a + 1.0)
    correct = np.zeros(n, dtype=np.bool_)
    bank = np.zeros((1, D))
    for b in prange(blocks):
        x, labels, decoy = np.empty((T, D)), np.empty(T, dtype=np.int64), np.empty(D)
        cls, means = np.empty(P, dtype=np.int64), np.empty((P + 1, 2, D))
        w, y, xi, xi_new, s = np.empty(T), np.empty(D), np.empty(D), np.empty(D), np.empty(T)
        for i in range(b * n // blocks, (b + 1) * n // blocks):
            target = _draw_episode(key, first + i, K, epsilon, noise_std, ki, wi, fi, x, labels, decoy, cls, means)
            pred, _ = _retrieve_one(
                x, labels, decoy, bank, False, a, inv, sim, sep, beta, nn, max_iter, tol, w, y, xi, xi_new, s
            )
            correct[i] = pred == target
    return correct


@njit(cache=True)
def stream_normals_kernel(key, n, ki, wi, fi):
    """n standard normals of one stream: the engine's own generator alone (benchmarks)."""
    st = key
    out = np.empty(n)
    for i in range(n):
        st, out[i] = _normal(st, ki, wi, fi)
    return out

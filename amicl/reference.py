"""Plain-NumPy reference of every AMICL kernel, vectorised over episodes: the executable specification.

``amicl.kernels`` must agree with these functions to rtol 1e-10 in float64 (tests/test_kernels.py).
Nothing here is tuned for speed beyond vectorising over the episode axis.

Notation (AMICL notebook; Ramsauer et al. 2020; Millidge et al. 2022, "Universal Hopfield Networks"):
tokens x_t (E, T, D); bound memories m_t = (a x_{t-1} + x_t)/(a+1); keys k_t = m_t with the query's
own key replaced by a decoy; query xi = m_T; values v_t = x_t; output y = V^T sep(sim(K, xi)).
"""

from __future__ import annotations

import numpy as np

SIM_CODES = {"dot": 0, "pearson": 1, "euclidean": 2, "manhattan": 3}
SEP_CODES = {"argmax": 0, "softmax": 1, "power": 2}


def bind(tokens: np.ndarray, a: float) -> np.ndarray:
    """m_t = (a x_{t-1} + x_t)/(a+1), the predecessor of t = 0 wrapping to the last token (AMICL)."""
    return (a * np.roll(tokens, 1, axis=-2) + tokens) / (a + 1.0)


def keys_and_query(tokens: np.ndarray, decoy: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray]:
    """Keys (E, T, D): bound memories with the last one replaced by ``decoy``; query (E, D) = m_T."""
    m = bind(tokens, a)
    query = m[:, -1].copy()
    m[:, -1] = decoy
    return m, query


def similarity(keys: np.ndarray, xi: np.ndarray, kind: str) -> np.ndarray:
    """sim(k_t, xi) for keys (E, T, D) and states xi (E, D) -> (E, T)."""
    if kind == "dot":
        return np.einsum("etd,ed->et", keys, xi)
    if kind == "pearson":  # correlation over the D components; 0 where a vector is constant
        kc = keys - keys.mean(axis=-1, keepdims=True)
        xc = xi - xi.mean(axis=-1, keepdims=True)
        den = np.sqrt((kc**2).sum(-1) * (xc**2).sum(-1)[:, None])
        num = np.einsum("etd,ed->et", kc, xc)
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    if kind == "euclidean":
        return -np.sqrt(((keys - xi[:, None]) ** 2).sum(-1))
    if kind == "manhattan":
        return -np.abs(keys - xi[:, None]).sum(-1)
    raise ValueError(f"similarity must be one of {', '.join(SIM_CODES)}; got {kind!r}")


def separation(s: np.ndarray, kind: str, beta: float = 1.0, n: float = 2.0) -> np.ndarray:
    """Weights over memories (E, T) from scores (E, T); each row sums to 1 (or is 0 for power).

    argmax: one-hot at the first maximum (the beta -> inf limit of softmax);
    softmax: softmax(beta s) (Ramsauer et al. 2020, Eq. 3);
    power: max(s, 0)^n normalised, the rectified polynomial of dense associative memory
    (Krotov & Hopfield 2016); an all-zero row when no score is positive.
    """
    if kind == "argmax":
        w = np.zeros_like(s)
        w[np.arange(s.shape[0]), s.argmax(axis=1)] = 1.0
        return w
    if kind == "softmax":
        z = np.exp(beta * (s - s.max(axis=1, keepdims=True)))
        return z / z.sum(axis=1, keepdims=True)
    if kind == "power":
        f = np.maximum(s, 0.0) ** n
        tot = f.sum(axis=1, keepdims=True)
        return np.divide(f, tot, out=np.zeros_like(f), where=tot > 0)
    raise ValueError(f"separation must be one of {', '.join(SEP_CODES)}; got {kind!r}")


def retrieve(
    tokens: np.ndarray,
    token_labels: np.ndarray,
    decoy: np.ndarray,
    label_bank: np.ndarray | None,
    a: float,
    sim: str,
    sep: str,
    beta: float,
    n: float,
    max_iter: int,
    tol: float,
):
    """Retrieve and read out every episode. Returns pred (E,), weights (E, T), output (E, D), n_iter (E,).

    Iterated retrieval runs the modern-Hopfield update xi <- K^T sep(sim(K, xi)) in key space
    (Ramsauer et al. 2020, Eq. 3 with X = K) until max|xi_new - xi| <= tol or ``max_iter`` steps;
    the output is then V^T sep(sim(K, xi)). ``max_iter = 0`` is one-step retrieval.

    Readout: with argmax separation the output is one stored token, and the prediction is its label
    (-1 for an item token), the notebook's exact test y == lambda. Otherwise the prediction is the
    label whose vector has the largest dot product with y, over ``label_bank`` (row = label id) or,
    if None, over the episode's own label tokens; -1 when every weight is 0.
    """
    keys, xi = keys_and_query(tokens, decoy, a)
    E = tokens.shape[0]
    w = separation(similarity(keys, xi, sim), sep, beta, n)
    n_iter = np.zeros(E, dtype=np.int64)
    active = np.ones(E, dtype=bool)
    for _ in range(max_iter):
        if not active.any():
            break
        xi_new = np.einsum("et,etd->ed", w[active], keys[active])
        n_iter[active] += 1
        done = np.abs(xi_new - xi[active]).max(axis=1) <= tol
        xi[active] = xi_new
        w[active] = separation(similarity(keys[active], xi_new, sim), sep, beta, n)
        idx = np.flatnonzero(active)
        active[idx[done]] = False
    y = np.einsum("et,etd->ed", w, tokens)
    return readout(w, y, tokens, token_labels, label_bank, sep), w, y, n_iter


def readout(w, y, tokens, token_labels, label_bank, sep: str) -> np.ndarray:
    """Label predicted from weights w (E, T) and output y (E, D); see ``retrieve``."""
    E = w.shape[0]
    if sep == "argmax":
        return token_labels[np.arange(E), w.argmax(axis=1)]
    if label_bank is not None:
        pred = (y @ label_bank.T).argmax(axis=1).astype(np.int64)
    else:
        s = np.einsum("etd,ed->et", tokens, y)
        s = np.where(token_labels >= 0, s, -np.inf)
        best = s.argmax(axis=1)
        pred = np.where(np.isfinite(s[np.arange(E), best]), token_labels[np.arange(E), best], -1)
    return np.where(w.sum(axis=1) > 0, pred, -1)


def retrieve_single_loop(tokens, token_labels, decoy, a: float) -> int:
    """One episode the way the published notebook does it: Python loops over tokens, dot product,
    argmax, one step. Used only as the per-trial baseline in ``benchmarks/bench_amicl.py``."""
    T = tokens.shape[0]
    memories = []
    for t in range(T):
        memories.append((a * tokens[t - 1] + tokens[t]) / (a + 1))
    query = memories[T - 1]
    memories[T - 1] = decoy
    scores = [np.dot(m, query) for m in memories]
    return int(token_labels[int(np.argmax(scores))])

"""Plain-NumPy reference of every AMICL kernel, vectorised over episodes: the executable specification.

``amicl.memory.kernels`` must agree with these functions to rtol 1e-10 in float64 (tests/test_kernels.py).
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


# ------------------------------------------------------------------------------------------------
# The streaming generator's random numbers, in plain Python: the specification ``amicl.memory.kernels``'
# streaming kernels must reproduce draw for draw (tests/test_streaming.py).

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
ZIG_R = 3.6541528853610088  # Marsaglia & Tsang (2000): 256-layer ziggurat, rightmost layer edge
ZIG_V = 0.00492867323399  # and the common area of every layer


def mix64(z: int) -> int:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijection of 64-bit words."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def episode_state(key: int, e: int) -> int:
    """The starting state of episode ``e``'s stream under the root ``key``."""
    return mix64((key + mix64((e * GOLDEN) & MASK64)) & MASK64)


class SplitMix64:
    """SplitMix64: state += golden gamma, output mix64(state)."""

    def __init__(self, state: int):
        self.state = state

    def next(self) -> int:
        self.state = (self.state + GOLDEN) & MASK64
        return mix64(self.state)

    def uniform(self) -> float:
        """In [0, 1): the top 53 bits."""
        return (self.next() >> 11) * 2.0**-53

    def below(self, n: int) -> int:
        """Uniform in [0, n) from the top 32 bits (Lemire's multiply-shift; bias < n / 2**32)."""
        return ((self.next() >> 32) * n) >> 32

    def normal(self, ki, wi, fi) -> float:
        """Standard normal by the 256-layer ziggurat (the layout of NumPy's legacy 64-bit sampler)."""
        while True:
            r = self.next()
            idx = r & 0xFF
            r >>= 8
            sign = r & 1
            rabs = (r >> 1) & 0x000FFFFFFFFFFFFF
            x = rabs * wi[idx]
            if sign:
                x = -x
            if rabs < ki[idx]:
                return x
            if idx == 0:  # the tail beyond ZIG_R, by Marsaglia's exponential rejection
                while True:
                    xx = -np.log1p(-self.uniform()) / ZIG_R
                    yy = -np.log1p(-self.uniform())
                    if yy + yy > xx * xx:
                        return -(ZIG_R + xx) if (rabs >> 8) & 1 else ZIG_R + xx
            elif (fi[idx - 1] - fi[idx]) * self.uniform() + fi[idx] < np.exp(-0.5 * x * x):
                return x


def ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ki uint64, wi, fi) for 256 layers over 52-bit integers (Marsaglia & Tsang 2000, as NumPy lays them)."""
    m = 2.0**52
    ki, wi, fi = np.zeros(256, dtype=np.uint64), np.zeros(256), np.zeros(256)
    dn = tn = ZIG_R
    q = ZIG_V / np.exp(-0.5 * dn * dn)
    ki[0], ki[1] = np.uint64(dn / q * m), np.uint64(0)
    wi[0], wi[255] = q / m, dn / m
    fi[0], fi[255] = 1.0, np.exp(-0.5 * dn * dn)
    for i in range(254, 0, -1):
        dn = np.sqrt(-2.0 * np.log(ZIG_V / dn + np.exp(-0.5 * dn * dn)))
        ki[i + 1] = np.uint64(dn / tn * m)
        tn = dn
        fi[i] = np.exp(-0.5 * dn * dn)
        wi[i] = dn / m
    return ki, wi, fi


def stream_episode(key: int, e: int, K: int, D: int, T: int, epsilon: float, noise_std: float):
    """Episode ``e`` of the stream ``key``, drawn as the streaming kernel draws it: the classes of the
    T/2 - 1 context pairs uniform on {1..K-1}, the query's pair, then for each new class its mean and
    label ~ N(0, I/D), each item's noise, and the decoy. Returns tokens (T, D), labels (T,), target, decoy (D,)."""
    ki, wi, fi = ziggurat_tables()
    g = SplitMix64(episode_state(key, e))
    P = T // 2 - 1
    cls = [1 + g.below(K - 1) for _ in range(P)]
    q = g.below(P)
    scale, norm = 1.0 / np.sqrt(D), 1.0 / np.sqrt(1.0 + epsilon**2)
    tokens, labels = np.zeros((T, D)), np.full(T, -1, dtype=np.int64)
    mean = {}
    for p in range(P + 1):
        c = cls[p] if p < P else cls[q]
        if c not in mean:  # a repeated class shares its mean and label
            mean[c] = (
                np.array([g.normal(ki, wi, fi) * scale for _ in range(D)]),
                np.array([g.normal(ki, wi, fi) * scale for _ in range(D)]),
            )
        mu, lam = mean[c]
        tokens[2 * p] = (mu + epsilon * noise_std * np.array([g.normal(ki, wi, fi) for _ in range(D)])) * norm
        if p < P:
            tokens[2 * p + 1], labels[2 * p + 1] = lam, c
    decoy = np.array([g.normal(ki, wi, fi) * scale for _ in range(D)])
    return tokens, labels, cls[q], decoy

"""AMICL: associative memory for in-context learning (Burns, Fukai & Earls, arXiv 2412.15113).

Every token is bound to its predecessor, m_t = (a x_{t-1} + x_t)/(a+1). The query is the incomplete
pattern m_T = a x_{T-1}/(a+1) (the query item, its label slot empty); retrieval compares it with the
stored memories and returns the raw tokens weighted by a separation function, y = V^T sep(sim(K, xi)),
in the Universal-Hopfield form (Millidge et al. 2022). The published notebook is the special case
dot similarity + argmax separation + one step; softmax with inverse temperature beta is the modern
Hopfield network (Ramsauer et al. 2020), the rectified power n the dense associative memory
(Krotov & Hopfield 2016), and ``max_iter > 0`` iterates the Hopfield update to a fixed point.

    >>> from amicl.task import EpisodeConfig, sample_episodes
    >>> eps = sample_episodes(EpisodeConfig(K=512, D=100, T=20), 1000, np.random.default_rng(0))
    >>> retrieve(eps, MemoryConfig(a=2.0)).accuracy(eps.target)   # the notebook's 1000/1000
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amicl.common.validate import Config, check_choice, check_float, check_int
from amicl.memory import reference
from amicl.task import Episodes

SIMILARITIES = tuple(reference.SIM_CODES)
SEPARATIONS = tuple(reference.SEP_CODES)
BACKENDS = ("numba", "numpy")


@dataclass(frozen=True)
class MemoryConfig(Config):
    """The memory model: binding weight ``a``, similarity, separation (``beta`` for softmax, ``n`` for
    power) and the number of Hopfield iterations (0 = one-step retrieval) with tolerance ``tol``."""

    a: float = 2.0
    similarity: str = "dot"
    separation: str = "argmax"
    beta: float = 1.0
    n: float = 2.0
    max_iter: int = 0
    tol: float = 1e-8

    def __post_init__(self):
        object.__setattr__(self, "a", check_float("a", self.a, lo=0.0))
        check_choice("similarity", self.similarity, SIMILARITIES)
        check_choice("separation", self.separation, SEPARATIONS)
        object.__setattr__(self, "beta", check_float("beta", self.beta, lo=0.0, lo_open=True))
        object.__setattr__(self, "n", check_float("n", self.n, lo=1.0))
        object.__setattr__(self, "max_iter", check_int("max_iter", self.max_iter, lo=0))
        object.__setattr__(self, "tol", check_float("tol", self.tol, lo=0.0))
        if self.separation == "power" and self.similarity in ("euclidean", "manhattan"):
            raise ValueError(
                "separation 'power' rectifies scores at 0, so it needs a similarity that can be "
                f"positive (dot or pearson); got similarity={self.similarity!r}"
            )

    def kernel_args(self) -> tuple:
        """(a, similarity code, separation code, beta, n, max_iter, tol): the numba kernels' arguments."""
        return (
            float(self.a),
            reference.SIM_CODES[self.similarity],
            reference.SEP_CODES[self.separation],
            float(self.beta),
            float(self.n),
            int(self.max_iter),
            float(self.tol),
        )


@dataclass(frozen=True)
class Retrieval:
    """What retrieval returns for E episodes of T tokens in D dims.

    pred: (E,) predicted label (-1: an item token or nothing was retrieved).
    weights: (E, T) final separation weights over the memories.
    output: (E, D) the retrieved pattern y.
    n_iter: (E,) Hopfield updates run (0 for one-step retrieval).
    """

    pred: np.ndarray
    weights: np.ndarray
    output: np.ndarray
    n_iter: np.ndarray

    def correct(self, target: np.ndarray) -> np.ndarray:
        return self.pred == target

    def accuracy(self, target: np.ndarray) -> float:
        return float(self.correct(target).mean())


def retrieve(episodes: Episodes, config: MemoryConfig = MemoryConfig(), backend: str = "numba") -> Retrieval:
    """Retrieve the query's completion in every episode; ``backend="numpy"`` runs the reference."""
    check_choice("backend", backend, BACKENDS)
    tokens = np.ascontiguousarray(episodes.tokens, dtype=np.float64)
    decoy = np.ascontiguousarray(episodes.decoy, dtype=np.float64)
    labels = np.ascontiguousarray(episodes.token_labels, dtype=np.int64)
    bank = episodes.label_bank
    c = config
    if backend == "numpy":
        out = reference.retrieve(
            tokens, labels, decoy, bank, c.a, c.similarity, c.separation, c.beta, c.n, c.max_iter, c.tol
        )
    else:
        from amicl.memory.kernels import retrieve_kernel

        use_bank = bank is not None
        bank_arr = np.ascontiguousarray(bank if use_bank else np.zeros((1, tokens.shape[2])), dtype=np.float64)
        out = retrieve_kernel(
            tokens,
            labels,
            decoy,
            bank_arr,
            use_bank,
            *c.kernel_args(),
        )
    return Retrieval(*out)


def score_matrix(tokens: np.ndarray, a: float, similarity: str = "dot") -> np.ndarray:
    """(T, T) scores sim(m_i, m_j) between every pair of bound memories of one episode (T, D):
    row i is memory m_i used as the query. The notebook's figure shows it raw, row-softmaxed and
    row-argmaxed (``reference.separation`` on the rows)."""
    tokens = np.asarray(tokens, dtype=np.float64)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be one episode (T, D), got shape {tokens.shape}")
    check_float("a", a, lo=0.0)
    check_choice("similarity", similarity, SIMILARITIES)
    m = reference.bind(tokens, a)
    T = m.shape[0]
    return reference.similarity(np.broadcast_to(m, (T,) + m.shape), m, similarity)

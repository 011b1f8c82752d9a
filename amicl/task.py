"""The in-context classification task, in the two forms the AMICL paper uses.

1. ``ICLTask``: Reddy's generator (arXiv 2312.03002, ``datasets_v2.py``; the AMICL toy-Transformer
   runs use it with D = 85), vectorised over the batch. Item tokens e*(mu_k + eps*eta/sqrt(D)),
   label tokens lambda_{k mod L}, a concatenated one-hot positional code with a random shift, bursty
   and i.i.d. sequences, novel classes redrawn on every call, and the four test sets.
2. ``sample_episodes``: the AMICL notebook's episodes (``AMICL/AMICL.ipynb``): one label per class,
   class means and labels redrawn every trial, no positional code, the last token zero.

Both produce ``Episodes`` (content tokens, the label id of every token, the target), which is what the
associative-memory model in ``amicl.memory.hopfield`` reads, so the memory theory and the Transformer can be
scored on the very same sequences (``episodes_from_batch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from amicl.common.validate import Config, check_choice, check_float, check_int

TEST_SETS = ("test", "ic", "ic2", "iw")
NOISE_SCALES = ("1/D", "1/sqrt(D)")


@dataclass(frozen=True)
class TaskConfig(Config):
    """Parameters of Reddy's generator (defaults: the AMICL toy-Transformer runs).

    K classes, L labels (class k has label k mod L), N context pairs, positional code of width
    2*Nmax+1, D content dims, within-class noise epsilon, Zipf exponent alpha over classes,
    burstiness B (N/B classes each shown B times; 0 = never bursty), fraction p_B of bursty
    sequences, fraction p_C of novel-class sequences, no_repeats (bursty classes get distinct labels)
    and n_novel fresh classes drawn on every call.
    """

    HELP: ClassVar[dict] = {  # the CLI's option help, here so that every command reads one text
        "K": "Number of classes.", "L": "Number of labels.", "N": "Context (item, label) pairs.",
        "Nmax": "Positional code covers 2*Nmax+1 tokens.", "D": "Content dimensions.",
        "epsilon": "Within-class noise.", "alpha": "Zipf exponent of class frequencies.",
        "B": "Burstiness: N/B classes shown B times.", "p_B": "Fraction of bursty sequences.",
        "p_C": "Fraction of novel-class sequences.", "n_novel": "Novel classes drawn per call.",
    }  # fmt: skip

    K: int = 512
    L: int = 32
    N: int = 8
    Nmax: int = 32
    D: int = 85
    epsilon: float = 0.1
    alpha: float = 0.0
    B: int = 2
    p_B: float = 0.5
    p_C: float = 0.5
    no_repeats: bool = True
    n_novel: int = 128

    def __post_init__(self):
        for name, lo in (("K", 1), ("L", 2), ("N", 1), ("Nmax", 1), ("D", 1), ("B", 0), ("n_novel", 1)):
            object.__setattr__(self, name, check_int(name, getattr(self, name), lo=lo))
        for name in ("epsilon", "alpha"):
            object.__setattr__(self, name, check_float(name, getattr(self, name), lo=0.0))
        for name in ("p_B", "p_C"):
            object.__setattr__(self, name, check_float(name, getattr(self, name), 0.0, 1.0))
        if not isinstance(self.no_repeats, (bool, np.bool_)):
            raise ValueError(f"no_repeats must be a bool, got {self.no_repeats!r}")
        if self.K % self.L:
            raise ValueError(f"L must divide K (class k gets label k mod L); got K={self.K}, L={self.L}")
        if self.Nmax < self.N:
            raise ValueError(f"Nmax must be >= N; got Nmax={self.Nmax}, N={self.N}")
        self._check_mixture(self.p_B, self.p_C)

    def _check_mixture(self, p_B: float, p_C: float) -> None:
        """Check that bursty / novel sequences can be built with these p_B, p_C (novel ones are bursty)."""
        if self.B == 0:
            if p_B > 0 or p_C > 0:
                raise ValueError(f"B=0 means no bursty sequences, so p_B and p_C must be 0; got p_B={p_B}, p_C={p_C}")
            return
        if self.B > self.N or self.N % self.B:
            raise ValueError(f"B must divide N (N/B classes shown B times each); got N={self.N}, B={self.B}")
        m = self.N // self.B
        if p_B > 0 and self.no_repeats and m > self.L:
            raise ValueError(f"no_repeats needs N/B <= L distinct labels; got N/B={m}, L={self.L}")
        if p_B > 0 and m > self.K:
            raise ValueError(f"bursty sequences need N/B <= K distinct classes; got N/B={m}, K={self.K}")
        if p_C > 0 and m > (min(self.L, self.n_novel) if self.no_repeats else self.n_novel):
            raise ValueError(
                f"n_novel={self.n_novel} novel classes cannot fill N/B={m} distinct"
                f"{' labels' if self.no_repeats else ' classes'}"
            )

    @property
    def seq_len(self) -> int:
        """2N + 1 tokens: N (item, label) pairs and the query item."""
        return 2 * self.N + 1

    @property
    def n_pos(self) -> int:
        """Width of the one-hot positional code, 2*Nmax + 1."""
        return 2 * self.Nmax + 1

    @property
    def input_dim(self) -> int:
        return self.n_pos + self.D

    @property
    def test_sets(self) -> tuple[str, ...]:
        """The test sets this config can build (``ic``/``ic2`` need bursty sequences, B > 0)."""
        return TEST_SETS if self.B > 0 else ("test", "iw")


@dataclass(frozen=True)
class Batch:
    """A batch of Reddy sequences.

    x: (S, 2N+1, 2Nmax+1+D) float32 inputs, positional dims first.
    y: (S,) int64 target label (the flipped label for ``flip_labels``).
    labels: (S, N) int64 context labels as shown in the sequence.
    classes: (S, N+1) int64 class of every item, query last; novel class j is written K + j.
    """

    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class Episodes:
    """Content-only sequences for the associative memory.

    tokens: (E, T, D) float64, the query item at T-2 and an empty (zero) query label at T-1.
    token_labels: (E, T) int64, the label id of each label token, -1 for items and the empty slot.
    target: (E,) int64 label id to retrieve.
    decoy: (E, D) float64 random key that replaces the query's own key (so it cannot retrieve itself).
    label_bank: (M, D) float64 label vectors for reading out a mixed output, row m = label id m;
        None reads out among the episode's own label tokens.
    """

    tokens: np.ndarray
    token_labels: np.ndarray
    target: np.ndarray
    decoy: np.ndarray
    label_bank: np.ndarray | None = None

    def __post_init__(self):
        if self.tokens.ndim != 3:
            raise ValueError(f"tokens must be (E, T, D), got shape {self.tokens.shape}")
        E, T, D = self.tokens.shape
        if T < 2:
            raise ValueError(f"episodes need at least 2 tokens, got T={T}")
        if self.token_labels.shape != (E, T):
            raise ValueError(f"token_labels must be {(E, T)}, got {self.token_labels.shape}")
        if self.target.shape != (E,):
            raise ValueError(f"target must be {(E,)}, got {self.target.shape}")
        if self.decoy.shape != (E, D):
            raise ValueError(f"decoy must be {(E, D)}, got {self.decoy.shape}")
        if self.label_bank is not None and (self.label_bank.ndim != 2 or self.label_bank.shape[1] != D):
            raise ValueError(f"label_bank must be (M, {D}), got {self.label_bank.shape}")
        if not (np.isfinite(self.tokens).all() and np.isfinite(self.decoy).all()):
            raise ValueError("tokens and decoy must be finite")

    def __len__(self) -> int:
        return self.tokens.shape[0]


class ICLTask:
    """Reddy's generator with its fixed class means ``mu`` (K, D) and label vectors ``lam`` (L, D)."""

    def __init__(self, config: TaskConfig, mu: np.ndarray, lam: np.ndarray):
        if mu.shape != (config.K, config.D) or lam.shape != (config.L, config.D):
            raise ValueError(
                f"mu must be {(config.K, config.D)} and lam {(config.L, config.D)}; got {mu.shape} and {lam.shape}"
            )
        self.config = config
        self.mu = mu.astype(np.float32)
        self.lam = lam.astype(np.float32)
        ranks = np.arange(1, config.K + 1, dtype=np.float64)
        p = ranks ** (-config.alpha)  # rank-frequency P_k ∝ k^-alpha (Reddy 2024, sec. 2)
        self.class_p = p / p.sum()

    @classmethod
    def from_seed(cls, config: TaskConfig, seed) -> "ICLTask":
        """Draw mu_k, lambda_l ~ N(0, I/D) i.i.d. from ``seed`` (an int, SeedSequence or Generator)."""
        rng = np.random.default_rng(seed)
        scale = 1.0 / np.sqrt(config.D)
        mu = rng.standard_normal((config.K, config.D), dtype=np.float32) * scale
        lam = rng.standard_normal((config.L, config.D), dtype=np.float32) * scale
        return cls(config, mu, lam)

    def sample(
        self,
        size: int,
        rng: np.random.Generator,
        *,
        p_B: float | None = None,
        p_C: float | None = None,
        flip_labels: bool = False,
    ) -> Batch:
        """Draw ``size`` sequences; ``p_B``/``p_C`` override the config (used by the test sets)."""
        c = self.config
        size = check_int("size", size, lo=1)
        p_B = c.p_B if p_B is None else check_float("p_B", p_B, 0.0, 1.0)
        p_C = c.p_C if p_C is None else check_float("p_C", p_C, 0.0, 1.0)
        c._check_mixture(p_B, p_C)
        N, L, K, D = c.N, c.L, c.K, c.D

        novel = rng.random(size) < p_C
        bursty = novel | (rng.random(size) < p_B)  # novel-class sequences are always bursty
        classes = np.empty((size, N + 1), dtype=np.int64)
        iid = ~bursty
        if iid.any():  # N context classes and the target i.i.d. from P
            classes[iid] = rng.choice(K, size=(int(iid.sum()), N + 1), p=self.class_p)
        for rows, n_pool, log_p in ((bursty & ~novel, K, np.log(self.class_p)), (novel, c.n_novel, None)):
            if rows.any():
                classes[rows] = self._bursty_classes(int(rows.sum()), n_pool, log_p, rng)
        labels = classes % L  # training class k and novel class j both map to label (k or j) mod L
        if flip_labels:
            labels = (labels + 1) % L
        classes[novel] += K

        # Item token e*(mu_k + eps*eta/sqrt(D)), e = 1/sqrt(1+eps^2) (Reddy 2024, sec. 2).
        means = np.empty((size, N + 1, D), dtype=np.float32)
        means[~novel] = self.mu[classes[~novel]]
        if novel.any():
            novel_mu = rng.standard_normal((c.n_novel, D), dtype=np.float32) / np.float32(np.sqrt(D))
            means[novel] = novel_mu[classes[novel] - K]
        eta = rng.standard_normal((size, N + 1, D), dtype=np.float32)
        items = (means + np.float32(c.epsilon / np.sqrt(D)) * eta) * np.float32(1 / np.sqrt(1 + c.epsilon**2))

        x = np.zeros((size, c.seq_len, c.input_dim), dtype=np.float32)
        P = c.n_pos
        x[:, 0 : 2 * N : 2, P:] = items[:, :N]
        x[:, 1 : 2 * N : 2, P:] = self.lam[labels[:, :N]]
        x[:, 2 * N, P:] = items[:, N]
        # Concatenated one-hot position with a random shift s ~ U{0, ..., (2Nmax+1) - (2N+1)}.
        shift = rng.integers(0, P - c.seq_len + 1, size=size)
        x[np.arange(size)[:, None], np.arange(c.seq_len), shift[:, None] + np.arange(c.seq_len)] = 1.0
        return Batch(x=x, y=labels[:, N].copy(), labels=labels[:, :N].copy(), classes=classes)

    def _bursty_classes(self, n: int, n_pool: int, log_p, rng: np.random.Generator) -> np.ndarray:
        """(n, N+1) classes of bursty sequences: N/B distinct classes shown B times, target among them."""
        c = self.config
        m = c.N // c.B
        if c.no_repeats:
            # N/B labels without replacement, then one class per label, uniform among those sharing it.
            n_labels = min(c.L, n_pool)
            lab = np.argsort(rng.random((n, n_labels)), axis=1)[:, :m]
            per_label = (n_pool - lab + c.L - 1) // c.L  # classes j < n_pool with j mod L == label
            chosen = lab + c.L * np.floor(rng.random((n, m)) * per_label).astype(np.int64)
        else:
            # N/B distinct classes without replacement from P (Gumbel top-k; uniform for novel pools).
            score = rng.gumbel(size=(n, n_pool)) + (0.0 if log_p is None else log_p)
            chosen = np.argsort(-score, axis=1)[:, :m]
        context = np.repeat(chosen, c.B, axis=1)
        context = np.take_along_axis(context, np.argsort(rng.random((n, c.N)), axis=1), axis=1)
        target = chosen[np.arange(n), rng.integers(0, m, size=n)]
        return np.concatenate([context, target[:, None]], axis=1)

    def test_set(self, name: str, size: int, rng: np.random.Generator) -> Batch:
        """One of the four test sets of the AMICL/Reddy code.

        ``test``: the training mixture; ``ic``: novel classes, bursty (only ICL solves it);
        ``ic2``: known classes, bursty, every label shifted to (l+1) mod L (ICL against the weights);
        ``iw``: known classes, i.i.d. context (in-weights learning).
        """
        check_choice("test set", name, TEST_SETS)
        overrides = {
            "test": {},
            "ic": {"p_B": 1.0, "p_C": 1.0},
            "ic2": {"p_B": 1.0, "p_C": 0.0, "flip_labels": True},
            "iw": {"p_B": 0.0, "p_C": 0.0},
        }[name]
        return self.sample(size, rng, **overrides)

    def test_sets(self, size: int, rng: np.random.Generator) -> dict[str, Batch]:
        """Every available test set, drawn once (S = 10,000 in the paper's code)."""
        return {name: self.test_set(name, size, rng) for name in self.config.test_sets}


def episodes_from_batch(batch: Batch, task: ICLTask, rng: np.random.Generator) -> Episodes:
    """Reddy sequences as associative-memory episodes: content dims only, an empty query label appended.

    The label bank is the task's L label vectors, so a mixed output is read out over all L labels,
    as the Transformer's 32 logits are.
    """
    c = task.config
    S = batch.x.shape[0]
    tokens = np.zeros((S, c.seq_len + 1, c.D))
    tokens[:, : c.seq_len] = batch.x[:, :, c.n_pos :]
    token_labels = np.full((S, c.seq_len + 1), -1, dtype=np.int64)
    token_labels[:, 1 : 2 * c.N : 2] = batch.labels
    decoy = rng.standard_normal((S, c.D)) / np.sqrt(c.D)
    return Episodes(tokens, token_labels, batch.y.copy(), decoy, task.lam.astype(np.float64))


@dataclass(frozen=True)
class EpisodeConfig(Config):
    """The AMICL notebook's episodes: D dims, K classes (one label each), T tokens, noise epsilon.

    ``noise`` is the std of the item noise n before epsilon: "1/D" as in the notebook, or
    "1/sqrt(D)" as in Reddy's generator.
    """

    HELP: ClassVar[dict] = {
        "D": "Content dimensions.", "K": "Number of classes.", "T": "Tokens per episode (even).",
        "epsilon": "Within-class noise.", "noise": "Std of the item noise before epsilon.",
    }  # fmt: skip

    D: int = 100
    K: int = 512
    T: int = 20
    epsilon: float = 0.1
    noise: str = "1/D"

    def __post_init__(self):
        object.__setattr__(self, "D", check_int("D", self.D, lo=1))
        object.__setattr__(self, "K", check_int("K", self.K, lo=2))
        object.__setattr__(self, "T", check_int("T", self.T, lo=4))
        object.__setattr__(self, "epsilon", check_float("epsilon", self.epsilon, lo=0.0))
        check_choice("noise", self.noise, NOISE_SCALES)
        if self.T % 2:
            raise ValueError(f"T must be even ((item, label) pairs), got T={self.T}")


def sample_episodes(config: EpisodeConfig, size: int, rng: np.random.Generator) -> Episodes:
    """Draw ``size`` notebook episodes (AMICL notebook, sec. 1 of the reference notes).

    T/2 - 1 context classes uniform with replacement from {1, ..., K-1}; the query class is one of them.
    Means mu and labels lambda ~ N(0, I/D), fresh every trial (drawn only for the classes used, which
    is the same in distribution). Items (mu + eps*n)/sqrt(1+eps^2), labels lambda exactly, last token 0.
    """
    size = check_int("size", size, lo=1)
    D, T, eps = config.D, config.T, config.epsilon
    P = T // 2 - 1
    cls = rng.integers(1, config.K, size=(size, P))
    q_slot = rng.integers(0, P, size=size)
    first = _first_occurrence(cls)  # repeated classes share their mean and label
    scale = 1.0 / np.sqrt(D)
    mu = (rng.standard_normal((size, P, D)) * scale)[np.arange(size)[:, None], first]
    lam = (rng.standard_normal((size, P, D)) * scale)[np.arange(size)[:, None], first]
    noise_std = 1.0 / D if config.noise == "1/D" else scale
    slots = np.concatenate([np.arange(P)[None].repeat(size, 0), q_slot[:, None]], axis=1)
    means = np.take_along_axis(mu, slots[:, :, None], axis=1)  # (E, P+1, D), query item last
    items = (means + eps * noise_std * rng.standard_normal((size, P + 1, D))) / np.sqrt(1 + eps**2)

    tokens = np.zeros((size, T, D))
    tokens[:, 0 : 2 * P : 2] = items[:, :P]
    tokens[:, 1 : 2 * P : 2] = lam
    tokens[:, 2 * P] = items[:, P]
    token_labels = np.full((size, T), -1, dtype=np.int64)
    token_labels[:, 1 : 2 * P : 2] = cls
    target = cls[np.arange(size), q_slot]
    decoy = rng.standard_normal((size, D)) * scale
    return Episodes(tokens, token_labels, target, decoy, None)


def _first_occurrence(c: np.ndarray) -> np.ndarray:
    """For (E, P) ids, the index of the first slot in each row holding the same id."""
    E, P = c.shape
    order = np.argsort(c, axis=1, kind="stable")
    sc = np.take_along_axis(c, order, axis=1)
    start = np.ones_like(sc, dtype=bool)
    start[:, 1:] = sc[:, 1:] != sc[:, :-1]
    run_start = np.maximum.accumulate(np.where(start, np.arange(P), 0), axis=1)
    first = np.empty_like(order)
    np.put_along_axis(first, order, np.take_along_axis(order, run_start, axis=1), axis=1)
    return first

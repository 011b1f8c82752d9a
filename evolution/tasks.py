"""Synthetic long-context tasks for NAMM (1-4K tokens) where most of the context is irrelevant or harmful.

Every prompt is exactly ``context`` tokens: BOS, a body that mixes the relevant material with filler
words (irrelevant) and, for some tasks, stale facts (harmful), then ``QUERY ... ANSWER``; the answer is
one token, scored by exact match. A memory policy can keep the score while evicting the filler.

The tasks: ``kv_retrieval`` (two-token keys -> value, among many pairs), ``passage_retrieval`` (which
labelled passage contains these words?), ``icl_classification`` (the ICL task with many more pairs
than the query needs), ``variable_tracking`` (variables reassigned; only the last assignment counts),
``needle`` (one pair hidden in filler) and ``multi_hop`` (follow a -> b -> c). The base model trains
on all of them; a NAMM is evolved on the stages of ``EvolveConfig`` and every other task is held out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amicl.common.validate import check_choice, check_int

# vocabulary layout
PAD, BOS, SEP, QUERY, ANSWER, ARROW = 0, 1, 2, 3, 4, 5
FILLER = np.arange(16, 80)  # 64 filler words
KEYS = np.arange(80, 144)  # 64 key symbols (pairs of them name a key)
VALUES = np.arange(144, 208)  # 64 values
LABELS = np.arange(208, 240)  # 32 labels
VOCAB = 256  # the tasks' token ids lie below this; the base model's vocabulary (evolution.config)


@dataclass(frozen=True)
class Prompts:
    """tokens: (n, context) int64 prompts ending with ANSWER; answer: (n,) the answer there.

    With several queries (``sample(..., queries=k)``, used to train the base model) the prompt ends
    with k ``QUERY q ANSWER a`` segments, the last one without its ``a``; ``answers`` (n, k) holds
    every segment's answer in order, at the positions where ``tokens == ANSWER``.
    """

    tokens: np.ndarray
    answers: np.ndarray

    @property
    def answer(self) -> np.ndarray:
        return self.answers[:, -1]


def _place(rng, n: int, length: int, segments: list[np.ndarray], filler_frac: float) -> np.ndarray:
    """(n, length) bodies: each row's segments in order, separated by random runs of filler words."""
    body = rng.choice(FILLER, size=(n, length))
    for i in range(n):
        segs = [s[i] for s in segments]
        used = sum(len(s) for s in segs)
        if used > length:
            raise ValueError(f"context too short: {used} task tokens do not fit in {length}")
        gaps = (
            rng.multinomial(length - used, np.ones(len(segs) + 1) / (len(segs) + 1))
            if filler_frac > 0
            else np.r_[np.zeros(len(segs), int), length - used]
        )
        pos = 0
        for gap, seg in zip(gaps, segs):
            pos += gap
            body[i, pos : pos + len(seg)] = seg
            pos += len(seg)
    return body


def _wrap(body: np.ndarray, query: np.ndarray, answer: np.ndarray) -> Prompts:
    """BOS body, then per query ``QUERY q ANSWER a`` (the last one ends at ANSWER).
    body: (n, length); query: (n, k, q_len); answer: (n, k)."""
    n, k = answer.shape
    parts = [np.full((n, 1), BOS), body]
    for i in range(k):
        parts += [np.full((n, 1), QUERY), query[:, i], np.full((n, 1), ANSWER)]
        if i < k - 1:
            parts.append(answer[:, i : i + 1])
    return Prompts(np.concatenate(parts, 1), answer)


def sample(
    task: str, n: int, context: int, rng: np.random.Generator, filler_frac: float = 0.5, queries: int = 1
) -> Prompts:
    """``n`` prompts of exactly ``context`` tokens for ``task``; ``filler_frac`` of the body is filler;
    ``queries`` questions about the same body at the end (one for evaluation, more to train on)."""
    check_choice("task", task, TASKS)
    n = check_int("n", n, lo=1)
    context = check_int("context", context, lo=32)
    queries = check_int("queries", queries, lo=1)
    if not 0 <= filler_frac < 1:
        raise ValueError(f"filler_frac must be in [0, 1), got {filler_frac}")
    q_len = {
        "kv_retrieval": 2,
        "needle": 2,
        "variable_tracking": 1,
        "multi_hop": 1,
        "passage_retrieval": 3,
        "icl_classification": 1,
    }[task]
    length = context - queries * (q_len + 3)  # BOS, per query QUERY q ANSWER a, the last a left out
    if length < 16:
        raise ValueError(f"context {context} is too short for {queries} queries")
    budget = int(length * (1 - filler_frac))
    return _wrap(*GENERATORS[task](rng, n, length, budget, filler_frac, queries))


def _distinct(rng, pool, n: int, k: int) -> np.ndarray:
    """(n, k) draws from ``pool`` without replacement within each row."""
    pool = np.asarray(pool)
    if k > len(pool):
        raise ValueError(f"cannot draw {k} distinct symbols from {len(pool)}")
    return pool[np.argsort(rng.random((n, len(pool))), axis=1)[:, :k]]


def _distinct_keys(rng, n, m):
    """(n, m, 2) distinct two-symbol keys per row."""
    flat = _distinct(rng, np.arange(len(KEYS) ** 2), n, m)
    return np.stack([KEYS[flat // len(KEYS)], KEYS[flat % len(KEYS)]], -1)


def _pick(rng, m: int, n: int, k: int) -> np.ndarray:
    """(n, k) indices into m items: k distinct ones per row where m >= k, so that a later query of a
    training prompt is not answered by copying an earlier one; one query draws as it always has."""
    return _distinct(rng, np.arange(m), n, k) if 1 < k <= m else rng.integers(0, m, size=(n, k))


# Each generator returns body (n, length), query (n, k, q_len) and answer (n, k) for k queries.
def _kv_retrieval(rng, n, length, budget, ff, k, m=None):
    m = m or max(2, budget // 4)  # "k1 k2 v SEP"
    keys = _distinct_keys(rng, n, m)
    vals = rng.choice(VALUES, size=(n, m))
    pairs = np.concatenate([keys, vals[..., None], np.full((n, m, 1), SEP)], -1)
    body = _place(rng, n, length, [pairs[:, j] for j in range(m)], ff)
    j, rows = _pick(rng, m, n, k), np.arange(n)[:, None]
    return body, keys[rows, j], vals[rows, j]


def _needle(rng, n, length, budget, ff, k):
    return _kv_retrieval(rng, n, length, budget, max(ff, 0.5), k, m=1)


def _passage_retrieval(rng, n, length, budget, ff, k, words=12):
    m = max(2, min(len(LABELS), budget // (words + 2)))  # "label w1..w12 SEP"
    labels = _distinct(rng, LABELS, n, m)
    content = rng.choice(np.r_[KEYS, VALUES], size=(n, m, words))
    passages = np.concatenate([labels[..., None], content, np.full((n, m, 1), SEP)], -1)
    body = _place(rng, n, length, [passages[:, j] for j in range(m)], ff)
    j, rows = _pick(rng, m, n, k), np.arange(n)[:, None]
    picks = np.sort(_distinct(rng, np.arange(words), n * k, 3), axis=1).reshape(n, k, 3)
    query = np.take_along_axis(content[rows, j], picks, axis=2)  # three of the passage's words, in order
    return body, query, labels[rows, j]


def _icl_classification(rng, n, length, budget, ff, k, per_class=4):
    """Classes own disjoint sets of ``per_class`` item symbols; each class has a random label."""
    n_classes = len(KEYS) // per_class
    m = max(2, budget // 3)  # "item label SEP"
    cls = rng.integers(0, n_classes, size=(n, m))
    label_of = rng.choice(LABELS, size=(n, n_classes))
    items = KEYS[cls * per_class + rng.integers(0, per_class, size=(n, m))]
    pairs = np.stack([items, label_of[np.arange(n)[:, None], cls], np.full((n, m), SEP)], -1)
    body = _place(rng, n, length, [pairs[:, j] for j in range(m)], ff)
    rows = np.arange(n)[:, None]
    qc = cls[rows, _pick(rng, m, n, k)]  # classes shown in context
    query = KEYS[qc * per_class + rng.integers(0, per_class, size=(n, k))]
    return body, query[..., None], label_of[rows, qc]


def _variable_tracking(rng, n, length, budget, ff, k, n_vars=8):
    m = max(n_vars, budget // 3)  # "var value SEP"; later assignments overwrite earlier ones
    var = _distinct(rng, KEYS, n, n_vars)
    which = rng.integers(0, n_vars, size=(n, m))
    vals = rng.choice(VALUES, size=(n, m))
    stmts = np.stack([var[np.arange(n)[:, None], which], vals, np.full((n, m), SEP)], -1)
    body = _place(rng, n, length, [stmts[:, j] for j in range(m)], ff)
    asked = [rng.choice(u, size=k, replace=k > len(u)) for u in map(np.unique, which)]
    q = np.array(asked)  # (n, k) variables asked about
    last = np.array([[np.flatnonzero(which[i] == v)[-1] for v in q[i]] for i in range(n)])
    rows = np.arange(n)[:, None]
    return body, var[rows, q][..., None], vals[rows, last]


def _multi_hop(rng, n, length, budget, ff, k):
    m = max(4, budget // 4)  # "a ARROW b SEP" edges of disjoint two-hop chains a -> b -> c
    chains = max(2, min(m // 2, (len(KEYS) + len(VALUES)) // 3))  # symbols are not reused
    sym = _distinct(rng, np.r_[KEYS, VALUES], n, 3 * chains).reshape(n, chains, 3)
    edges = np.concatenate(
        [
            np.stack([sym[:, :, 0], np.full((n, chains), ARROW), sym[:, :, 1], np.full((n, chains), SEP)], -1),
            np.stack([sym[:, :, 1], np.full((n, chains), ARROW), sym[:, :, 2], np.full((n, chains), SEP)], -1),
        ],
        1,
    )
    order = np.argsort(rng.random((n, 2 * chains)), axis=1)
    edges = np.take_along_axis(edges, order[..., None], axis=1)
    body = _place(rng, n, length, [edges[:, j] for j in range(2 * chains)], ff)
    j, rows = _pick(rng, chains, n, k), np.arange(n)[:, None]
    return body, sym[rows, j, 0][..., None], sym[rows, j, 2]


# The task registry: name -> generator (rng, n, length, budget, filler_frac, queries) -> (body, query, answer).
# The CLI's choices and the parametrised task tests read it; a task is added by registering it here.
GENERATORS = {
    "kv_retrieval": _kv_retrieval,
    "passage_retrieval": _passage_retrieval,
    "icl_classification": _icl_classification,
    "variable_tracking": _variable_tracking,
    "needle": _needle,
    "multi_hop": _multi_hop,
}
TASKS = tuple(GENERATORS)

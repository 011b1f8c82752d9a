"""Scans of a story corpus with its words abstracted to their classes: where the IOI structure occurs,
whether any IOI prompt's frame can be copied from it, which prompt tokens it trains, and how much of it
a count-based n-gram model already predicts (the floor a language model should beat)."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from transformers_mini.lm.stories import NAMES, PLACES, SEND, THINGS

_NAME = "(?:" + "|".join(NAMES) + ")"


@lru_cache(maxsize=None)
def _class_patterns() -> tuple:
    """(regex, class) pairs, longest words first: names N, places P, things with any article O, the
    verbs that send something V."""
    alt = lambda ws: "|".join(sorted(map(re.escape, ws), key=len, reverse=True))  # noqa: E731
    return (
        (re.compile(rf"\b(?:(?:a|an|the) )?(?:{alt(THINGS)})\b"), "O"),
        (re.compile(rf"\b(?:{alt(PLACES)})\b"), "P"),
        (re.compile(rf"\b{_NAME}\b"), "N"),
        (re.compile(rf"\b(?:{alt((*SEND, 'gave', 'handed'))})\b"), "V"),
    )


def abstract(text: str) -> str:
    """``text`` with names, places, things and sending verbs replaced by their classes (N, P, O, V)."""
    for rx, cls in _class_patterns():
        text = rx.sub(cls, text)
    return text


def ioi_orders(text: str) -> list[str]:
    """Every IOI structure in one story: a sentence in which a name comes before "to" + another name,
    those two having been introduced together ("A and B") earlier in the story. By the latest such
    introduction: ABBA when the one who sends is the second-named (the answer is the first), BABA when
    it is the first-named."""
    out = []
    for to in re.finditer(rf"\bto ({_NAME})\b", text):
        y = to.group(1)
        start = max(text.rfind(c, 0, to.start()) for c in ".!?") + 1  # the sentence so far
        for m in re.finditer(rf"\b{_NAME}\b", text[start : to.start()]):
            x = m.group()
            if x == y:
                continue
            intros = re.findall(rf"\b({x}|{y}) and ({x}|{y})\b", text[: start + m.end()])
            intros = [(a, b) for a, b in intros if a != b]
            if intros:
                out.append("ABBA" if intros[-1][1] == x else "BABA")
                break
    return out


def names_after_to(text: str) -> int:
    """How often a name follows "to" (the stricter scan: outside the marked IOI frames, never)."""
    return len(re.findall(rf"\bto {_NAME}\b", text))


def copied_prompts(texts: list[str], prompts: list[str]) -> list[str]:
    """The prompts (abstracted) that occur, abstracted, inside some story: what a model could copy."""
    corpus = "\n".join(abstract(t) for t in texts)
    return sorted({a for a in map(abstract, prompts) if a in corpus})


def coverage(tok, train_ids: list[np.ndarray], prompt_texts: list[str]) -> tuple[float, list[str]]:
    """Share of the prompts' token ids (answers included) that occur in the training input, and the
    tokens that do not. ``train_ids``: the stories as training reads them (``train.encode``: cut at the
    context, closing EOS last, which is a target only)."""
    trained = set()
    for x in train_ids:
        trained.update(x[:-1].tolist())
    ids = {i for e in tok.encode_batch(prompt_texts) for i in e.ids}
    missing = sorted(tok.id_to_token(i) for i in ids - trained)
    return 1.0 - len(missing) / len(ids), missing


def ngram_losses(train: list[np.ndarray], val: list[np.ndarray], vocab: int, start: int, order: int = 3,
                 discount: float = 0.75) -> dict[int, float]:  # fmt: skip
    """Validation loss (nats per token, the language model's targets: every token after a story's first,
    its closing EOS excluded) of interpolated absolute-discounting n-gram models of orders 1..``order``,
    counted on ``train``. Each story is read after ``start`` (a start symbol); the unigram is add-one."""

    def grams(seqs, n):
        rows = []
        for s in seqs:
            s = np.concatenate([[start] * (n - 1), s[:-1]])  # drop the closing EOS; pad the start
            if len(s) >= n + 1:  # targets from the story's second token on
                idx = np.arange(n, len(s))
                rows.append(np.stack([s[idx - k] for k in range(n - 1, -1, -1)], 1))
        return np.concatenate(rows) if rows else np.zeros((0, n), np.int64)

    def key(g):
        k = np.zeros(len(g), np.int64)
        for j in range(g.shape[1]):
            k = k * vocab + g[:, j]
        return k

    def lookup(keys, counts, q):
        pos = np.clip(np.searchsorted(keys, q), 0, max(len(keys) - 1, 0))
        return np.where(len(keys) and keys[pos] == q, counts[pos], 0) if len(keys) else np.zeros(len(q), np.int64)

    out = {}
    g = grams(train, order)
    v = grams(val, order)
    uni = np.bincount(g[:, -1], minlength=vocab)
    p = (uni[v[:, -1]] + 1) / (uni.sum() + vocab)
    out[1] = float(-np.log(p).mean())
    for n in range(2, order + 1):
        full_k, full_c = np.unique(key(g[:, -n:]), return_counts=True)
        ctx_k, ctx_c = np.unique(key(g[:, -n:-1]), return_counts=True)
        # distinct continuations of each context
        kinds_k, kinds_c = np.unique(full_k // vocab, return_counts=True)
        c_full = lookup(full_k, full_c, key(v[:, -n:]))
        c_ctx = lookup(ctx_k, ctx_c, key(v[:, -n:-1]))
        kinds = lookup(kinds_k, kinds_c, key(v[:, -n:-1]))
        safe = np.maximum(c_ctx, 1)
        interp = np.maximum(c_full - discount, 0) / safe + discount * kinds / safe * p
        p = np.where(c_ctx > 0, interp, p)
        out[n] = float(-np.log(p).mean())
    return out


def describe_world(train: list[str], val: list[str], tok, context: int, ioi_rate: float) -> dict:
    """The corpus's statistics beside what was asked of it: size and variety, the measured IOI rate
    (with its 95% binomial interval) and orders, names after "to" outside the structure, coverage of
    the IOI prompts' tokens, prompts copyable from it, and the n-gram floor of its validation loss."""
    from scipy.stats import binomtest

    from transformers_mini.lm.stories import ioi_prompts
    from transformers_mini.lm.train import EOS, encode

    orders = [set(ioi_orders(t)) for t in train]
    with_ioi = sum(bool(o) for o in orders)
    ci = binomtest(with_ioi, len(train), ioi_rate if 0 < ioi_rate < 1 else 0.5).proportion_ci()
    words = " ".join(train).split()
    ids, vids = encode(tok, train, context), encode(tok, val, context)
    prompts = [p.text for t in ("package", "paper") for p in ioi_prompts(templates=t)]
    answers = [" " + n for n in NAMES]
    cov, missing = coverage(tok, ids, prompts + answers)
    return {
        "stories": len(train),
        "ioi_rate_requested": ioi_rate,
        "ioi_rate_measured": with_ioi / len(train),
        "ioi_rate_low": float(ci.low),
        "ioi_rate_high": float(ci.high),
        "stories_abba": sum("ABBA" in o for o in orders),
        "stories_baba": sum("BABA" in o for o in orders),
        "names_after_to_outside_ioi": sum(names_after_to(t) for t, o in zip(train, orders) if not o),
        "words": len(words),
        "word_types": len(set(words)),
        "tokens": int(sum(len(x) for x in ids)),
        "tokens_per_story": float(np.mean([len(x) for x in ids])),
        "token_types_used": len({i for x in ids for i in x}),
        "vocabulary": tok.get_vocab_size(),
        "prompt_token_coverage": cov,
        "prompt_tokens_missing": missing,
        "prompts_copyable": copied_prompts(train, prompts),
        "ngram_val_loss": ngram_losses(ids, vids, tok.get_vocab_size(), tok.token_to_id(EOS)),
    }

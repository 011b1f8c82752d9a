"""The story world: seeded and varied; the IOI structure only in its marked frames, at the rate asked;
every IOI prompt token trained, no prompt frame copyable; the n-gram floor against a plain reference."""

import json
import math
import re
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest

from amicl.cli import amicl
from transformers_mini.lm.scan import abstract, copied_prompts, ioi_orders, names_after_to, ngram_losses
from transformers_mini.lm.stories import NAMES, ioi_prompts, stories


@pytest.fixture(scope="module")
def corpus():
    return stories(3000, seed=0, ioi_rate=0.0)


def test_stories_are_seeded_and_varied(corpus):
    assert stories(5, seed=0) == corpus[:5] and stories(5, seed=1) != corpus[:5]
    assert len(set(corpus)) > 0.99 * len(corpus)
    text = " ".join(corpus)
    assert all(re.search(rf"\b{n}\b", text) for n in NAMES)  # every name occurs
    assert re.search(r"\b(she|he)\b", text) and re.search(r"\bgave\b[^.]*\bto\b", text) and '"' in text
    words = text.split()
    assert len(set(words)) > 900  # a vocabulary, not a dozen frames


def test_the_scan_finds_the_structure_in_either_order_and_nothing_else():
    assert ioi_orders("Mary and John went out. It was late. John gave a ball to Mary.") == ["ABBA"]
    assert ioi_orders("Mary and John played. Mary threw the kite to John.") == ["BABA"]
    assert ioi_orders("Then Mary and John played, and John threw the kite to Mary.") == ["ABBA"]
    assert ioi_orders("Mary went out. John saw her. John gave a ball to Mary.") == []  # not introduced together
    assert ioi_orders("Mary and John played. John gave a ball to the dog.") == []  # nothing to a name
    assert ioi_orders("John gave a ball to Mary. Mary and John played.") == []  # before the introduction
    assert ioi_orders("Mary and John played. Sue gave a ball to Mary.") == []  # the sender is not one of them
    assert names_after_to("Tom ran to Sue. Sue went to the park. Tom said to her.") == 1


def test_with_rate_zero_no_story_holds_the_structure(corpus):
    for texts in (corpus, stories(1000, seed=5, part="val", ioi_rate=0.0)):
        assert not any(ioi_orders(t) for t in texts)
        assert sum(names_after_to(t) for t in texts) == 0  # no name ever follows "to"


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_the_measured_rate_is_the_requested_one_with_both_orders_equally_often(rate):
    texts = stories(4000, seed=2, ioi_rate=rate)
    orders = [set(ioi_orders(t)) for t in texts]
    hits = sum(bool(o) for o in orders)
    assert binomtest(hits, len(texts), rate).pvalue > 0.001, hits
    plain = [o.pop() for o in orders if len(o) == 1]  # stories whose only structure is the marked frame
    assert len(plain) > 0.8 * hits and binomtest(plain.count("ABBA"), len(plain), 0.5).pvalue > 0.001
    # outside the marked frames, the story is the rate-0 story, word for word
    for with_frame, without in zip(texts[:300], stories(300, seed=2, ioi_rate=0.0)):
        a, b = with_frame.split(), without.split()
        i = next((k for k in range(len(b)) if a[k] != b[k]), len(b))
        assert a == b or (a[:i] == b[:i] and a[len(a) - (len(b) - i) :] == b[i:] and ioi_orders(with_frame))


def test_no_prompt_frame_can_be_copied_from_the_stories():
    prompts = [p.text for t in ("package", "paper") for p in ioi_prompts(templates=t)]
    assert copied_prompts(stories(3000, seed=1, ioi_rate=0.3), prompts) == []
    # the scan sees a frame whatever its names, place and object
    leak = "Tom was sad. When Sue and Ben went to the zoo, Ben threw the kite to Sue."
    assert copied_prompts([leak], prompts) == ["When N and N went to the P, N V O to"]
    assert abstract("After Mary and Tim went to the swimming pool, Tim gave a bottle of milk to") == (
        "After N and N went to the P, N V O to"
    )


def test_the_world_command_reports_coverage_rate_and_floor(tmp_path):
    r = CliRunner().invoke(amicl, ["lm", "world", "--stories", "2000", "--ioi-rate", "0.1", "--val", "200",
                                   "--out", str(tmp_path / "w")])  # fmt: skip
    assert r.exit_code == 0, r.output
    w = json.loads((tmp_path / "w" / "world.json").read_text())
    assert w["prompt_token_coverage"] == 1.0 and w["prompt_tokens_missing"] == [] and w["prompts_copyable"] == []
    assert w["ioi_rate_low"] <= 0.1 <= w["ioi_rate_high"] and w["names_after_to_outside_ioi"] == 0
    assert w["ngram_val_loss"]["3"] < w["ngram_val_loss"]["2"] < w["ngram_val_loss"]["1"]
    assert json.loads((tmp_path / "w" / "config.json").read_text())["kind"] == "lm-world"


@pytest.mark.slow
def test_the_default_world_trains_every_prompt_token(tmp_path):
    """The full default corpus and tokenizer (the command above exercises the same path at 2,000 stories)."""
    r = CliRunner().invoke(amicl, ["lm", "world", "--val", "100", "--out", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "w" / "world.json").read_text())["prompt_token_coverage"] == 1.0


def _ngram_reference(train, val, vocab, start, order, d=0.75):
    """Interpolated absolute discounting, one probability at a time with dicts."""
    counts = [Counter() for _ in range(order + 1)]
    for s in train:
        s = [start] * (order - 1) + list(s[:-1])
        for i in range(order, len(s)):
            for n in range(1, order + 1):
                counts[n][tuple(s[i - n + 1 : i + 1])] += 1
    total = sum(counts[1].values())
    losses = {n: [] for n in range(1, order + 1)}
    for s in val:
        s = [start] * (order - 1) + list(s[:-1])
        for i in range(order, len(s)):
            p = (counts[1][(s[i],)] + 1) / (total + vocab)
            losses[1].append(-math.log(p))
            for n in range(2, order + 1):
                ctx = tuple(s[i - n + 1 : i])
                c_ctx = sum(c for g, c in counts[n].items() if g[:-1] == ctx)
                kinds = sum(1 for g in counts[n] if g[:-1] == ctx)
                if c_ctx:
                    p = max(counts[n][ctx + (s[i],)] - d, 0) / c_ctx + d * kinds / c_ctx * p
                losses[n].append(-math.log(p))
    return {n: float(np.mean(v)) for n, v in losses.items()}


def test_ngram_losses_match_a_plain_reference():
    rng = np.random.default_rng(0)
    train = [np.append(rng.integers(0, 6, rng.integers(3, 12)), 7) for _ in range(40)]
    val = [np.append(rng.integers(0, 7, rng.integers(3, 12)), 7) for _ in range(10)]
    got = ngram_losses(train, val, vocab=8, start=7, order=3)
    want = _ngram_reference(train, val, vocab=8, start=7, order=3)
    assert got == pytest.approx(want, rel=1e-12)
    # a corpus that repeats one sentence: the trigram model is nearly certain, the unigram is not
    same = [np.array([1, 2, 3, 4, 5, 7])] * 50
    floor = ngram_losses(same, same[:1], vocab=8, start=7)
    assert floor[3] < 0.05 < floor[1]


def test_ioi_prompts_are_balanced_paired_and_answered_by_the_name_said_once():
    ps = ioi_prompts(1000, seed=3)
    ioi = [p for p in ps if p.order != "ABC"]
    assert len(ioi) >= 1000 and sum(p.order == "ABBA" for p in ioi) == sum(p.order == "BABA" for p in ioi)
    for p in ioi:
        names = re.findall("|".join(NAMES), p.text)
        assert names.count(p.io) == 1 and names.count(p.s) == 2 and p.text.endswith(" to") or "give it to" in p.text
    by_pair = {}
    for p in ioi:
        by_pair.setdefault((p.pair, p.order), []).append(p)
    for twins in by_pair.values():  # each prompt and its IO/S swap
        a, b = twins
        assert (a.io, a.s) == (b.s, b.io) and a.template == b.template
    abc = [p for p in ps if p.order == "ABC"]
    assert len(abc) == len(ioi) // 2
    for p in abc:
        names = re.findall("|".join(NAMES), p.text)
        assert len(set(names)) == 3 and names.count(p.io) == 1 and names.count(p.s) == 1
    assert ioi_prompts(100, seed=3) == ioi_prompts(100, seed=3)


def test_the_papers_four_templates_in_both_orders():
    ps = ioi_prompts(templates="paper")
    assert len(ps) == 8
    assert ps[0].text == "After John and Mary went to the store, John gave a bottle of milk to" and ps[0].io == "Mary"
    assert ps[1].text == "After John and Mary went to the store, Mary gave a bottle of milk to" and ps[1].io == "John"
    with pytest.raises(ValueError, match="templates"):
        ioi_prompts(templates="other")
    with pytest.raises(ValueError, match="ioi_rate"):
        stories(5, ioi_rate=1.5)

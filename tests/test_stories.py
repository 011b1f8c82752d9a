"""The story world is seeded and varied, and keeps the IOI test's frames, places and objects out."""

import re

import pytest

from transformers_mini.lm.stories import (
    IOI_OBJECTS,
    IOI_PLACES,
    IOI_TEMPLATES,
    NAMES,
    PAPER_IOI,
    ioi_prompts,
    stories,
)


@pytest.fixture(scope="module")
def corpus():
    return stories(3000, seed=0)


def test_stories_are_seeded_and_varied(corpus):
    assert stories(5, seed=0) == corpus[:5] and stories(5, seed=1) != corpus[:5]
    assert len(set(corpus)) > 0.99 * len(corpus)
    text = " ".join(corpus)
    assert all(re.search(rf"\b{n}\b", text) for n in NAMES)  # every name occurs
    assert re.search(r"\b(she|he)\b", text) and re.search(r"\bgave\b.*\bto\b", text)


def test_ioi_frames_places_and_objects_never_occur_in_stories(corpus):
    text = " ".join(corpus)
    words = [*IOI_PLACES, *(o.split(" ", 1)[1] for o in IOI_OBJECTS), *(p for _, _, _, p, _ in PAPER_IOI)]
    words += [o.split(" ")[-1] for *_, o in PAPER_IOI]
    for w in words:
        assert not re.search(rf"\b{w}\b", text), w
    name = "(?:" + "|".join(NAMES) + ")"
    frames = [*IOI_TEMPLATES, "{C} {A} and {B} went to the {P}, {S} gave {O} to"]  # + the paper's four
    for frame in frames:  # the whole frame, with any names, place and object in its slots
        pattern = re.escape(frame)
        for slot, rx in (("A", name), ("B", name), ("S", name), ("P", r"[\w ]+?"), ("O", r"[\w ]+?"), ("C", r"\w+")):
            pattern = pattern.replace(re.escape("{" + slot + "}"), rx)
        assert not re.search(pattern, text), frame


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

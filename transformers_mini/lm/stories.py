"""A seeded, procedural children's-story world to train a small language model on, and the IOI test set.

No package ships TinyStories and nothing can be downloaded at run time, so the corpus is generated:
characters with single-token first names meet, play, give, tell, help, lose and find things, with
pronouns and repeated names, in many sentence frames; unlimited and reproducible (``story(rng)``).

Indirect-object identification (IOI; Wang et al. 2022) then asks, on frames the stories never use:
"When Mary and John went to the store, John gave a drink to" -> " Mary" (IO: the name said once; S: the
repeated subject). The test frames, places and objects are kept out of the story world (tested), so an
IOI score measures generalisation, not recall. Prompts come in ABBA and BABA order, each paired with
its IO/S swap, plus ABC controls (three distinct names: no reason to prefer either).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amicl.common.validate import check_choice, check_int

# Single-token first names in GPT-2's vocabulary with a leading space (docs/reference.md sec. 2 lists
# the first 19); the story world and the IOI prompts share them, as the IOI set shares its names with GPT-2's.
GIRLS = ("Mary", "Lily", "Sue", "Anna", "Lucy", "Kate", "Emma", "Mia", "Zoe", "Sara", "Daisy", "Amy",
         "Emily", "Alice", "Rose", "Grace", "Helen", "Jane", "Lisa", "Kim", "Eva", "Ruth", "Nora", "Beth")  # fmt: skip
BOYS = ("John", "Ben", "Tom", "Tim", "Max", "Sam", "Jack", "Jake", "James", "Dan", "Bob", "Joe",
        "Mike", "Paul", "Peter", "Leo", "Ryan", "Adam", "Nick", "Eric", "Alex", "Mark", "Fred", "Carl")  # fmt: skip
NAMES = GIRLS + BOYS

# The story world's places and things; the IOI set's (and the AMICL paper's four IOI templates': park,
# store, shops, milk, ball, apple, drink) are disjoint from them.
PLACES = (
    "playground",
    "beach",
    "zoo",
    "farm",
    "forest",
    "lake",
    "library",
    "castle",
    "pond",
    "hill",
    "river",
    "meadow",
)
THINGS = ("rope", "kite", "book", "doll", "shell", "flower", "hat", "cookie", "toy car", "blanket", "crayon",
          "balloon", "puzzle", "boat", "stick", "pebble", "cake", "feather", "drum", "box")  # fmt: skip
COLOURS = ("red", "blue", "green", "yellow", "big", "little", "shiny", "soft", "funny", "new")
FEELINGS = ("happy", "sad", "excited", "surprised", "proud", "tired", "scared", "kind")

IOI_PLACES = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
IOI_OBJECTS = ("a drink", "a ring", "a kiss", "a necklace", "a bone", "a basketball", "a computer", "a snack")
# "{A} and {B} ... {S} gave {O} to" frames, none of which the stories use (Wang et al.'s IOI style)
IOI_TEMPLATES = (
    "When {A} and {B} went to the {P}, {S} gave {O} to",
    "After {A} and {B} went to the {P}, {S} gave {O} to",
    "While {A} and {B} were working at the {P}, {S} gave {O} to",
    "Then, {A} and {B} had a long day at the {P}. {S} handed {O} to",
    "Friends {A} and {B} found {O} at the {P}. {S} gave it to",
    "When {A} and {B} got {O} at the {P}, {S} decided to give it to",
)
# The AMICL paper's own four (small-LM/IOI_task.py): (conjunction, A, B, place, object); S is A or B.
PAPER_IOI = (
    ("After", "John", "Mary", "store", "a bottle of milk"),
    ("When", "Tom", "James", "park", "the ball"),
    ("When", "Dan", "Emily", "shops", "an apple"),
    ("After", "Sam", "Amy", "park", "a drink"),
)


def _pronoun(name: str) -> tuple[str, str]:
    return ("she", "her") if name in GIRLS else ("he", "his")


def him(name: str) -> str:
    return "her" if name in GIRLS else "him"


def _sentence(rng: np.random.Generator, a: str, b: str) -> str:
    """One event between a and b, in one of many frames."""
    pick = lambda xs: xs[rng.integers(len(xs))]  # noqa: E731
    thing, colour, place, feel = pick(THINGS), pick(COLOURS), pick(PLACES), pick(FEELINGS)
    he, his = _pronoun(a)
    frames = (
        f"{a} and {b} played with a {colour} {thing} at the {place}.",
        f"{a} gave the {thing} to {b}.",
        f"{a} gave {b} a {colour} {thing}.",
        f"{b} had a {thing}. {b} gave it to {a}, and {a} said thank you.",
        f"{a} told {b} a story about a {colour} {thing}.",
        f"{a} helped {b} find the {thing}.",
        f"{a} lost {his} {thing} near the {place}. {b} found it and gave it back to {a}.",
        f"{a} was {feel} because {b} shared the {thing} with {him(a)}.",
        f"At the {place}, {b} showed {a} a {colour} {thing}.",
        f"{a} wanted the {thing}, so {he} asked {b}. {b} said yes.",
        f"{b} and {a} ran to the {place}. {a} threw the {thing} to {b}.",
        f"{a} made a {thing} for {b}. {b} was very {feel}.",
    )
    return pick(frames)


def story(rng: np.random.Generator, names=NAMES) -> str:
    """One story: an opening, 3-7 events between two (sometimes three) characters, a closing."""
    a, b, c = (names[i] for i in rng.choice(len(names), 3, replace=False))
    place = PLACES[rng.integers(len(PLACES))]
    kind = "girl" if a in GIRLS else "boy"
    openings = (
        f"Once upon a time, there was a little {kind} named {a}.",
        f"One day, {a} and {b} walked to the {place}.",
        f"{a} lived near a {place}. {a} had a friend named {b}.",
        f"It was a sunny day. {a} wanted to play at the {place}.",
    )
    parts = [openings[rng.integers(len(openings))]]
    if "friend" not in parts[0] and b not in parts[0]:
        parts.append(f"{a} met {b} at the {place}.")
    for _ in range(rng.integers(3, 8)):
        x, y = (a, b) if rng.random() < 0.5 else (b, a)
        if rng.random() < 0.15:
            y = c
        parts.append(_sentence(rng, x, y))
    closings = ("They were very happy.", f"{a} and {b} became best friends.", "The end.", f"{b} smiled at {a}.")
    parts.append(closings[rng.integers(len(closings))])
    return " ".join(parts)


def stories(n: int, seed: int = 0, part: str = "train") -> list[str]:
    """``n`` stories from ``seed`` (the same seed, the same stories); ``part`` "val" draws from a stream
    of its own, for held-out stories."""
    check_choice("part", part, ("train", "val"))
    key = (7, 0 if part == "train" else 1)
    rng = np.random.default_rng(np.random.SeedSequence(check_int("seed", seed, lo=0), spawn_key=key))
    return [story(rng) for _ in range(check_int("n", n, lo=1))]


@dataclass(frozen=True)
class IOIPrompt:
    """One IOI prompt: text ending before the answer; io and s the two candidate names (for ABC
    controls, io is the first-mentioned name and s the second, neither is right)."""

    text: str
    io: str
    s: str
    order: str  # ABBA, BABA or ABC
    template: int
    pair: int  # the IO/S-swapped twin shares this id


def ioi_prompts(n: int = 1000, seed: int = 0, templates: str = "package", controls: bool = True) -> list[IOIPrompt]:
    """About ``n`` prompts, ABBA and BABA balanced and paired by IO/S swap (+ as many ABC controls when
    ``controls``). ``templates``: ``package`` (the frames above over the IOI places and objects) or
    ``paper`` (the AMICL paper's four, each in both orders; ``n`` and ``seed`` are then ignored)."""
    check_choice("templates", templates, ("package", "paper"))
    out: list[IOIPrompt] = []
    if templates == "paper":
        for t, (conj, a, b, place, obj) in enumerate(PAPER_IOI):
            for s, io in ((a, b), (b, a)):
                text = f"{conj} {a} and {b} went to the {place}, {s} gave {obj} to"
                out.append(IOIPrompt(text, io, s, "ABBA" if s == b else "BABA", t, t))
        return out
    rng = np.random.default_rng(np.random.SeedSequence(check_int("seed", seed, lo=0), spawn_key=(8,)))
    for pair in range(max(1, check_int("n", n, lo=1) // 4)):
        t = int(rng.integers(len(IOI_TEMPLATES)))
        a, b, c = (NAMES[i] for i in rng.choice(len(NAMES), 3, replace=False))
        place, obj = IOI_PLACES[rng.integers(len(IOI_PLACES))], IOI_OBJECTS[rng.integers(len(IOI_OBJECTS))]

        def fill(s, x, y, t=t, place=place, obj=obj):
            return IOI_TEMPLATES[t].format(A=x, B=y, P=place, O=obj, S=s)

        # ABBA: "A and B ..., B gave ... to" -> A; BABA: "B and A ..., B gave ... to" -> A; and the swap
        for io, s in ((a, b), (b, a)):
            out.append(IOIPrompt(fill(s, io, s), io, s, "ABBA", t, pair))
            out.append(IOIPrompt(fill(s, s, io), io, s, "BABA", t, pair))
        if controls:
            out.append(IOIPrompt(fill(c, a, b), a, b, "ABC", t, pair))
            out.append(IOIPrompt(fill(c, b, a), b, a, "ABC", t, pair))
    return out

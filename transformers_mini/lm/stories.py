"""A seeded, procedural children's-story world to train a small language model on, and the IOI test set.

No package ships TinyStories and nothing can be downloaded at run time, so the corpus is generated
(world 2, docs/lm.md): characters with single-token first names, their families and pets, about 60
places and 60 things, 80 verbs, dialogue, pronouns, time phrases and subordinate clauses; unlimited and
reproducible (``story(rng, ioi_rng, ioi_rate)``).

Indirect-object identification (IOI; Wang et al. 2022): "When Mary and John went to the store, John
gave a drink to" -> " Mary" (IO: the name said once; S: the repeated subject). Here the IOI structure is
an experimental variable, not a side effect: two names introduced together ("A and B") and a later
clause in which one of them directs something "to" the other occur only in the marked frames of
``IOI_FRAMES``, inserted into a fraction ``ioi_rate`` of the stories (both name orders equally often).
Everywhere else no name ever follows "to" (things go to pets, parents, places or pronouns), so at
``ioi_rate`` 0 no story holds the structure (``transformers_mini.lm.scan`` proves it). Every word of the
IOI prompts occurs in the stories, but never in the prompts' frames.

A story's own text does not depend on ``ioi_rate``: the IOI frame and whether it is used come from a
second generator, so the corpora of two rates differ only by the inserted frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amicl.common.validate import check_choice, check_float, check_int

# Single-token first names in GPT-2's vocabulary with a leading space (docs/reference.md sec. 2 lists
# the first 19); the stories and the IOI prompts share them, as the IOI set shares its names with GPT-2's.
GIRLS = ("Mary", "Lily", "Sue", "Anna", "Lucy", "Kate", "Emma", "Mia", "Zoe", "Sara", "Daisy", "Amy",
         "Emily", "Alice", "Rose", "Grace", "Helen", "Jane", "Lisa", "Kim", "Eva", "Ruth", "Nora", "Beth")  # fmt: skip
BOYS = ("John", "Ben", "Tom", "Tim", "Max", "Sam", "Jack", "Jake", "James", "Dan", "Bob", "Joe",
        "Mike", "Paul", "Peter", "Leo", "Ryan", "Adam", "Nick", "Eric", "Alex", "Mark", "Fred", "Carl")  # fmt: skip
NAMES = GIRLS + BOYS

# The IOI places and objects (Wang et al.'s eight each, and the AMICL paper's) are ordinary words of the
# world, so every prompt token is trained; the prompts' sentence frames are not (``IOI_TEMPLATES``).
IOI_PLACES = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
IOI_OBJECTS = ("a drink", "a ring", "a kiss", "a necklace", "a bone", "a basketball", "a computer", "a snack")
PLACES = IOI_PLACES + (
    "park", "shops", "playground", "beach", "zoo", "farm", "forest", "lake", "library", "castle", "pond",
    "hill", "river", "meadow", "bakery", "market", "museum", "circus", "village", "cave", "island", "kitchen",
    "field", "town", "pool", "barn", "garage", "classroom", "bedroom", "yard", "mountain", "jungle", "city",
    "bridge", "tree house", "toy shop", "swimming pool", "sandbox", "camp", "harbor",
)  # fmt: skip
THINGS = tuple(o.split(" ", 1)[1] for o in IOI_OBJECTS) + (
    "bottle of milk", "ball", "apple", "rope", "kite", "book", "doll", "shell", "flower", "hat", "cookie",
    "toy car", "blanket", "crayon", "balloon", "puzzle", "boat", "stick", "pebble", "cake", "feather", "drum",
    "box", "letter", "cup", "sandwich", "orange", "egg", "umbrella", "teddy bear", "picture", "banana", "key",
    "bell", "map", "jar of honey", "scarf", "sock", "robot", "train", "pencil", "bucket", "leaf", "star",
    "candle", "shoe", "ice cream", "present", "card", "song", "hug", "pie",
)  # fmt: skip
ADJECTIVES = ("red", "blue", "green", "yellow", "pink", "purple", "big", "little", "small", "tiny", "shiny",
              "soft", "funny", "new", "old", "pretty", "warm", "round", "fluffy", "sparkly", "heavy", "special",
              "silly")  # fmt: skip
FEELINGS = ("happy", "sad", "excited", "surprised", "proud", "tired", "scared", "kind", "angry", "hungry", "sleepy",
            "brave", "curious", "glad", "worried", "calm")  # fmt: skip
ANIMALS = ("dog", "cat", "bird", "duck", "bunny", "frog", "puppy", "kitten", "horse", "cow", "fish", "bear", "mouse",
           "owl", "squirrel")  # fmt: skip
FAMILY = ("mom", "dad", "grandma", "grandpa", "sister", "brother", "teacher", "friend", "aunt", "uncle")
TIMES = ("One day,", "In the morning,", "After lunch,", "That night,", "The next day,", "Later,", "Then,", "Soon,",
         "At last,", "After a while,", "Before dinner,", "On Sunday,")  # fmt: skip
ACTS = ("ran", "jumped", "sang", "danced", "laughed", "cried", "slept", "smiled", "waved", "clapped", "skipped",
        "hopped", "swam", "giggled", "yawned", "shouted", "whispered", "sat down", "looked around", "hid",
        "climbed a tree", "read a book", "painted a picture", "baked a cake", "built a sand castle", "picked flowers",
        "ate lunch", "took a nap", "played a game", "had a long day")  # fmt: skip
HANDLE = ("found", "lost", "dropped", "picked up", "held", "carried", "washed", "fixed", "broke", "opened", "made",
          "wanted", "liked", "loved", "saw", "bought", "got", "took", "kept", "painted", "hid", "cleaned")  # fmt: skip
TOGETHER = ("played with", "helped", "hugged", "visited", "met", "thanked", "followed", "watched", "waved at",
            "smiled at", "looked at", "talked with", "walked with", "sat with", "laughed with", "called", "chased",
            "found", "missed", "cheered for")  # fmt: skip
SEND = ("gave", "threw", "handed", "passed", "brought", "sent", "showed", "read", "sang", "took")
SAYINGS = ("Let's play at the {place}!", "Look at my {adj} {thing}!", "Can I have {a_thing}?", "I am so {feel}!",
           "Where is the {thing}?", "Thank you!", "I love you!", "Come with me!", "What a {adj} day!",
           "Do you want to play?", "I found {a_thing}!", "Good night!", "Let's go to the {place}.",
           "This is fun!", "Please help me.", "Can we go home now?")  # fmt: skip


def article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def pronouns(name: str) -> tuple[str, str, str]:
    """(subject, possessive, object) pronouns of a character."""
    return ("she", "her", "her") if name in GIRLS else ("he", "his", "him")


class _Pick:
    """Draws from the world's lists with one generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def __call__(self, xs):
        return xs[self.rng.integers(len(xs))]

    def slots(self, name: str) -> dict:
        thing = self(THINGS)
        return {"place": self(PLACES), "thing": thing, "a_thing": article(thing), "the_thing": "the " + thing,
                "adj": self(ADJECTIVES), "feel": self(FEELINGS), "animal": self(ANIMALS), "time": self(TIMES),
                "kin": self(FAMILY)}  # fmt: skip


def _recipient(pick: _Pick, x: str) -> str:
    """Whom a thing goes "to" in a story: never a name (only the marked IOI frames send things to names)."""
    _, his, _ = pronouns(x)
    return pick((f"the {pick(ANIMALS)}", f"{his} {pick(FAMILY)}", "the teacher", "her", "him", "them",
                 "everyone", "the baby", "the old man", f"a little {pick(ANIMALS)}"))  # fmt: skip


def _together(pick: _Pick, x: str, y: str) -> str:
    """One sentence that introduces x and y together ("x and y ..."); none is the start of a prompt frame."""
    s = pick.slots(x)
    return pick((
        f"{x} and {y} {pick(ACTS)}.",
        f"{x} and {y} were working at the {s['place']}.",
        f"{x} and {y} went to the {s['place']} and {pick(ACTS)}.",
        f"{x} and {y} found {s['a_thing']} at the {s['place']}.",
        f"{x} and {y} got {s['a_thing']} at the {s['place']}.",
        f"{x} and {y} had a long day at the {s['place']}.",
        f"{x} and {y} were at the {s['place']}.",
        f"{x} and {y} played at the {s['place']} all day.",
        f"One day, {x} and {y} visited the {s['place']}.",
        f"{x} and {y} sat under a {s['adj']} tree.",
        f"{x} and {y} walked home together.",
        f"{s['time']} {x} and {y} met at the {s['place']}.",
    ))  # fmt: skip


def _transfer(pick: _Pick, x: str, to: str) -> str:
    """x sends, gives or says something "to" ``to``: a pet, a parent, a pronoun, and in the marked IOI
    frames only, a name."""
    he = pronouns(x)[0]
    s = pick.slots(x)
    lead = pick(("", "", "", "Then ", "Later, ", "After that, ", "Soon "))
    return lead + pick((
        f"{x} gave {s['the_thing']} to {to}.",
        f"{x} {pick(SEND)} {s['a_thing']} to {to}.",
        f"{x} threw the {s['thing']} to {to}.",
        f"{x} decided to give it to {to}.",
        f"{x} gave it to {to}.",
        f"{x} said good night to {to}.",
        f"{x} ran to {to}.",
        f"{x} gave the {s['thing']} to {to} because {he} was {s['feel']}.",
        f"{x} wanted to give {s['a_thing']} to {to}.",
    ))  # fmt: skip


def _recipient(pick: _Pick, x: str) -> str:
    """Whom a thing goes "to" outside the marked IOI frames: never a name."""
    _, his, _ = pronouns(x)
    return pick((f"the {pick(ANIMALS)}", f"{his} {pick(FAMILY)}", "the teacher", "her", "him", "them",
                 "everyone", "the baby", "the old man", f"a little {pick(ANIMALS)}"))  # fmt: skip


def _solo(pick: _Pick, x: str) -> str:
    """One character alone: an act, a thing handled, a feeling, a trip, a gift to a non-name."""
    he, his, _ = pronouns(x)
    s = pick.slots(x)
    He = he.capitalize()
    forms = (
        f"{x} {pick(ACTS)}.",
        f"{s['time']} {x} {pick(ACTS)} at the {s['place']}.",
        f"{x} {pick(HANDLE)} {s['a_thing']} at the {s['place']}.",
        f"{x} {pick(HANDLE)} {his} {s['adj']} {s['thing']}.",
        f"{He} was very {s['feel']}.",
        f"When {x} went to the {s['place']}, {he} {pick(HANDLE)} {s['a_thing']}.",
        f"After {x} went to the {s['place']}, {he} {pick(ACTS)}.",
        f"While {x} was at the {s['place']}, {he} saw a {s['adj']} {s['animal']}.",
        _transfer(pick, x, _recipient(pick, x)),
        _transfer(pick, x, _recipient(pick, x)),
        f"{x}'s {s['kin']} was working at the {s['place']}, so {x} went there.",
        f"{x} got {s['a_thing']} at the {s['place']}.",
        f"{x} found {s['a_thing']} at the {s['place']}, and {he} {pick(ACTS)}.",
        f"{He} went to the {s['place']} with {his} {s['kin']}.",
        f"{x} wanted {s['a_thing']}, but {he} was too {s['feel']} to ask.",
    )
    return pick(forms)


def _pair(pick: _Pick, x: str, y: str) -> str:
    """Two characters together, without anything going "to" either of them."""
    he, his, him = pronouns(x)
    s = pick.slots(x)
    say = pick(SAYINGS).format(**s)
    tag = "asked" if say.endswith("?") else pick(("said", "shouted", "said"))
    forms = (
        f"{x} {pick(TOGETHER)} {y}.",
        f"{x} {pick(TOGETHER)} {y} at the {s['place']}.",
        _together(pick, x, y),
        _together(pick, x, y),
        f'"{say}" {tag} {x}.',
        f'{x} looked at {y} and said, "{say}"',
        f"{x} told {y} a story about a {s['adj']} {s['animal']}.",
        f"{x} showed {y} {his} {s['adj']} {s['thing']}.",
        f"{x} asked {y} for {s['a_thing']}.",
        f"{x} was {s['feel']} because {y} played with {him}.",
        f"When {x} saw {y}, {he} {pick(ACTS)}.",
    )
    return pick(forms)


def _opening(pick: _Pick, a: str, b: str) -> str:
    kind = "girl" if a in GIRLS else "boy"
    he = pronouns(a)[0]
    s = pick.slots(a)
    return pick((
        f"Once upon a time, there was a little {kind} named {a}.",
        f"One day, {a} went to the {s['place']}.",
        f"{a} lived near the {s['place']}. {a} had a friend named {b}.",
        f"When {a} woke up, {he} was {s['feel']}.",
        f"After breakfast, {a} went to the {s['place']} with {b}.",
        f"While {a} was playing at the {s['place']}, {he} found {s['a_thing']}.",
        f"Friends {a} and {b} lived in a small {s['place']}.",
        f"Then, one {s['adj']} morning, {a} and {b} went to the {s['place']}.",
        f"{a} had {s['a_thing']}. It was very {s['adj']}.",
    ))  # fmt: skip


def ioi_frame(rng: np.random.Generator, a: str, b: str) -> str:
    """One marked IOI frame between a and b, built from the world's own sentences: a sentence that
    introduces them together, sometimes another sentence, then one of them sends something to the
    other. The sender is the second-named (ABBA order) or the first-named (BABA) with equal chance."""
    pick = _Pick(rng)
    x, y = (a, b) if rng.random() < 0.5 else (b, a)
    io, subj = (x, y) if rng.random() < 0.5 else (y, x)  # ABBA: the sender is the second-named
    middle = pick(("", "", _solo(pick, subj), _solo(pick, io), "They laughed a lot.", "It was a sunny day."))
    return " ".join(p for p in (_together(pick, x, y), middle, _transfer(pick, subj, io)) if p)


def story(rng: np.random.Generator, ioi_rng: np.random.Generator | None = None, ioi_rate: float = 0.0) -> str:
    """One story: an opening, 4-8 events among two (sometimes three) characters, a closing; with chance
    ``ioi_rate`` one marked IOI frame between the two main characters is inserted among the events. The
    IOI draws come from ``ioi_rng`` only (always made, so the story's own text does not depend on the rate)."""
    pick = _Pick(rng)
    a, b, c = (NAMES[i] for i in rng.choice(len(NAMES), 3, replace=False))
    parts = [_opening(pick, a, b)]
    for _ in range(rng.integers(4, 9)):
        x, y = (a, b) if rng.random() < 0.5 else (b, a)
        if rng.random() < 0.15:
            y = c
        parts.append(_solo(pick, x) if rng.random() < 0.45 else _pair(pick, x, y))
    parts.append(pick(("They were very happy.", f"{a} and {b} became best friends.", "The end.",
                       f"{b} smiled at {a}.", f"That night, {a} slept well.")))  # fmt: skip
    if ioi_rng is not None:
        use, where, frame = ioi_rng.random() < ioi_rate, int(ioi_rng.integers(1, len(parts))), ioi_frame(ioi_rng, a, b)
        if use:
            parts.insert(where, frame)
    return " ".join(parts)


def stories(n: int, seed: int = 0, part: str = "train", ioi_rate: float = 0.0) -> list[str]:
    """``n`` stories from ``seed`` (the same seed, the same stories); ``part`` "val" draws from a stream
    of its own, for held-out stories; a fraction ``ioi_rate`` (in expectation) holds one marked IOI frame."""
    check_choice("part", part, ("train", "val"))
    check_float("ioi_rate", ioi_rate, lo=0.0, hi=1.0)
    seq = np.random.SeedSequence(check_int("seed", seed, lo=0), spawn_key=(17, 0 if part == "train" else 1))
    rng, ioi_rng = (np.random.default_rng(s) for s in seq.spawn(2))
    return [story(rng, ioi_rng, ioi_rate) for _ in range(check_int("n", n, lo=1))]


# "{A} and {B} ... {S} gave {O} to" frames (Wang et al.'s IOI style): the stories use their words, never
# their frames (tested with names, places and objects abstracted to their classes)
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

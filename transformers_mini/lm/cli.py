"""``amicl lm ...``: train language models on the story world (or a corpus) and evaluate IOI. torch and
the tokenizers library load inside the commands only."""

from __future__ import annotations

from pathlib import Path

import click

from amicl.common.cli import (
    CONTEXT,
    config_option,
    device_option,
    format_option,
    given,
    out_option,
    resume_option,
    threads_option,
)
from transformers_mini.core.config import PRECISION_HELP, PRECISIONS
from transformers_mini.lm.config import MODELS, TOKENIZERS, LMConfig


@click.group(context_settings=CONTEXT)
def lm():
    """A small GPT with the values stream on children's stories, and its IOI evaluation."""


@lm.command("train")
@config_option(LMConfig, "model", type=click.Choice(tuple(MODELS)))
@config_option(LMConfig, "stream", type=click.Choice(("none", "V")))
@config_option(LMConfig, "tokenizer", type=click.Choice(TOKENIZERS))
@config_option(LMConfig, "vocab", type=int)
@config_option(LMConfig, "corpus", type=click.Path(dir_okay=False))
@config_option(LMConfig, "stories", type=int)
@config_option(LMConfig, "context", type=int)
@config_option(LMConfig, "batch", type=int)
@config_option(LMConfig, "lr", type=float)
@config_option(LMConfig, "steps", type=int)
@config_option(LMConfig, "eval_every", type=int)
@config_option(LMConfig, "val_batches", type=int)
@config_option(LMConfig, "ioi_prompts", type=click.IntRange(min=0))
@config_option(LMConfig, "seed", type=click.IntRange(min=0))
@config_option(LMConfig, "precision", type=click.Choice(PRECISIONS), help=PRECISION_HELP)
@device_option
@threads_option
@out_option()
@resume_option
def train_cmd(device, threads, out, resume, **kw):
    """Train one language model (one arm, one seed); validation loss every --eval-every steps."""
    from amicl.common.cli import training_run

    cfg = LMConfig(**given(kw))
    with training_run(out, "lm", resume, "lm.pt", threads) as folder:
        from transformers_mini.core.device import resolve_device
        from transformers_mini.lm.train import LMTrainer, start_afresh

        device = resolve_device(device)
        if not folder.resume:
            start_afresh(cfg, Path(out))
        trainer = LMTrainer(cfg, Path(out), device)
        if folder.resume:
            trainer.load()
            click.echo(f"resuming at step {trainer.step}", err=True)
        click.echo(f"{trainer.model.n_params():,} parameters, vocabulary {trainer.tok.get_vocab_size():,}", err=True)
        hist = trainer.fit()
    click.echo(f"step {hist[-1]['step']}: validation loss {hist[-1]['val_loss']:.4f}")


@lm.command("ioi")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option(
    "--prompts",
    type=click.IntRange(min=4),
    default=1000,
    show_default=True,
    help="IOI prompts (+ half as many ABC controls).",
)
@click.option(
    "--templates",
    type=click.Choice(("package", "paper")),
    default="package",
    show_default=True,
    help="package: the package's frames; paper: the AMICL paper's four, both orders.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Evaluations at the end of training whose monitored IOI is averaged (runs that monitored it).",
)
@device_option
@threads_option
@out_option()
def ioi_cmd(runs, prompts, templates, seed, last, device, threads, out):
    """Score IOI on every run; writes ioi_prompts.csv, ioi.csv and ioi.md, and compares the arms."""  # noqa: D401
    from amicl.common.cli import set_torch_threads
    from amicl.common.io import atomic_write_bytes, run_metadata, write_csv, write_json
    from amicl.common.runs import claim_run_folder, expect_runs

    folders = expect_runs(runs, "lm", "RUNS")
    # a run is labelled by its folder name, or by its path where two folders share a name
    names = [f.name for f in folders]
    labels = [f.name if names.count(f.name) == 1 else str(f) for f in folders]
    with claim_run_folder(out, "lm-ioi"):
        set_torch_threads(threads)
        from transformers_mini.core.device import resolve_device
        from transformers_mini.lm.config import read_history
        from transformers_mini.lm.ioi import (
            compare_arms,
            late_training,
            markdown,
            per_template,
            score_prompts,
            summarise,
        )
        from transformers_mini.lm.stories import ioi_prompts
        from transformers_mini.lm.train import load_lm

        ps = ioi_prompts(prompts, seed, templates)
        rows, configs = [], []
        histories = [read_history(f) for f in folders]
        for f, label in zip(folders, labels):
            model, tok, cfg = load_lm(f, resolve_device(device))
            configs.append(cfg)
            rows += [{"run": label, "arm": cfg.stream, "seed": cfg.seed, **r} for r in score_prompts(model, tok, ps)]
        summary = summarise(rows)
        arms = compare_arms(summary)
        md = markdown(summary, arms, per_template([r for r in rows if r["order"] != "ABC"]))
        late, late_md = late_training(
            [{"run": label, "arm": c.stream, "seed": c.seed, "history": h}
             for label, c, h in zip(labels, configs, histories)], last
        )  # fmt: skip
        if late:
            md += "\n" + late_md
            write_csv(Path(out) / "ioi_late.csv", late)
        write_csv(Path(out) / "ioi_prompts.csv", rows)
        write_csv(Path(out) / "ioi.csv", summary)
        atomic_write_bytes(Path(out) / "ioi.md", md.encode())
        write_json(Path(out) / "config.json", {"kind": "lm-ioi", "runs": [str(f) for f in folders], "prompts": prompts,
                                                "templates": templates, "seed": seed, **run_metadata()})  # fmt: skip
    click.echo(md)


@click.command("lm")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option(
    "--ioi", "ioi_dir", type=click.Path(file_okay=False), default=None, help="An 'lm ioi' folder to draw too."
)
@out_option()
@format_option
def figures_lm(runs, ioi_dir, out, formats):
    """Validation loss of language-model runs per arm, and their IOI scores."""
    from amicl.common.cli import comma_list
    from amicl.common.runs import expect_run
    from transformers_mini.lm.figures import draw_lm

    folders = [expect_run(r, "lm", "RUNS") for r in runs]
    ioi = expect_run(ioi_dir, "lm-ioi", "--ioi") if ioi_dir else None
    for p in draw_lm(folders, Path(out), ioi, tuple(comma_list(formats, "--format"))):
        click.echo(p)

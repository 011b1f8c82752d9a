"""``amicl transformer ...`` and ``amicl figures streams``. torch is imported inside the commands only."""

from __future__ import annotations

from pathlib import Path

import click

from amicl.cli import _DATA_FIELDS, CONTEXT, check_run_folder

TASK_FIELDS = ("K", "L", "N", "Nmax", "D", "epsilon", "alpha", "B", "p_B", "p_C", "n_novel")


def task_options(f):
    from amicl.task import TaskConfig

    defaults = TaskConfig().to_dict()
    for name in reversed(TASK_FIELDS):
        text, typ = _DATA_FIELDS[name]
        f = click.option(f"--{name}", name, type=typ, default=None, show_default=False,
                         help=f"{text.replace('[reddy] ', '')} [default: {defaults[name]}]")(f)
    return f


def train_options(f):
    opts = [
        click.option("--steps", type=int, default=75_000, help="Training steps (SGD updates)."),
        click.option("--batch", type=int, default=128),
        click.option("--lr", type=float, default=0.01),
        click.option("--weight-decay", type=float, default=1e-6, help="theta <- (1 - wd) theta - lr grad."),
        click.option("--eval-every", type=int, default=500),
        click.option("--eval-size", type=int, default=10_000, help="Sequences per test set."),
        click.option("--threshold", type=float, default=0.95, help="Accuracy that defines 'ICL reached'."),
        click.option("--checkpoint-every", type=int, default=5_000),
        click.option("--stop-when-reached", is_flag=True, help="Stop once every run reached the threshold on ic and ic2."),
        click.option("--seeds", type=click.IntRange(min=1), default=1, help="Number of paired seeds."),
        click.option("--first-seed", type=click.IntRange(min=0), default=0),
        click.option("--stream-source", type=click.Choice(["previous", "first"]), default="previous"),
        click.option("--stream-mix", type=click.Choice(["add", "convex"]), default="add"),
        click.option("--stream-lambda", type=float, default=1.0, help="Stream weight (initial value if learned)."),
        click.option("--stream-learn", is_flag=True, help="Learn the stream weight per layer (ResFormer style)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto"),
        click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads [default: all cores]."),
        click.option("--out", type=click.Path(file_okay=False), required=True, help="Run folder."),
        click.option("--resume", is_flag=True, help="Continue the run checkpointed in --out."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return task_options(f)


@click.group(context_settings=CONTEXT)
def transformer():
    """The two-layer ICL Transformer with residual attention streams: training and comparisons."""


@transformer.command("train")
@click.option("--stream", type=click.Choice(["none", "V", "K", "Q"]), default="none")
@train_options
def train_cmd(stream, **kw):
    """Train the ICL toy (one stream arm, --seeds seeds batched) and report steps to ICL."""
    _compare([stream], kw)


@transformer.command("compare")
@click.option("--streams", default="none,V,K,Q", help="Comma-separated arms; 'none' is the baseline.")
@train_options
def compare_cmd(streams, **kw):
    """Train every stream arm on paired seeds (same init, same data) as one batched ensemble; report
    median steps to ICL with bootstrap intervals, speedups over 'none', and the AMICL memory on the
    same test sequences."""
    _compare([s.strip() for s in streams.split(",") if s.strip()], kw)


def _compare(streams, kw):
    from transformers_mini.config import STREAMS

    bad = [s for s in streams if s not in STREAMS]
    if bad or not streams:
        raise click.UsageError(f"unknown stream {bad[0] if bad else '(none given)'!r}; choose from {', '.join(STREAMS)}")
    if len(set(streams)) != len(streams):
        raise click.UsageError(f"--streams lists an arm twice: {','.join(streams)}")
    import os

    import torch

    from amicl.task import TaskConfig
    from transformers_mini.compare import analyse
    from transformers_mini.config import StreamConfig, ToyConfig, TrainConfig
    from transformers_mini.train import Run, Trainer

    first, n = kw.pop("first_seed"), kw.pop("seeds")
    seeds = list(range(first, first + n))
    torch.set_num_threads(kw.pop("threads") or os.cpu_count() or 1)
    task = TaskConfig(**{k: v for k in TASK_FIELDS if (v := kw.pop(k)) is not None})
    stream_kw = {"source": kw.pop("stream_source"), "mix": kw.pop("stream_mix"), "lam": kw.pop("stream_lambda"),
                 "learn": kw.pop("stream_learn")}
    arms = {s: ToyConfig(d_in=task.input_dim, n_labels=task.L, init_D=task.D,
                         stream=StreamConfig(kind=s, **stream_kw) if s != "none" else StreamConfig())
            for s in streams}
    out, resume, device = Path(kw.pop("out")), kw.pop("resume"), kw.pop("device")
    run = Run(arms, seeds, task, TrainConfig(**kw))
    check_run_folder(out, "checkpoint.pt", resume)
    trainer = Trainer(run, device)
    if resume:
        trainer.load(out / "checkpoint.pt")
        click.echo(f"resuming at step {trainer.step}", err=True)
    click.echo(f"{len(run.members)} member(s) x {trainer.model.n_params():,} parameters each on {trainer.device}",
               err=True)
    trainer.fit(out)
    click.echo(analyse(out))


@transformer.command("join")
@click.argument("parts", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for the joined results.")
def join_cmd(parts, out):
    """Analyse runs made separately on the same seeds (e.g. none,V and K,Q) as one paired comparison."""
    from transformers_mini.compare import analyse, join_runs

    join_runs(Path(out), [Path(p) for p in parts])
    click.echo(analyse(Path(out)))


@click.command("streams")
@click.argument("results", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Figure folder [default: RESULTS/figures].")
@click.option("--format", "formats", default="png,pdf")
def figures_streams(results, out, formats):
    """Learning curves with seed bands and the steps-to-threshold distribution of a comparison."""
    from transformers_mini.figures import draw_streams

    out = Path(out) if out else Path(results) / "figures"
    for p in draw_streams(Path(results), out, tuple(f.strip() for f in formats.split(",") if f.strip())):
        click.echo(p)

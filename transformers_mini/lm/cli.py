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


def last_option(help: str):
    return click.option("--last", type=click.IntRange(min=1), default=5, show_default=True, help=help)


def prompts_option(default: int, help: str):
    return click.option("--prompts", type=click.IntRange(min=4), default=default, show_default=True, help=help)


def run_labels(folders) -> list[str]:
    """Each run's folder name, or its path where two folders share a name."""
    names = [f.name for f in folders]
    return [f.name if names.count(f.name) == 1 else str(f) for f in folders]


@click.group(context_settings=CONTEXT)
def lm():
    """A small GPT with the values stream on children's stories, and its IOI evaluation."""


@lm.command("train")
@config_option(LMConfig, "model", type=click.Choice(tuple(MODELS)))
@config_option(LMConfig, "stream")
@config_option(LMConfig, "tokenizer", type=click.Choice(TOKENIZERS))
@config_option(LMConfig, "vocab", type=int)
@config_option(LMConfig, "corpus", type=click.Path(dir_okay=False))
@config_option(LMConfig, "stories", type=int)
@config_option(LMConfig, "ioi_rate", type=float)
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


@lm.command("world")
@config_option(LMConfig, "stories", type=int)
@config_option(LMConfig, "ioi_rate", type=float)
@config_option(LMConfig, "vocab", type=int)
@config_option(LMConfig, "context", type=int)
@config_option(LMConfig, "seed", type=click.IntRange(min=0))
@click.option("--val", type=click.IntRange(min=10), default=2000, show_default=True, help="Validation stories.")
@out_option()
def world_cmd(val, out, **kw):
    """Describe the story world a run would train on: size and variety, the measured IOI rate and orders,
    coverage of the IOI prompts' tokens, copyable prompts, and the n-gram floor of the validation loss."""
    import json

    from amicl.common.io import run_metadata, write_json
    from amicl.common.runs import claim_run_folder

    cfg = LMConfig(**given(kw))
    with claim_run_folder(out, "lm-world"):
        from transformers_mini.lm.scan import describe_world
        from transformers_mini.lm.stories import stories
        from transformers_mini.lm.train import load_tokenizer

        train = stories(cfg.stories, cfg.seed, ioi_rate=cfg.ioi_rate)
        held = stories(val, cfg.seed, part="val", ioi_rate=cfg.ioi_rate)
        report = describe_world(train, held, load_tokenizer(cfg, Path(out), train), cfg.context, cfg.ioi_rate)
        write_json(Path(out) / "config.json", {"kind": "lm-world", "lm": cfg.to_dict(), "val": val, **run_metadata()})
        write_json(Path(out) / "world.json", report)
    click.echo(json.dumps(report, indent=1))


@lm.command("ioi")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@prompts_option(1000, "IOI prompts (+ half as many ABC controls).")
@click.option(
    "--templates",
    type=click.Choice(("package", "paper")),
    default="package",
    show_default=True,
    help="package: the package's frames; paper: the AMICL paper's four, both orders.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@last_option("Evaluations at the end of training whose monitored IOI is averaged (runs that monitored it).")
@device_option
@threads_option
@out_option()
def ioi_cmd(runs, prompts, templates, seed, last, device, threads, out):
    """Score IOI on every run; writes ioi_prompts.csv, ioi.csv and ioi.md, and compares the arms."""  # noqa: D401
    from amicl.common.cli import set_torch_threads
    from amicl.common.io import atomic_write_bytes, run_metadata, write_csv, write_json
    from amicl.common.runs import claim_run_folder, expect_runs

    folders = expect_runs(runs, "lm", "RUNS")
    labels = run_labels(folders)
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


@lm.command("heads")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@prompts_option(500, "IOI prompts (+ half as many ABC controls, whose mean each ablated head takes).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@device_option
@threads_option
@out_option()
def heads_cmd(runs, prompts, seed, device, threads, out):
    """Which heads carry IOI: each head's output, and each stream term, mean-ablated (the ABC prompts'
    mean) in turn; the change in the IOI logit difference with its interval over prompts. Writes
    heads.csv and heads.md."""
    from amicl.common.cli import set_torch_threads
    from amicl.common.io import atomic_write_bytes, run_metadata, write_csv, write_json
    from amicl.common.runs import claim_run_folder, expect_runs

    folders = expect_runs(runs, "lm", "RUNS")
    labels = run_labels(folders)
    with claim_run_folder(out, "lm-heads"):
        set_torch_threads(threads)
        from transformers_mini.core.device import resolve_device
        from transformers_mini.lm.heads import head_effects, markdown
        from transformers_mini.lm.stories import ioi_prompts
        from transformers_mini.lm.train import load_lm

        ps = ioi_prompts(prompts, seed)
        rows = []
        for f, label in zip(folders, labels):
            model, tok, cfg = load_lm(f, resolve_device(device))
            meta = {"run": label, "arm": cfg.stream, "seed": cfg.seed, "ioi_rate": cfg.ioi_rate}
            rows += [{**meta, **r} for r in head_effects(model, tok, ps)]
            click.echo(f"{label}: {len(rows)} rows", err=True)
        write_csv(Path(out) / "heads.csv", rows)
        md = markdown(rows)
        atomic_write_bytes(Path(out) / "heads.md", md.encode())
        write_json(Path(out) / "config.json", {"kind": "lm-heads", "runs": [str(f) for f in folders],
                                                "prompts": prompts, "seed": seed, **run_metadata()})  # fmt: skip
    click.echo(md)


def _world_runs(runs):
    """The run folders and, per run, its label, arm, seed, IOI rate, model and history; a run that did not
    train on the current story world is refused."""
    from amicl.common.runs import expect_runs
    from transformers_mini.lm.config import WORLD, read_config, read_history

    folders = expect_runs(runs, "lm", "RUNS")
    infos = []
    for f, label in zip(folders, run_labels(folders)):
        cfg = read_config(f)
        if cfg.corpus is not None or cfg.world != WORLD:
            raise click.UsageError(f"{f} did not train on story world {WORLD}, so it has no IOI rate")
        history = read_history(f)
        if int(history[-1]["step"]) < cfg.steps:
            raise click.UsageError(
                f"{f} is unfinished (step {history[-1]['step']} of {cfg.steps}); finish it or leave it out"
            )
        infos.append({"run": label, "arm": cfg.stream, "seed": cfg.seed, "rate": cfg.ioi_rate, "model": cfg.model,
                      "history": history})  # fmt: skip
    return folders, infos


@lm.command("isoloss")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@out_option()
def isoloss_cmd(runs, out):
    """Data efficiency as ResFormer measures it: per model shape and seed, the training tokens V needs to
    reach the validation loss none ends at, as a saving 1 - V/none (isoloss.csv, isoloss.md)."""
    from amicl.common.io import atomic_write_bytes, run_metadata, write_csv, write_json
    from amicl.common.runs import claim_run_folder
    from transformers_mini.lm.dose import iso_loss

    folders, infos = _world_runs(runs)
    rows = iso_loss(infos)
    if not rows:
        raise click.UsageError("no model shape has both arms of a seed: nothing to compare")
    lines = ["Tokens V needs to reach the validation loss none ends at, per seed: saving 1 - V/none (median [95%",
             "bootstrap interval over seeds]; an arm that never reaches it saves 0 and is counted as never).", "",
             "| model | arm | seeds | median saving | never | per seed |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['model']} | {r['arm']} | {r['seeds']} | {r['saving_median']:.3f} [{r['saving_low']:.3f}, "
                     f"{r['saving_high']:.3f}] | {r['never']} | {r['savings']} |")  # fmt: skip
    md = "\n".join(lines) + "\n"
    with claim_run_folder(out, "lm-isoloss"):
        write_csv(Path(out) / "isoloss.csv", rows)
        atomic_write_bytes(Path(out) / "isoloss.md", md.encode())
        write_json(Path(out) / "config.json", {"kind": "lm-isoloss", "runs": [str(f) for f in folders],
                                                **run_metadata()})  # fmt: skip
    click.echo(md)


@lm.command("dose")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@last_option("Evaluations at the end of training whose monitored IOI is averaged.")
@click.option(
    "--target",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.07,
    show_default=True,
    help="The P(IO) whose evidence (IOI rate) each arm needs is reported.",
)
@out_option()
def dose_cmd(runs, last, target, out):
    """IOI against the story world's IOI rate per arm, paired over seeds, and the evidence each arm needs
    to reach --target P(IO); read from the runs' history.csv (dose_runs.csv, dose.csv, evidence.csv,
    dose.md)."""
    from amicl.common.io import atomic_write_bytes, run_metadata, write_csv, write_json
    from amicl.common.runs import claim_run_folder
    from transformers_mini.lm.dose import arm_rate_table, evidence_needed, markdown, run_rows

    folders, infos = _world_runs(runs)
    if len({i["model"] for i in infos}) > 1:
        raise click.UsageError("the runs are of several model shapes; compare one shape's runs at a time")
    rows = run_rows(infos, last)
    table = arm_rate_table(rows)
    try:
        evidence = evidence_needed(rows, target)
    except ValueError as exc:
        click.echo(f"no evidence table: {exc}", err=True)
        evidence = []
    md = markdown(table, evidence, last)
    with claim_run_folder(out, "lm-dose"):
        write_csv(Path(out) / "dose_runs.csv", rows)
        write_csv(Path(out) / "dose.csv", table)
        if evidence:
            write_csv(Path(out) / "evidence.csv", evidence)
        atomic_write_bytes(Path(out) / "dose.md", md.encode())
        write_json(Path(out) / "config.json", {"kind": "lm-dose", "runs": [str(f) for f in folders], "last": last,
                                                "target": target, **run_metadata()})  # fmt: skip
    click.echo(md)


@click.command("lm")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option(
    "--ioi", "ioi_dir", type=click.Path(file_okay=False), default=None, help="An 'lm ioi' folder to draw too."
)
@click.option("--dose", "dose_dir", type=click.Path(file_okay=False), default=None,
              help="An 'lm dose' folder: P(IO) against the IOI rate per arm.")  # fmt: skip
@out_option()
@format_option
def figures_lm(runs, ioi_dir, dose_dir, out, formats):
    """Validation loss of language-model runs per arm against training tokens, their IOI scores, and
    P(IO) against the story world's IOI rate."""
    from amicl.common.cli import comma_list
    from amicl.common.runs import expect_run
    from transformers_mini.lm.figures import draw_dose, draw_lm

    folders = [expect_run(r, "lm", "RUNS") for r in runs]
    ioi = expect_run(ioi_dir, "lm-ioi", "--ioi") if ioi_dir else None
    formats = tuple(comma_list(formats, "--format"))
    written = draw_lm(folders, Path(out), ioi, formats)
    if dose_dir:
        written += draw_dose(Path(dose_dir), Path(out), formats)
    for p in written:
        click.echo(p)

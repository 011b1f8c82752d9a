"""``amicl transformer ...`` and ``amicl figures streams``. torch is imported inside the commands only."""

from __future__ import annotations

from pathlib import Path

import click

from amicl.common.cli import (
    CONTEXT,
    RUN_OR_ARTIFACT,
    config_option,
    device_option,
    executor_options,
    format_option,
    given,
    out_option,
    resume_option,
    threads_option,
)
from amicl.task import TaskConfig
from transformers_mini.core.config import (
    CLAMPS,
    DATA_SOURCES,
    INITS,
    PRECISION_HELP,
    PRECISIONS,
    STREAM_MIXES,
    STREAM_SOURCES,
    STREAMS,
    StreamConfig,
    ToyConfig,
    TrainConfig,
    parse_arm,
)

TASK_FIELDS = ("K", "L", "N", "Nmax", "D", "epsilon", "alpha", "B", "p_B", "p_C", "n_novel")
TRAIN_HELP = {
    "steps": "Training steps (SGD updates).",
    "weight_decay": "theta <- (1 - wd) theta - lr grad.",
    "eval_size": "Sequences per test set.",
    "threshold": "Accuracy that defines 'ICL reached'.",
    "probe_size": "ic sequences per seed the mechanistic probes read at every evaluation (probes.csv; 0: none).",
    "stop_when_reached": "Stop each member once it reached the threshold on ic and ic2, and the run once all have.",
    "clamp": "Hold a pattern fixed from step 0 (training and evaluation): binding = layer 1 at AMICL's binding, "
    "induction = layer 2 at the query on the labels of the query's class (no probes are recorded).",
    "clamp_w": "The clamped binding's mass on the predecessor t-1 (2/3 is AMICL's a = 2).",
    "data": "Who draws the training batches: numpy (the reference, on the host) or device (torch on the training "
    "device, no host work; the same distributions, other numbers).",
    "precision": PRECISION_HELP,
    "compile": "torch.compile the training step (unclamped runs; falls back to eager, with one warning, where "
    "compiling fails). The same arithmetic up to rounding; measured by benchmarks/bench_train.py --compile.",
}
STREAM_OPTIONS = {  # option name -> StreamConfig field
    "stream_source": ("source", click.Choice(STREAM_SOURCES), "Which earlier layer's projection is added."),
    "stream_mix": ("mix", click.Choice(STREAM_MIXES), "add: v_l + lam v_src; convex: (1-lam) v_l + lam v_src."),
    "stream_lambda": ("lam", float, "Stream weight (initial value if learned)."),
}


def train_options(f):
    opts = []
    for name, typ in (
        ("steps", int),
        ("batch", int),
        ("lr", float),
        ("weight_decay", float),
        ("eval_every", int),
        ("eval_size", int),
        ("threshold", float),
        ("checkpoint_every", int),
        ("probe_size", click.IntRange(min=0)),
        ("clamp", click.Choice(CLAMPS)),
        ("clamp_w", float),
        ("data", click.Choice(DATA_SOURCES)),
        ("precision", click.Choice(PRECISIONS)),
    ):
        opts.append(config_option(TrainConfig, name, type=typ, help=TRAIN_HELP.get(name, "")))
    opts.append(click.option("--stop-when-reached", is_flag=True, help=TRAIN_HELP["stop_when_reached"]))
    opts.append(click.option("--compile", is_flag=True, help=TRAIN_HELP["compile"]))
    opts += [
        click.option("--seeds", type=click.IntRange(min=1), default=1, help="Number of paired seeds."),
        click.option("--first-seed", type=click.IntRange(min=0), default=0),
    ]
    for opt, (field, typ, text) in STREAM_OPTIONS.items():
        opts.append(config_option(StreamConfig, field, f"--{opt.replace('_', '-')}", dest=opt, type=typ, help=text))
    opts += [
        click.option("--stream-learn", is_flag=True, help="Learn the stream weight per layer (ResFormer style)."),
        config_option(
            ToyConfig,
            "init",
            type=click.Choice(INITS),
            help="Parameter draws: independent, or coupled as the official code's key reuse.",
        ),
        device_option,
        threads_option,
        out_option("Run folder."),
        resume_option,
    ]
    for opt in reversed(opts):
        f = opt(f)
    for name in reversed(TASK_FIELDS):
        f = config_option(TaskConfig, name, f"--{name}", type=type(getattr(TaskConfig, name)))(f)
    return f


@click.group(context_settings=CONTEXT)
def transformer():
    """The two-layer ICL Transformer with residual attention streams: training and comparisons."""


@transformer.command("train")
@click.option(
    "--stream",
    default="none",
    show_default=True,
    help="The stream arm: none, V, K, Q or KIND:option:... as in 'transformer compare'.",
)
@train_options
def train_cmd(stream, **kw):
    """Train the ICL toy (one stream arm, --seeds seeds batched) and report steps to ICL."""
    _compare([stream], kw)


@transformer.command("compare")
@click.option(
    "--streams",
    default=",".join(STREAMS),
    help="Comma-separated arms: none (the baseline), V, K, Q, or "
    "KIND:option:... with options lam=F, detach, learn, source=..., mix=... (e.g. V:lam=0.5,V:detach).",
)
@click.option(
    "--group-size",
    type=click.IntRange(min=1),
    default=None,
    help="Train the seeds in groups of this many, each its own run under OUT/groups/, then join them "
    "(as 'transformer join'); with --executor process or dask the groups train in parallel [default: one group].",
)
@executor_options
@train_options
def compare_cmd(streams, **kw):
    """Train every stream arm on paired seeds (same init, same data) as one batched ensemble; report
    median steps to ICL with bootstrap intervals, speedups over 'none', and the AMICL memory on the
    same test sequences."""
    from amicl.common.cli import comma_list

    _compare(comma_list(streams, "--streams"), kw)


def _compare(streams, kw):
    """Validate everything (configs are torch-free), claim --out, then load torch and train."""
    from amicl.common.cli import training_run

    if len(set(streams)) != len(streams):
        raise click.BadParameter(f"lists an arm twice: {','.join(streams)}", param_hint="--streams")
    from amicl.common.parallel import ExecutorSpec

    first, n = kw.pop("first_seed"), kw.pop("seeds")
    task = TaskConfig(**given(kw, TASK_FIELDS))
    stream_kw = {field: kw.pop(opt) for opt, (field, _, _) in STREAM_OPTIONS.items()}
    stream_kw = {**given(stream_kw), **({"learn": True} if kw.pop("stream_learn") else {})}
    if stream_kw and streams == ["none"]:
        raise click.UsageError(
            f"--stream-{next(iter(stream_kw)).replace('lam', 'lambda')} applies to stream arms "
            "(V, K, Q) only, and none was asked for"
        )
    init = kw.pop("init") or "independent"
    try:
        arms = {
            s: ToyConfig(d_in=task.input_dim, n_labels=task.L, init_D=task.D, stream=parse_arm(s, stream_kw), init=init)
            for s in streams
        }
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--streams") from None
    out, resume, device, threads = Path(kw.pop("out")), kw.pop("resume"), kw.pop("device"), kw.pop("threads")
    train = TrainConfig(**given(kw, TrainConfig.__dataclass_fields__))
    from transformers_mini.toy.run import Run

    run = Run(arms, list(range(first, first + n)), task, train)
    run.check_ensemble()
    where = ExecutorSpec.from_options(kw.pop("executor", None), kw.pop("workers", None), kw.pop("scheduler", None))
    group_size = kw.pop("group_size", None)
    if group_size is not None and group_size < n:
        return _compare_groups(run, group_size, where, out, resume, device, threads)
    if where.kind != "local":
        raise click.UsageError("--executor process or dask trains seed groups in parallel: give --group-size too")
    with training_run(out, "streams", resume, "checkpoint.pt", threads) as folder:
        from transformers_mini.toy.compare import analyse
        from transformers_mini.toy.train import Trainer

        trainer = Trainer(run, device)
        if folder.resume:
            trainer.load(out / "checkpoint.pt")
            click.echo(f"resuming at step {trainer.step}", err=True)
        click.echo(
            f"{len(run.members)} member(s) x {trainer.model.n_params():,} parameters each on {trainer.device}", err=True
        )
        trainer.fit(out)
        click.echo(analyse(out))


def _compare_groups(run, size, where, out: Path, resume: bool, device: str, threads) -> None:
    """Each group of ``size`` seeds is a streams run under out/groups/ (a task for the executor); the
    groups are then joined into ``out``. A member depends on its seed only, and the groups are cut the
    same way whatever trains them, so the numbers do not depend on the executor."""
    from dataclasses import replace

    from amicl.common.io import write_json
    from amicl.common.parallel import run_tasks
    from amicl.common.runs import claim_run_folder
    from transformers_mini.toy.compare import analyse, join_runs
    from transformers_mini.toy.train import train_group

    groups = [run.seeds[i : i + size] for i in range(0, len(run.seeds), size)]
    folders = [out / "groups" / f"seeds{g[0]}-{g[-1]}" for g in groups]
    with claim_run_folder(out, "streams-join", resume):
        if not resume:  # marks the folder; join_runs rewrites it with the joined run at the end
            write_json(
                out / "config.json", {"kind": "streams-join", "run": run.to_dict(), "groups": [str(f) for f in folders]}
            )
        tasks = [(replace(run, seeds=g).to_dict(), str(f), device, threads or 1) for g, f in zip(groups, folders)]
        with where.open() as pool:
            run_tasks(train_group, tasks, pool, desc="seed groups")
        join_runs(out, folders, claim=False)
        click.echo(analyse(out))


@transformer.command("phase")
@click.option("--grid-B", "grid_b", default="1,2,4", show_default=True, help="Comma-separated burstiness values.")
@click.option("--grid-epsilon", default="0.1,0.5,1.0", show_default=True, help="Comma-separated noise values.")
@click.option("--streams", default="none,V", show_default=True, help="Comma-separated arms, as for compare.")
@click.option("--seeds", type=click.IntRange(min=1), default=2, show_default=True, help="Paired seeds per cell.")
@click.option("--first-seed", type=click.IntRange(min=0), default=0)
@config_option(TrainConfig, "steps", type=click.IntRange(min=1), help="Training budget of every cell.")
@config_option(TrainConfig, "eval_every", type=click.IntRange(min=1))
@config_option(TrainConfig, "eval_size", type=click.IntRange(min=1), help=TRAIN_HELP["eval_size"])
@config_option(TrainConfig, "checkpoint_every", type=click.IntRange(min=1))
@device_option
@threads_option
@executor_options
@out_option("Phase folder.")
@click.option("--resume", is_flag=True, help="Continue the phase run in --out.")
def phase_cmd(
    grid_b, grid_epsilon, streams, seeds, first_seed, device, threads, executor, workers, scheduler, out, resume, **kw
):
    """Theory vs network: the AMICL memory's ICL accuracy beside trained arms' after a fixed budget, on
    a grid of burstiness B and within-class noise epsilon (the other task settings: the defaults)."""
    from amicl.common.cli import comma_list, set_torch_threads
    from amicl.common.parallel import ExecutorSpec
    from amicl.common.runs import claim_run_folder
    from transformers_mini.toy.phase import cell_runs, run_phase
    from transformers_mini.toy.run import Run

    task = TaskConfig()
    try:
        arms = {
            s: ToyConfig(d_in=task.input_dim, n_labels=task.L, init_D=task.D, stream=parse_arm(s))
            for s in comma_list(streams, "--streams")
        }
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--streams") from None
    base = Run(arms, list(range(first_seed, first_seed + seeds)), task, TrainConfig(**given(kw)))
    base.check_ensemble()
    grid_b = comma_list(grid_b, "--grid-B", int, unique=True)
    grid_eps = comma_list(grid_epsilon, "--grid-epsilon", float, unique=True)
    cell_runs(base, grid_b, grid_eps)  # every cell's task is valid before anything is written
    where = ExecutorSpec.from_options(executor, workers, scheduler)
    with claim_run_folder(out, "theory-phase", resume):
        set_torch_threads(threads)
        with where.open() as pool:
            click.echo(run_phase(Path(out), base, grid_b, grid_eps, device, resume, pool, threads))


@transformer.command("evaluate")
@click.argument("run", type=RUN_OR_ARTIFACT)
@device_option
@threads_option
@out_option("Folder for eval.csv/md and probes.csv.")
def evaluate_cmd(run, device, threads, out):
    """Accuracy and probes of a trained streams run (a folder or builtin:NAME) on its own test sets, and
    whether they reproduce the numbers its history holds for that step."""
    from amicl.common.cli import set_torch_threads
    from amicl.common.io import atomic_write_bytes, run_metadata, write_csv, write_json
    from amicl.common.runs import claim_run_folder
    from transformers_mini.toy.train import evaluate_checkpoint

    with claim_run_folder(out, "streams-eval", False):
        set_torch_threads(threads)
        rows, probes, own = evaluate_checkpoint(run, device)
        write_csv(Path(out) / "eval.csv", rows)
        if probes:
            write_csv(Path(out) / "probes.csv", probes)
        write_json(Path(out) / "config.json", {"kind": "streams-eval", "run": str(run), **run_metadata()})
        sets = [k for k in rows[0] if k not in ("step", "arm", "seed", "train_loss")]
        lines = ["| arm | seed | step | " + " | ".join(sets) + " | same as the run's history |",
                 "|---|---|---|" + "---|" * (len(sets) + 1)]  # fmt: skip
        for r in rows:
            mine = [o for o in own if (o["arm"], o["seed"]) == (r["arm"], r["seed"])]
            same = "yes" if mine and all(mine[0][k] == r[k] for k in sets) else ("no" if mine else "not recorded")
            cells = " | ".join(f"{r[k]:.4f}" for k in sets)
            lines.append(f"| {r['arm']} | {r['seed']} | {r['step']} | {cells} | {same} |")
        atomic_write_bytes(Path(out) / "eval.md", ("\n".join(lines) + "\n").encode())
    click.echo("\n".join(lines))


@transformer.command("intervene")
@click.argument("run", type=RUN_OR_ARTIFACT)
@click.option(
    "--binding-w",
    default="0,0.25,0.5,0.6667,0.75,1",
    show_default=True,
    help="Binding transplant: mass on the predecessor in layer 1's pattern (comma-separated, in [0, 1]).",
)
@click.option("--amicl-a", default="0.5,1,2,4", show_default=True, help="AMICL transplant: binding weights a.")
@click.option(
    "--amicl-beta",
    default="1,10,30,100,300",
    show_default=True,
    help="AMICL transplant: inverse temperatures beta of the retrieval softmax.",
)
@device_option
@threads_option
@out_option("Folder for interventions.csv and interventions.md.")
def intervene_cmd(run, binding_w, amicl_a, amicl_beta, device, threads, out):
    """Ablations (zero and mean) of each layer's attention and of the stream term, and transplants of
    AMICL's binding into layer 1 and AMICL's retrieval into layer 2, on a trained streams run (a folder
    or builtin:NAME): accuracy on its own test sets after each."""
    from amicl.common.cli import comma_list, set_torch_threads
    from amicl.common.io import atomic_write_bytes, run_metadata, write_csv, write_json
    from amicl.common.runs import claim_run_folder
    from transformers_mini.toy.interventions import default_grid, intervene_run, markdown
    from transformers_mini.toy.tables import patch_lines

    ws, a = comma_list(binding_w, "--binding-w", float, True), comma_list(amicl_a, "--amicl-a", float, True)
    grid = default_grid(ws, a, comma_list(amicl_beta, "--amicl-beta", float, True))
    with claim_run_folder(out, "streams-interventions", False):
        set_torch_threads(threads)
        rows, patch = intervene_run(run, device, grid, echo=lambda m: click.echo(m, err=True))
        write_csv(Path(out) / "interventions.csv", rows)
        if patch:
            write_csv(Path(out) / "patching.csv", patch)
        config = {"kind": "streams-interventions", "run": str(run), "binding_w": ws, **run_metadata()}
        write_json(Path(out) / "config.json", config)
        intro = "Activation patching, corrupted (query's label changed) into clean: share of logit(y) - logit(y') moved"
        named = [{**r, "run": str(run)} for r in patch]
        md = markdown(rows) + ("\n".join(["", intro, "", *patch_lines(named), ""]) if patch else "")
        atomic_write_bytes(Path(out) / "interventions.md", md.encode())
    click.echo(md)


@transformer.command("join")
@click.argument("parts", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@out_option("Folder for the joined results.")
def join_cmd(parts, out):
    """Analyse runs made separately on the same seeds (e.g. none,V and K,Q) as one paired comparison."""
    from amicl.common.runs import expect_runs
    from transformers_mini.toy.compare import analyse, join_runs

    join_runs(Path(out), expect_runs(parts, ("streams", "streams-join"), "PARTS"))
    click.echo(analyse(Path(out)))


@transformer.command("analyse")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
def analyse_cmd(run):
    """Rewrite a finished streams (or joined) run's analysis (compare.md/csv, survival.csv, members.csv,
    mechanisms.csv) from its config, history and probes, with the package's current estimators."""
    from amicl.common.runs import claim_run_folder, run_kind
    from transformers_mini.toy.compare import analyse

    kind = run_kind(run)
    if kind not in ("streams", "streams-join"):
        raise click.BadParameter(
            f"{run} holds a {kind or 'no'} run; expected a streams or streams-join run", param_hint="RUN"
        )
    with claim_run_folder(run, kind, resume=True):
        click.echo(analyse(Path(run)))


@click.command("streams")
@click.argument("results", type=click.Path(exists=True, file_okay=False))
@out_option("Figure folder [default: RESULTS/figures].", required=False)
@format_option
def figures_streams(results, out, formats):
    """Learning curves with seed bands and the steps-to-threshold distribution of a comparison."""
    from transformers_mini.toy.figures import draw_streams

    out = Path(out) if out else Path(results) / "figures"
    from amicl.common.cli import comma_list

    for p in draw_streams(Path(results), out, tuple(comma_list(formats, "--format"))):
        click.echo(p)


@click.command("phase")
@click.argument("results", type=click.Path(exists=True, file_okay=False))
@out_option("Figure folder [default: RESULTS/figures].", required=False)
@format_option
def figures_phase(results, out, formats):
    """Theory vs network accuracy over the grid of a 'transformer phase' run."""
    from amicl.common.cli import comma_list
    from amicl.common.runs import RunFolderError, expect_run
    from transformers_mini.toy.figures import draw_phase

    expect_run(results, "theory-phase", "RESULTS")
    if not (Path(results) / "phase.csv").exists():
        raise RunFolderError(
            f"RESULTS: {results} is a phase run that has not finished (no phase.csv); "
            "finish it with 'amicl transformer phase ... --resume'"
        )
    for p in draw_phase(
        Path(results), Path(out) if out else Path(results) / "figures", tuple(comma_list(formats, "--format"))
    ):
        click.echo(p)


@click.command("interventions")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--set", "test_set", default="ic", show_default=True, help="Test set whose accuracy is drawn.")
@out_option("Figure folder.")
@format_option
def figures_interventions(results, test_set, out, formats):
    """The AMICL and binding transplants of 'transformer intervene' runs, per arm, beside the networks'
    own accuracy."""
    from amicl.common.cli import comma_list
    from amicl.common.runs import expect_runs
    from transformers_mini.toy.figures import draw_interventions

    folders = expect_runs(results, "streams-interventions", "RESULTS")
    for p in draw_interventions(folders, Path(out), test_set, tuple(comma_list(formats, "--format"))):
        click.echo(p)


@click.command("clamp")
@click.argument("runs", nargs=-1, required=True)
@click.option(
    "--seeds", default=None, help="Only these seeds of each run (comma-separated), e.g. the clamped runs' seeds."
)
@out_option("Figure folder.")
@format_option
def figures_clamp(runs, seeds, out, formats):
    """Kaplan-Meier curves of time to the threshold on ic for every arm of free and clamped streams runs,
    given as LABEL=FOLDER (e.g. free=results/streams/none_V_8seeds binding=results/theory/clamp/binding)."""
    from amicl.common.cli import comma_list
    from amicl.common.runs import expect_runs
    from transformers_mini.toy.figures import draw_clamp

    specs = [spec.partition("=") for spec in runs]
    for label, sep, folder in specs:
        if not sep or not label or not folder:
            raise click.BadParameter(f"{label}{sep}{folder!r} is not LABEL=FOLDER", param_hint="RUNS")
    folders = expect_runs([f for _, _, f in specs], ("streams", "streams-join"), "RUNS")
    named = dict(zip([label for label, _, _ in specs], folders))
    wanted = comma_list(seeds, "--seeds", int) if seeds else None
    for p in draw_clamp(named, Path(out), wanted, tuple(comma_list(formats, "--format"))):
        click.echo(p)

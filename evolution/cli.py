"""``amicl namm ...`` (base model, evolution, evaluation, table) and ``amicl figures namm``.

Every option's default is its config's (``evolution.config``, torch-free); options default to None and
the command builds the config from what was given. torch loads only after the options are validated
and the run folder is claimed.
"""

from __future__ import annotations

from pathlib import Path

import click

from amicl.common.cli import (
    CONTEXT,
    RUN_OR_ARTIFACT,
    RegistryChoice,
    comma_list,
    config_option,
    device_option,
    executor_options,
    format_option,
    given,
    out_option,
    resume_option,
    threads_option,
)
from evolution.config import MASKS, METRICS, POLICIES, SCORERS, BaseConfig, EvalConfig, EvolveConfig
from transformers_mini.core.config import PRECISION_HELP, PRECISIONS, GPTConfig

BASE_MODEL = BaseConfig().model
RUN_FOLDER = click.Path(file_okay=False)


@click.group(context_settings=CONTEXT)
def namm():
    """Neural attention memory models: train the frozen base model, evolve NAMM, evaluate policies."""


def _model_option(name, *decls, help=""):
    """An option for a field of the base model's GPTConfig; the default shown is BaseConfig's model."""
    return config_option(GPTConfig, name, *decls, type=int, help=help, default=getattr(BASE_MODEL, name))


@namm.command("train-base")
@_model_option("n_layer", "--layers")
@_model_option("d_model", "--d-model")
@_model_option("n_head", "--heads")
@_model_option("n_kv_head", "--kv-heads", help="Grouped KV heads.")
@config_option(
    GPTConfig,
    "token_shift",
    "--token-shift/--no-token-shift",
    default=BASE_MODEL.token_shift,
    help="Add the previous token's embedding to each input (see GPTConfig).",
)
@click.option(
    "--stream",
    default=None,
    help="Residual attention stream of the model: none, V, K, Q or KIND:option:... as in 'transformer "
    "compare' (V: every block l >= 2 adds block l-1's raw values) [default: none].",
)
@config_option(BaseConfig, "steps", type=int)
@config_option(BaseConfig, "batch", type=int)
@config_option(BaseConfig, "lr", type=float)
@config_option(BaseConfig, "min_context", type=int)
@config_option(BaseConfig, "max_context", type=int)
@config_option(BaseConfig, "queries", type=int, help="Questions per training prompt, each answer supervised.")
@config_option(
    BaseConfig,
    "curriculum",
    type=click.IntRange(min=0),
    help="Steps at each context length before the next doubling is admitted (0: all lengths from the start).",
)
@config_option(BaseConfig, "tasks", help="Comma-separated tasks to train on.")
@config_option(BaseConfig, "eval_every", type=int)
@config_option(BaseConfig, "seed", type=click.IntRange(min=0))
@config_option(BaseConfig, "precision", type=click.Choice(PRECISIONS), help=PRECISION_HELP)
@device_option
@threads_option
@out_option()
@resume_option
def train_base(stream, device, threads, out, resume, **kw):
    """Train the small GPT (rotary, grouped KV heads) on the synthetic long-context tasks."""
    from dataclasses import replace

    from amicl.common.cli import training_run
    from transformers_mini.core.config import parse_arm

    model = replace(BASE_MODEL, **given(kw, ("n_layer", "d_model", "n_head", "n_kv_head", "token_shift")))
    if stream is not None:
        try:
            model = replace(model, stream=parse_arm(stream))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--stream") from None
    if kw["max_context"] is not None and kw["max_context"] > model.block_size:
        model = replace(model, block_size=kw["max_context"])
    if kw["tasks"] is not None:
        kw["tasks"] = tuple(comma_list(kw["tasks"], "--tasks"))
    cfg = BaseConfig(model=model, **given(kw, BaseConfig.__dataclass_fields__))
    with training_run(out, "namm-base", resume, "base.pt", threads) as folder:
        from evolution.base import BaseTrainer
        from transformers_mini.core.device import resolve_device

        device = resolve_device(device)
        trainer = BaseTrainer(cfg, device)
        if folder.resume:
            trainer.load(Path(out))
        click.echo(f"base model: {trainer.model.n_params():,} parameters", err=True)
        hist = trainer.fit(Path(out))
    click.echo("  ".join(f"{k}={v:.3f}" for k, v in hist[-1].items() if k != "step") if hist else "no steps run")


def _stages(text: str | None):
    if text is None:
        return None
    stages = [s.strip() for s in text.split(";")]
    if any(not s for s in stages):
        raise click.BadParameter(f"{text!r} has an empty stage", param_hint="--stages")
    return tuple(tuple(comma_list(s, "--stages")) for s in stages)


@namm.command("evolve")
@click.option("--base", "base_dir", type=RUN_OR_ARTIFACT, required=True, help="A train-base run, or builtin:NAME.")
@config_option(
    EvolveConfig,
    "stages",
    default="kv_retrieval;kv_retrieval,variable_tracking",
    help="Semicolon-separated stages, each a comma-separated task list.",
)
@config_option(EvolveConfig, "generations", help="Generations per stage, comma-separated.")
@config_option(EvolveConfig, "scorer", type=RegistryChoice(SCORERS))
@config_option(EvolveConfig, "mask", type=click.Choice(MASKS))
@config_option(EvolveConfig, "popsize", type=int)
@config_option(EvolveConfig, "sigma0", type=float)
@click.option("--full-cma", is_flag=True, help="Full covariance instead of separable CMA-ES.")
@click.option(
    "--noise-handling",
    is_flag=True,
    help="pycma's uncertainty handling: re-evaluate ceil(2 + popsize/20) candidates a generation on a second "
    "draw of prompts and raise sigma when their ranks change beyond chance.",
)
@config_option(EvolveConfig, "n_up", type=int, help="Tokens between memory updates (multiple of 16).")
@config_option(EvolveConfig, "context", type=int)
@config_option(EvolveConfig, "prompts_per_task", "--prompts", type=int, help="Prompts per task per generation.")
@config_option(EvolveConfig, "dev_prompts", type=int)
@config_option(EvolveConfig, "dev_every", type=int)
@config_option(
    EvolveConfig,
    "metric",
    type=click.Choice(METRICS),
    help="Fitness score: exact match, or the probability of the right answer (smooth).",
)
@config_option(EvolveConfig, "seed", type=click.IntRange(min=0))
@config_option(
    EvolveConfig,
    "budget_fraction",
    type=float,
    help="Budget mode: every layer keeps this fraction of the context, the NAMM choosing which tokens "
    "(so fitness cannot trade cache for score); unset: NAMM's threshold rule, the cache fraction its choice.",
)
@device_option
@threads_option
@executor_options
@out_option()
@resume_option
def evolve(base_dir, full_cma, noise_handling, device, threads, executor, workers, scheduler, out, resume, **kw):
    """Evolve a NAMM scorer with CMA-ES on the base model, stage by stage, checkpointing every generation.
    With --executor process or dask, each generation's population is scored in batches on the workers
    (--threads torch threads each); the numbers do not change."""
    from dataclasses import replace

    from amicl.common.cli import training_run
    from amicl.common.parallel import ExecutorSpec
    from amicl.common.runs import expect_run

    where = replace(ExecutorSpec.from_options(executor, workers, scheduler), threads=threads or 1)

    kw["stages"] = _stages(kw["stages"])
    if kw["generations"] is not None:
        kw["generations"] = tuple(comma_list(kw["generations"], "--generations", int))
    flags = {**({"separable": False} if full_cma else {}), **({"noise_handling": True} if noise_handling else {})}
    cfg = EvolveConfig(**given(kw), **flags)
    expect_run(base_dir, "namm-base", "--base")
    with training_run(out, "namm-evolve", resume, "evolution.pkl", threads) as folder:
        from evolution.base import load_base
        from evolution.evolve import Evolution

        with where.open() as pool:
            from transformers_mini.core.device import resolve_device

            run = Evolution(cfg, load_base(base_dir, resolve_device(device)), executor=pool)
            if folder.resume:
                run.load(Path(out))
                click.echo(f"resuming at generation {run.engine.generation}", err=True)
            hist = run.run(Path(out))
    click.echo(
        f"best dev mean fitness {run.best['dev']:.4f} at generation {run.best['generation']}; "
        f"last generation: {hist[-1]['fitness_mean']:.4f} mean fitness, "
        f"{hist[-1]['cache_fraction_mean']:.3f} cache fraction"
    )


@namm.command("eval")
@click.option("--base", "base_dir", type=RUN_OR_ARTIFACT, required=True, help="A train-base run, or builtin:NAME.")
@click.option("--policy", type=RegistryChoice(POLICIES), required=True)
@click.option(
    "--namm",
    "namm_dir",
    type=RUN_OR_ARTIFACT,
    default=None,
    help="The evolve run whose best mean to use, or builtin:NAME (with --policy namm only).",
)
@click.option("--budget", default=None, help="Comma-separated token budgets per (layer, head), one eval each.")
@click.option("--budget-fraction", default=None, help="Comma-separated budgets as fractions of --context.")
@click.option(
    "--match",
    "match_dir",
    type=RUN_OR_ARTIFACT,
    default=None,
    help="A NAMM eval folder: use its measured per-layer average cache as the budget.",
)
@click.option(
    "--full-from",
    "full_from",
    type=RUN_FOLDER,
    default=None,
    help="An eval of another policy on the same base and prompts: reuse its full-cache scores (checked on "
    "the first batch of every task) instead of recomputing them (about half of a one-budget eval's time).",
)
@config_option(EvalConfig, "tasks", help="Comma-separated tasks.")
@config_option(EvalConfig, "prompts", type=int)
@config_option(EvalConfig, "context", type=int)
@config_option(EvalConfig, "n_up", type=int)
@config_option(EvalConfig, "metric", type=click.Choice(METRICS))
@config_option(EvalConfig, "seed", type=click.IntRange(min=0))
@config_option(EvalConfig, "window", type=click.IntRange(min=1))
@config_option(EvalConfig, "kernel", type=click.IntRange(min=1))
@device_option
@threads_option
@out_option()
def eval_cmd(base_dir, policy, namm_dir, budget, budget_fraction, match_dir, full_from, device, threads, out, **kw):
    """Score a memory policy on the tasks, normalised by the full cache on the same prompts."""
    from amicl.common.cli import set_torch_threads
    from amicl.common.runs import claim_run_folder, expect_run
    from evolution.evaluate import evaluate_policy, parse_budgets

    if (policy == "namm") != (namm_dir is not None):
        raise click.UsageError("--namm RUN goes with --policy namm, and only with it")
    if kw["tasks"] is not None:
        kw["tasks"] = tuple(comma_list(kw["tasks"], "--tasks"))
    context = kw["context"] or EvalConfig().context
    budgets = parse_budgets(
        comma_list(budget, "--budget", int), comma_list(budget_fraction, "--budget-fraction", float), match_dir, context
    )
    expect_run(base_dir, "namm-base", "--base")
    if namm_dir:
        from amicl.common.io import read_json

        evolved = read_json(expect_run(namm_dir, "namm-evolve", "--namm") / "config.json")["evolve"]
        f = EvolveConfig.from_dict(evolved).budget_fraction
        if budgets == (None,) and f is not None:  # a budget-mode NAMM ranks tokens; it was never given a threshold
            budgets = (max(1, round(f * context)),)
            click.echo(f"the NAMM was evolved to keep {f:g} of the context: {budgets[0]} tokens per layer", err=True)
    cfg = EvalConfig(policy=policy, budgets=budgets, **given(kw))
    with claim_run_folder(out, "namm-eval"):
        set_torch_threads(threads)
        from transformers_mini.core.device import resolve_device

        rows = evaluate_policy(
            Path(base_dir),
            cfg,
            Path(out),
            Path(namm_dir) if namm_dir else None,
            resolve_device(device),
            Path(full_from) if full_from else None,
        )
    for r in rows:
        click.echo(
            f"{r['policy']:8s} budget={r['budget']!s:>8s} {r['task']:20s} normalised {r['normalised']:.3f} "
            f"cache {r['cache_fraction']:.3f}"
        )


@namm.command("table")
@click.argument("evals", nargs=-1, type=RUN_FOLDER, required=True)
@out_option("Also write table.md and table.csv here.", required=False)
def table(evals, out):
    """Normalised score per policy and task with bootstrap 95% intervals, from eval folders on the same prompts;
    tasks outside the NAMM's evolution stages count as held out, and NAMM is compared with each policy, paired."""
    from amicl.common.io import atomic_write_bytes, write_csv
    from amicl.common.runs import expect_runs
    from evolution.table import summary_table, trained_tasks

    dirs = expect_runs(evals, "namm-eval", "EVALS")
    rows, md = summary_table(dirs, trained_tasks(dirs))
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_csv(Path(out) / "table.csv", rows)
        atomic_write_bytes(Path(out) / "table.md", md.encode())
    click.echo(md, nl=False)


@namm.command("compare-bases")
@click.argument("evals", nargs=-1, type=RUN_FOLDER, required=True)
@click.option("--other", "others", multiple=True, type=RUN_FOLDER, required=True, help="An eval of base B (repeat).")
@click.option("--names", default="A,B", show_default=True, help="Names of the two bases, for the table.")
@out_option("Also write bases.md and bases.csv here.", required=False)
def compare_bases(evals, others, names, out):
    """Eviction tolerance of two base models: for every policy and budget evaluated on both (EVALS on base A,
    --other on base B, the same prompts), B's normalised score minus A's, with a paired bootstrap interval."""
    from amicl.common.io import atomic_write_bytes, write_csv
    from amicl.common.runs import expect_runs
    from evolution.table import base_difference, base_difference_markdown, flatten

    name_a, _, name_b = names.partition(",")
    if not name_a or not name_b or "," in name_b:
        raise click.BadParameter("give two names, e.g. none,V", param_hint="--names")
    a, b = expect_runs(evals, "namm-eval", "EVALS"), expect_runs(others, "namm-eval", "--other")
    rows = base_difference(a, b, {t for s in EvolveConfig().stages for t in s})
    md = base_difference_markdown(rows, name_a, name_b)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_csv(Path(out) / "bases.csv", flatten(rows))
        atomic_write_bytes(Path(out) / "bases.md", md.encode())
    click.echo(md, nl=False)


@click.command("namm")
@click.argument("runs", nargs=-1, type=RUN_FOLDER, required=True)
@out_option()
@format_option
def figures_namm(runs, out, formats):
    """Fitness and cache curves of evolve runs, score vs cache fraction of eval runs, kept-token layers and ages."""
    from amicl.common.runs import expect_runs
    from evolution.figures import draw_namm

    folders = expect_runs(runs, ("namm-evolve", "namm-eval"), "RUNS")
    for p in draw_namm(folders, Path(out), tuple(comma_list(formats, "--format"))):
        click.echo(p)

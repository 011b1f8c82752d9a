"""``amicl memory ...``: the AMICL associative memory from the command line (runs, sweeps, matrices).

Options take their defaults and help from the config classes (``MemoryConfig``, ``EpisodeConfig``,
``TaskConfig``); nothing imported at module level loads numba, so ``amicl memory --help`` answers at once.
"""

from __future__ import annotations

import click

from amicl.common.cli import CONTEXT, config_option, executor_options, given, out_option
from amicl.common.parallel import ExecutorSpec
from amicl.common.validate import config_from_dict
from amicl.memory.hopfield import MemoryConfig
from amicl.memory.reference import SEP_CODES, SIM_CODES
from amicl.task import TEST_SETS, EpisodeConfig, TaskConfig

# ------------------------------------------------------------------------------------------------
# Shared options


def common_run_options(f):
    """--seed and where the trials run (--executor, --workers, --scheduler)."""
    f = executor_options(f)
    f = click.option("--seed", type=click.IntRange(min=0), default=0, help="Root seed; same seed, same numbers.")(f)
    return f


DATA_FIELDS = {  # option -> type; help and defaults come from the config classes that own the fields
    "D": int, "K": int, "T": int, "epsilon": float, "noise": click.Choice(["1/D", "1/sqrt(D)"]), "L": int, "N": int,
    "Nmax": int, "alpha": float, "B": int, "p_B": float, "p_C": float, "n_novel": int,
}  # fmt: skip


def data_option(name: str):
    """The option for data field ``name``, marked [episodes] or [reddy] when only one task has it."""
    in_episodes, in_task = name in EpisodeConfig.__dataclass_fields__, name in TaskConfig.__dataclass_fields__
    cls = EpisodeConfig if in_episodes else TaskConfig
    only = "" if in_episodes and in_task else "[episodes] " if in_episodes else "[reddy] "
    return config_option(cls, name, f"--{name}", type=DATA_FIELDS[name], help=only + cls.HELP[name])


def data_options(f):
    """--task, --test-set and one option per data-config field."""
    for name in reversed(list(DATA_FIELDS)):
        f = data_option(name)(f)
    f = click.option(
        "--test-set",
        type=click.Choice(TEST_SETS),
        default=None,
        help="[reddy] Test set the memory is scored on. [default: ic]",
    )(f)
    f = click.option(
        "--task",
        "task_kind",
        type=click.Choice(["episodes", "reddy"]),
        default="episodes",
        help="AMICL notebook episodes, or Reddy's generator (the Transformer's data).",
    )(f)
    f = click.option(
        "--engine",
        type=click.Choice(["stream", "materialise"]),
        default=None,
        help="[episodes] stream: draw, score and forget each episode (constant memory); materialise: "
        "NumPy arrays of every episode's tokens. [default: stream for episodes, materialise for reddy]",
    )(f)
    return f


MEMORY_FIELDS = ("a", "similarity", "separation", "beta", "n", "max_iter")


def memory_options(f):
    opts = [
        config_option(MemoryConfig, "a", "--a", type=float, help="Weight of the previous token in the binding."),
        config_option(MemoryConfig, "similarity", type=click.Choice(list(SIM_CODES))),
        config_option(MemoryConfig, "separation", type=click.Choice(list(SEP_CODES))),
        config_option(MemoryConfig, "beta", type=float, help="Inverse temperature of the 'softmax' separation."),
        config_option(MemoryConfig, "n", "--power", type=float, help="Exponent n of the 'power' separation."),
        config_option(MemoryConfig, "max_iter", type=int, help="Hopfield iterations (0 = one-step retrieval)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def trials_option(f):
    from amicl.memory.sweep import RunSpec

    return config_option(RunSpec, "trials", type=click.IntRange(min=1), help="Trials (episodes) per setting.")(f)


def build_spec(task_kind, test_set, trials, kwargs: dict, swept=(), engine=None):
    """RunSpec from CLI values: an option that does not apply to ``task_kind``, or that is also swept
    by --grid, is an error (it would be ignored or overridden)."""
    from amicl.memory.sweep import DATA_KINDS, RunSpec

    given_opts = given(kwargs)
    both = sorted(set(given_opts) & set(swept))
    if both:
        raise click.UsageError(f"--{both[0]} is also swept by --grid; give it in one place")
    cls = DATA_KINDS[task_kind]
    data = {k: v for k, v in given_opts.items() if k in DATA_FIELDS}
    wrong = sorted(set(data) - set(cls.__dataclass_fields__))
    if test_set is not None and task_kind != "reddy":
        wrong.insert(0, "test-set")
    if wrong:
        raise click.UsageError(f"--{wrong[0]} does not apply to --task {task_kind}")
    mem = config_from_dict(MemoryConfig, {k: v for k, v in given_opts.items() if k in MEMORY_FIELDS})
    top = given({"test_set": test_set, "trials": trials, "engine": engine})
    return RunSpec(mem, cls(**data), **top)


def _sweep_and_save(spec, grid, seed, where, out, kind):
    """Claim --out first (so an unusable folder fails before the work), sweep, save; the result."""
    from amicl.common.runs import claim_run_folder
    from amicl.memory.sweep import check_memory, sweep

    check_memory(spec, grid, where.pool_size)
    folder = claim_run_folder(out, kind) if out else None
    try:
        with where.open() as ex:
            res = sweep(spec, grid, seed=seed, executor=ex)
        if folder:
            res.save(out, kind=kind)
            click.echo(f"saved {out}", err=True)
    finally:
        if folder:
            folder.release()
    return res


# ------------------------------------------------------------------------------------------------
# amicl memory ...


@click.group(context_settings=CONTEXT)
def memory():
    """The AMICL associative-memory model: runs and sweeps."""


@memory.command("run")
@data_options
@memory_options
@trials_option
@common_run_options
@out_option("Save results here.", required=False)
def memory_run(task_kind, test_set, engine, trials, seed, executor, workers, scheduler, out, **kwargs):
    """Score one setting of the memory; prints accuracy with its 95% binomial interval."""
    where = ExecutorSpec.from_options(executor, workers, scheduler)
    spec = build_spec(task_kind, test_set, trials, kwargs, engine=engine)
    row = _sweep_and_save(spec, {}, seed, where, out, "memory-run").rows()[0]
    click.echo(
        f"accuracy {row['accuracy']:.4f}  95% CI [{row['ci_low']:.4f}, {row['ci_high']:.4f}]  "
        f"({row['correct']}/{row['trials']})"
    )


@memory.command("sweep")
@data_options
@memory_options
@click.option(
    "--grid",
    "grids",
    multiple=True,
    required=True,
    help="name=values; values as 1,1.5,2 or start:stop:num (linspace) or log:lo:hi:num. Repeat for a grid.",
)
@trials_option
@common_run_options
@out_option("Results folder.")
def memory_sweep(task_kind, test_set, engine, grids, trials, seed, executor, workers, scheduler, out, **kwargs):
    """Sweep any parameter(s) (a, beta, D, T, K, epsilon, B, similarity, ...); writes config.json,
    summary.csv and results.npz to --out and prints the summary."""
    from amicl.memory.sweep import parse_grid

    grid = {}
    for text in grids:
        name, values = parse_grid(task_kind, text)
        if name in grid:
            raise click.UsageError(f"--grid names {name} twice; give all its values in one --grid")
        grid[name] = values
    where = ExecutorSpec.from_options(executor, workers, scheduler)
    spec = build_spec(task_kind, test_set, trials, kwargs, swept=grid, engine=engine)
    res = _sweep_and_save(spec, grid, seed, where, out, "memory-sweep")
    echo_rows(res.rows(), list(grid))


def echo_rows(rows, names):
    for r in rows:
        keys = "  ".join(f"{k}={_fmt(r[k])}" for k in names)
        click.echo(f"{keys}  accuracy {r['accuracy']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]")


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@memory.command("matrices")
@config_option(MemoryConfig, "a", "--a", type=float)
@config_option(EpisodeConfig, "D", "--D", type=int)
@config_option(EpisodeConfig, "K", "--K", type=int)
@config_option(EpisodeConfig, "T", "--T", type=int)
@config_option(MemoryConfig, "beta", type=float, help="Inverse temperature of the row softmax.")
@click.option("--seed", type=click.IntRange(min=0), default=0)
@out_option()
def memory_matrices(a, D, K, T, beta, seed, out):
    """Save the T x T score matrices of one notebook episode for every similarity."""
    from amicl.common.runs import claim_run_folder
    from amicl.memory.figures import save_matrices

    mem = config_from_dict(MemoryConfig, given({"a": a, "beta": beta}))
    episode = EpisodeConfig(**given({"D": D, "K": K, "T": T}))
    with claim_run_folder(out, "memory-matrices"):
        save_matrices(out, a=mem.a, episode=episode, beta=mem.beta, seed=seed)
    click.echo(f"saved {out}", err=True)

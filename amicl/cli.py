"""The ``amicl`` command line: the root group, its ``memory``, ``figures`` and ``reproduce`` groups.

Other rooms' groups and commands are registered by import path and loaded only when invoked, and no
module imported here at start-up imports torch or numba, so ``amicl --help`` answers at once.
Errors (bad options, ``ValueError`` from the library) print one line and exit with code 2.
"""

from __future__ import annotations

import click

from amicl.common.cli import CONTEXT, LazyGroup, RootGroup, config_option, executor_options, given
from amicl.common.parallel import ExecutorSpec
from amicl.common.validate import config_from_dict
from amicl.memory import MemoryConfig
from amicl.reference import SEP_CODES, SIM_CODES
from amicl.task import TEST_SETS, EpisodeConfig, TaskConfig


@click.group(
    cls=RootGroup,
    context_settings=CONTEXT,
    lazy={
        "transformer": "transformers_mini.cli:transformer",
        "namm": "evolution.cli:namm",
        "lm": "transformers_mini.lm_cli:lm",
    },
)
@click.version_option(package_name="amicl")
def amicl():
    """Associative memory for in-context learning, residual attention streams and evolved KV-cache
    memory (NAMM): simulations, training runs and the papers' figures."""


def main():  # console-script entry point
    amicl.main()


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
    from amicl.sweep import RunSpec

    return config_option(RunSpec, "trials", type=click.IntRange(min=1), help="Trials (episodes) per setting.")(f)


def build_spec(task_kind, test_set, trials, kwargs: dict, swept=(), engine=None):
    """RunSpec from CLI values: an option that does not apply to ``task_kind``, or that is also swept
    by --grid, is an error (it would be ignored or overridden)."""
    from amicl.sweep import DATA_KINDS, RunSpec

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
    from amicl.sweep import check_memory, sweep

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


@amicl.group(context_settings=CONTEXT)
def memory():
    """The AMICL associative-memory model: runs and sweeps."""


@memory.command("run")
@data_options
@memory_options
@trials_option
@common_run_options
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Save results here.")
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
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Results folder.")
def memory_sweep(task_kind, test_set, engine, grids, trials, seed, executor, workers, scheduler, out, **kwargs):
    """Sweep any parameter(s) (a, beta, D, T, K, epsilon, B, similarity, ...); writes config.json,
    summary.csv and results.npz to --out and prints the summary."""
    from amicl.sweep import parse_grid

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
@click.option("--out", type=click.Path(file_okay=False), required=True)
def memory_matrices(a, D, K, T, beta, seed, out):
    """Save the T x T score matrices of one notebook episode for every similarity."""
    from amicl.common.runs import claim_run_folder
    from amicl.figures import save_matrices

    mem = config_from_dict(MemoryConfig, given({"a": a, "beta": beta}))
    episode = EpisodeConfig(**given({"D": D, "K": K, "T": T}))
    with claim_run_folder(out, "memory-matrices"):
        save_matrices(out, a=mem.a, episode=episode, beta=mem.beta, seed=seed)
    click.echo(f"saved {out}", err=True)


# ------------------------------------------------------------------------------------------------
# Groups composed from the rooms


@amicl.group(
    cls=LazyGroup,
    context_settings=CONTEXT,
    lazy={
        "amicl": "amicl.figures:figures_amicl",
        "streams": "transformers_mini.cli:figures_streams",
        "phase": "transformers_mini.cli:figures_phase",
        "lm": "transformers_mini.lm_cli:figures_lm",
        "namm": "evolution.cli:figures_namm",
    },
)
def figures():
    """Draw figures from saved results (never by re-running)."""


@amicl.group(
    cls=LazyGroup,
    context_settings=CONTEXT,
    lazy={"amicl": "amicl.reproduce:reproduce_amicl", "all": "amicl.report:reproduce_all_cmd"},
)
def reproduce():
    """Run the experiments behind a paper's figures and tables, then draw them."""


if __name__ == "__main__":
    main()


# ------------------------------------------------------------------------------------------------
# amicl artifacts ...


@amicl.group(context_settings=CONTEXT)
def artifacts():
    """The small trained models shipped with the package, used as builtin:NAME (e.g. --base builtin:namm-base)."""


@artifacts.command("list")
def artifacts_list():
    """Every built-in artifact: its kind, size, and the command and commit that made it."""
    from amicl.common.artifacts import manifest

    entries = manifest()
    if not entries:
        click.echo("no built-in artifacts are installed")
    for name, e in entries.items():
        size = sum(f["bytes"] for f in e["files"].values())
        click.echo(f"builtin:{name}  {e['kind']}  {size:,} bytes  commit {str(e['commit'])[:10]}  {e['command']}")


@artifacts.command("add")
@click.argument("name")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--files", required=True, help="Comma-separated files of RUN its loader needs (config.json always).")
def artifacts_add(name, run, files):
    """Copy a finished run into the package as builtin:NAME, recording sha256, command and commit."""
    from pathlib import Path

    from amicl.common.artifacts import add
    from amicl.common.cli import comma_list

    entry = add(name, Path(run), comma_list(files, "--files"))
    click.echo(f"builtin:{name}: {sum(f['bytes'] for f in entry['files'].values()):,} bytes")

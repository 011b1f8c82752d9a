"""The ``amicl`` command line: the root group, its ``memory``, ``figures`` and ``reproduce`` groups.

Other rooms' groups and commands are registered by import path and loaded only when invoked, and no
module imported here at start-up imports torch or numba, so ``amicl --help`` answers at once.
Errors (bad options, ``ValueError`` from the library) print one line and exit with code 2.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import fields

import click

from amicl._validate import RunStopped

CONTEXT = {"show_default": True, "help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    """A group whose subcommands named in ``lazy`` ("module:attribute") are imported on first use."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy and name not in self.commands:
            module, attr = self.lazy[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        # Short help straight from the registry, so listing commands imports nothing heavy.
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name)
            text = cmd.get_short_help_str(limit=80) if cmd is not None else LAZY_HELP.get(self.lazy[name], "")
            rows.append((name, text))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


LAZY_HELP = {
    "evolution.cli:namm": "Neural attention memory models: base model, CMA-ES evolution, policy evaluation.",
    "evolution.cli:figures_namm": "NAMM evolution curves, score vs cache fraction, layers, ages, spectrograms.",
    "transformers_mini.cli:transformer": "The two-layer ICL Transformer with residual attention streams.",
    "transformers_mini.cli:figures_streams": "Learning curves and steps-to-ICL of a stream comparison.",
    "amicl.figures:figures_amicl": "Draw the AMICL figures from saved results.",
    "amicl.reproduce:reproduce_amicl": "Reproduce the AMICL notebook's numbers and figures.",
}


class RootGroup(LazyGroup):
    """The root: turns every ``ValueError`` and usage error into one line on stderr and exit code 2."""

    def main(self, args=None, prog_name=None, **kwargs):
        kwargs.pop("standalone_mode", None)
        try:
            rv = super().main(args=args, prog_name=prog_name or "amicl", standalone_mode=False, **kwargs)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        except ValueError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except RunStopped as exc:
            click.echo(f"Stopped: {exc}", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=RootGroup, context_settings=CONTEXT, lazy={"transformer": "transformers_mini.cli:transformer",
                                                                          "namm": "evolution.cli:namm"})
@click.version_option(package_name="amicl")
def amicl():
    """Associative memory for in-context learning, residual attention streams and evolved KV-cache
    memory (NAMM): simulations, training runs and the papers' figures."""


def main():  # console-script entry point
    amicl.main()


# ------------------------------------------------------------------------------------------------
# Shared options


def check_run_folder(out, marker: str, resume: bool) -> None:
    """Refuse to overwrite a run (``out/marker`` exists) unless resuming, and to resume nothing."""
    from pathlib import Path

    exists = (Path(out) / marker).exists()
    if exists and not resume:
        raise click.UsageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if resume and not exists:
        raise click.UsageError(f"--resume: no {marker} in {out}")


def common_run_options(f):
    """--seed, --workers (process pool size; 1 = in-process)."""
    f = click.option("--workers", type=click.IntRange(min=1), default=1, help="Parallel worker processes.")(f)
    f = click.option("--seed", type=click.IntRange(min=0), default=0, help="Root seed; same seed, same numbers.")(f)
    return f


_DATA_FIELDS = {  # option -> (help, type); defaults come from the config classes
    "D": ("Content dimensions.", int),
    "K": ("Number of classes.", int),
    "T": ("[episodes] Tokens per episode (even).", int),
    "epsilon": ("Within-class noise.", float),
    "noise": ("[episodes] Std of the item noise before epsilon.", click.Choice(["1/D", "1/sqrt(D)"])),
    "L": ("[reddy] Number of labels.", int),
    "N": ("[reddy] Context (item, label) pairs.", int),
    "Nmax": ("[reddy] Positional code covers 2*Nmax+1 tokens.", int),
    "alpha": ("[reddy] Zipf exponent of class frequencies.", float),
    "B": ("[reddy] Burstiness: N/B classes shown B times.", int),
    "p_B": ("[reddy] Fraction of bursty sequences.", float),
    "p_C": ("[reddy] Fraction of novel-class sequences.", float),
    "n_novel": ("[reddy] Novel classes drawn per call.", int),
}


def data_options(f):
    """--task and one option per data-config field (defaults: the config's, shown in --help)."""
    from amicl.task import EpisodeConfig, TaskConfig

    defaults = {**TaskConfig().to_dict(), **EpisodeConfig().to_dict()}
    for name in reversed(list(_DATA_FIELDS)):
        text, typ = _DATA_FIELDS[name]
        f = click.option(f"--{name}", name, type=typ, default=None, help=f"{text} [default: {defaults[name]}]",
                         show_default=False)(f)
    f = click.option("--test-set", type=click.Choice(["test", "ic", "ic2", "iw"]), default="ic",
                     help="[reddy] Test set the memory is scored on.")(f)
    f = click.option("--task", "task_kind", type=click.Choice(["episodes", "reddy"]), default="episodes",
                     help="AMICL notebook episodes, or Reddy's generator (the Transformer's data).")(f)
    return f


def memory_options(f):
    f = click.option("--max-iter", type=int, default=0, help="Hopfield iterations (0 = one-step retrieval).")(f)
    f = click.option("--power", "n", type=float, default=2.0, help="Exponent n of the 'power' separation.")(f)
    f = click.option("--beta", type=float, default=1.0, help="Inverse temperature of the 'softmax' separation.")(f)
    f = click.option("--separation", type=click.Choice(["argmax", "softmax", "power"]), default="argmax")(f)
    f = click.option("--similarity", type=click.Choice(["dot", "pearson", "euclidean", "manhattan"]), default="dot")(f)
    f = click.option("--a", type=float, default=2.0, help="Weight of the previous token in the binding.")(f)
    return f


def build_spec(task_kind, test_set, trials, mem: dict, data: dict):
    """RunSpec from CLI values; an option that does not apply to ``task_kind`` is an error."""
    from amicl.memory import MemoryConfig
    from amicl.sweep import DATA_KINDS, RunSpec

    cls = DATA_KINDS[task_kind]
    names = {fl.name for fl in fields(cls)}
    given = {k: v for k, v in data.items() if v is not None}
    wrong = sorted(set(given) - names)
    if wrong:
        raise click.UsageError(f"--{wrong[0]} does not apply to --task {task_kind}")
    return RunSpec(MemoryConfig(**mem), cls(**given), test_set, trials)


def _split(kwargs):
    mem = {k: kwargs.pop(k) for k in ("a", "similarity", "separation", "beta", "n", "max_iter")}
    data = {k: kwargs.pop(k) for k in _DATA_FIELDS}
    return mem, data


# ------------------------------------------------------------------------------------------------
# amicl memory ...


@amicl.group(context_settings=CONTEXT)
def memory():
    """The AMICL associative-memory model: runs and sweeps."""


@memory.command("run")
@data_options
@memory_options
@click.option("--trials", type=click.IntRange(min=1), default=1000)
@common_run_options
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Save results here.")
def memory_run(task_kind, test_set, trials, seed, workers, out, **kwargs):
    """Score one setting of the memory; prints accuracy with its 95% binomial interval."""
    from amicl.parallel import make_executor
    from amicl.sweep import sweep

    mem, data = _split(kwargs)
    spec = build_spec(task_kind, test_set, trials, mem, data)
    with make_executor(workers) as ex:
        res = sweep(spec, {}, seed=seed, executor=ex)
    row = res.rows()[0]
    click.echo(f"accuracy {row['accuracy']:.4f}  95% CI [{row['ci_low']:.4f}, {row['ci_high']:.4f}]  "
               f"({row['correct']}/{row['trials']})")
    if out:
        res.save(out)
        click.echo(f"saved {out}", err=True)


@memory.command("sweep")
@data_options
@memory_options
@click.option("--grid", "grids", multiple=True, required=True,
              help="name=values; values as 1,1.5,2 or start:stop:num (linspace) or log:lo:hi:num. Repeat for a grid.")
@click.option("--trials", type=click.IntRange(min=1), default=1000)
@common_run_options
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Results folder.")
def memory_sweep(task_kind, test_set, grids, trials, seed, workers, out, **kwargs):
    """Sweep any parameter(s) (a, beta, D, T, K, epsilon, B, similarity, ...); writes config.json,
    summary.csv and results.npz to --out and prints the summary."""
    from amicl.parallel import make_executor
    from amicl.sweep import parse_grid, sweep

    mem, data = _split(kwargs)
    spec = build_spec(task_kind, test_set, trials, mem, data)
    grid = dict(parse_grid(task_kind, g) for g in grids)
    with make_executor(workers) as ex:
        res = sweep(spec, grid, seed=seed, executor=ex)
    res.save(out)
    echo_rows(res.rows(), list(grid))
    click.echo(f"saved {out}", err=True)


def echo_rows(rows, names):
    for r in rows:
        keys = "  ".join(f"{k}={_fmt(r[k])}" for k in names)
        click.echo(f"{keys}  accuracy {r['accuracy']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]")


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@memory.command("matrices")
@click.option("--a", type=float, default=2.0)
@click.option("--D", "D", type=int, default=100)
@click.option("--K", "K", type=int, default=512)
@click.option("--T", "T", type=int, default=20)
@click.option("--beta", type=float, default=1.0, help="Inverse temperature of the row softmax.")
@click.option("--seed", type=click.IntRange(min=0), default=0)
@click.option("--out", type=click.Path(file_okay=False), required=True)
def memory_matrices(a, D, K, T, beta, seed, out):
    """Save the T x T score matrices of one notebook episode for every similarity."""
    from amicl.figures import save_matrices

    save_matrices(out, a=a, D=D, K=K, T=T, beta=beta, seed=seed)
    click.echo(f"saved {out}", err=True)


# ------------------------------------------------------------------------------------------------
# Groups composed from the rooms


@amicl.group(cls=LazyGroup, context_settings=CONTEXT, lazy={"amicl": "amicl.figures:figures_amicl",
                                                             "streams": "transformers_mini.cli:figures_streams",
                                                             "namm": "evolution.cli:figures_namm"})
def figures():
    """Draw figures from saved results (never by re-running)."""


@amicl.group(cls=LazyGroup, context_settings=CONTEXT, lazy={"amicl": "amicl.reproduce:reproduce_amicl"})
def reproduce():
    """Run the experiments behind a paper's figures and tables, then draw them."""


if __name__ == "__main__":
    main()

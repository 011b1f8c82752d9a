"""The ``amicl`` command line: the root group, composed of each room's groups (``memory``,
``transformer``, ``lm``, ``namm``), its ``figures`` and ``reproduce`` commands, and ``artifacts``.

Rooms' groups and commands are registered by import path and loaded only when invoked, and no module
imported here at start-up imports torch or numba, so ``amicl --help`` answers at once.
Errors (bad options, ``ValueError`` from the library) print one line and exit with code 2.
"""

from __future__ import annotations

import click

from amicl.common.cli import CONTEXT, LazyGroup, RootGroup


@click.group(
    cls=RootGroup,
    context_settings=CONTEXT,
    lazy={
        "memory": "amicl.memory.cli:memory",
        "tables": "amicl.tables:tables_cmd",
        "transformer": "transformers_mini.toy.cli:transformer",
        "namm": "evolution.cli:namm",
        "lm": "transformers_mini.lm.cli:lm",
    },
)
@click.version_option(package_name="amicl")
def amicl():
    """Associative memory for in-context learning, residual attention streams and evolved KV-cache
    memory (NAMM): simulations, training runs and the papers' figures."""


def main():  # console-script entry point
    amicl.main()


# ------------------------------------------------------------------------------------------------
# Groups composed from the rooms


@amicl.group(
    cls=LazyGroup,
    context_settings=CONTEXT,
    lazy={
        "amicl": "amicl.memory.figures:figures_amicl",
        "streams": "transformers_mini.toy.cli:figures_streams",
        "phase": "transformers_mini.toy.cli:figures_phase",
        "interventions": "transformers_mini.toy.cli:figures_interventions",
        "clamp": "transformers_mini.toy.cli:figures_clamp",
        "lm": "transformers_mini.lm.cli:figures_lm",
        "namm": "evolution.cli:figures_namm",
    },
)
def figures():
    """Draw figures from saved results (never by re-running)."""


@amicl.group(
    cls=LazyGroup,
    context_settings=CONTEXT,
    lazy={"amicl": "amicl.memory.reproduce:reproduce_amicl", "all": "amicl.report:reproduce_all_cmd"},
)
def reproduce():
    """Run the experiments behind a paper's figures and tables, then draw them."""


# ------------------------------------------------------------------------------------------------
# amicl artifacts ...


@amicl.group(context_settings=CONTEXT)
def artifacts():
    """The small trained models shipped with the package, used as builtin:NAME (e.g. --base builtin:namm-base)."""


@artifacts.command("list")
def artifacts_list():
    """Every built-in artifact: its kind, size, and the command and commit that made it."""
    from amicl.common.artifacts import manifest, pending

    entries = manifest()
    if not entries:
        click.echo("no built-in artifacts are installed")
    for name, e in entries.items():
        size = sum(f["bytes"] for f in e["files"].values())
        click.echo(f"builtin:{name}  {e['kind']}  {size:,} bytes  commit {str(e['commit'])[:10]}  {e['command']}")
    for name, e in pending().items():
        click.echo(f"builtin:{name}  {e['kind']}  not shipped in this release: {e['why']}")


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


if __name__ == "__main__":
    main()

"""CLI plumbing every room's command group uses: context settings, lazily loaded groups, the root's
one-line error handling, options whose defaults belong to a config class, and shared options.

Nothing here imports torch or a room: each room's ``cli`` module builds on this, and ``amicl.cli``
only composes the rooms' groups.
"""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from dataclasses import MISSING, fields

import click

from amicl.common.validate import RunStopped

CONTEXT = {"show_default": True, "help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    """A group whose subcommands named in ``lazy`` ("module:attribute") are imported on first use.

    Listing the commands imports the room's ``cli`` module for its help text (one source: the
    command's docstring); those modules import only click and torch-free configs.
    """

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


class RootGroup(LazyGroup):
    """The root: every usage error and ``ValueError`` becomes one line on stderr and exit code 2."""

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
            click.echo(f"Error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
            sys.exit(2)
        except RunStopped as exc:
            click.echo(f"Stopped: {exc}", err=True)
            sys.exit(1)
        except OSError as exc:  # a read or write a library made outside amicl.common.io
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(f"Error: {exc.strerror or type(exc).__name__}{where}", err=True)
            sys.exit(2)
        sys.exit(rv if isinstance(rv, int) else 0)


def default_of(cls, name: str):
    """The default of field ``name`` of the dataclass ``cls`` (the one place that owns it)."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    raise KeyError(f"{cls.__name__} has no field {name!r} with a default")


def config_option(cls, name: str, *decls: str, help: str = "", default=MISSING, dest: str | None = None, **kwargs):
    """A click option for field ``name`` of ``cls`` that defaults to None (so the command passes on only
    what was given) and shows the config's default in its help. ``default`` overrides what is shown
    (for options that map onto a nested or derived field); ``dest`` names the command's parameter
    when it is not the field's name. Without ``help``, the text comes from the class's ``HELP`` dict."""
    help = help or getattr(cls, "HELP", {}).get(name, "")
    shown = default_of(cls, name) if default is MISSING else default
    if isinstance(shown, tuple):
        shown = ",".join(str(s) for s in shown)
    decls = decls or (f"--{name.replace('_', '-')}",)
    text = f"{help} [default: {shown}]".strip()
    return click.option(*decls, dest or name, default=None, show_default=False, help=text, **kwargs)


def given(values: dict, names=None) -> dict:
    """The options that were given (not None), optionally only those in ``names``."""
    return {k: v for k, v in values.items() if v is not None and (names is None or k in names)}


def comma_list(text: str | None, option: str, cast=str, unique: bool = False) -> list | None:
    """``a,b,c`` as a list, each item cast; an empty item, a bad cast or (``unique``) an item given twice
    is a ``click.BadParameter``."""
    if text is None:
        return None
    items = [s.strip() for s in text.split(",")]
    if not items or any(not s for s in items):
        raise click.BadParameter(f"{text!r} has an empty item", param_hint=option)
    try:
        values = [cast(s) for s in items]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of {cast.__name__}s", param_hint=option
        ) from None
    if unique and len(set(values)) < len(values):
        twice = next(v for v in values if values.count(v) > 1)
        raise click.BadParameter(f"{text!r} lists {twice} twice", param_hint=option)
    return values


def out_option(help: str = "Run folder.", required: bool = True, default: str | None = None):
    """``--out``, declared once for every command that writes a folder."""
    if default is not None:
        return click.option("--out", type=click.Path(file_okay=False), default=default, show_default=True, help=help)
    return click.option("--out", type=click.Path(file_okay=False), required=required, help=help)


def resume_option(f):
    """``--resume``: continue the run checkpointed in --out."""
    return click.option("--resume", is_flag=True, help="Continue the run checkpointed in --out.")(f)


def format_option(f):
    """``--format``: the figure formats, comma-separated."""
    return click.option("--format", "formats", default="png,pdf", show_default=True,
                        help="Comma-separated figure formats (png, pdf, svg).")(f)  # fmt: skip


def threads_option(f):
    return click.option(
        "--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads [default: all cores]."
    )(f)


def executor_options(f):
    """--executor, --workers, --scheduler: read them with ``ExecutorSpec.from_options``."""
    from amicl.common.parallel import EXECUTORS

    f = click.option(
        "--scheduler",
        default=None,
        help="Address of a running Dask scheduler (tcp://host:8786), e.g. one dask-jobqueue started "
        "[default with --executor dask: a LocalCluster on this machine].",
    )(f)
    f = click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="Worker processes of the process pool or the LocalCluster [default: all cores].",
    )(f)
    return click.option(
        "--executor",
        type=click.Choice(EXECUTORS),
        default=None,
        help="local: in this process; process: a pool of single-threaded processes; dask: a Dask "
        "cluster. Results are the same whichever runs them [default: local, or process with --workers > 1].",
    )(f)


class RunOrArtifact(click.ParamType):
    """A run folder to read, or ``builtin:NAME``: an artifact shipped with the package (checked against
    its manifest's sha256; ``amicl artifacts list``)."""

    name = "RUN"

    def convert(self, value, param, ctx):
        from amicl.common.artifacts import resolve

        try:
            return str(resolve(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


RUN_OR_ARTIFACT = RunOrArtifact()


class RegistryChoice(click.Choice):
    """A choice among a registry's names, read when the command parses (not when it is defined), so a
    plug-in registered after import is offered too."""

    def __init__(self, registry):
        self.registry = registry
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.registry)


def device_option(f):
    return click.option(
        "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", help="auto: CUDA when present."
    )(f)


@contextmanager
def training_run(out, kind: str, resume: bool, marker: str, threads: int | None):
    """The start every training command shares: claim ``out`` (``claim_run_folder``), then set torch's
    threads. Yields the claimed folder; ``folder.resume`` is True when its checkpoint is to be loaded.
    ``--resume`` on a run stopped before its first checkpoint starts it afresh, and says so."""
    from amicl.common.runs import claim_run_folder

    with claim_run_folder(out, kind, resume, marker=marker) as folder:
        if resume and not folder.resume:
            click.echo(f"nothing to resume in {out} (no {marker} yet): starting afresh", err=True)
        set_torch_threads(threads)
        yield folder


def set_torch_threads(n: int | None) -> None:
    """Imports torch: call after every option has been validated."""
    import torch

    torch.set_num_threads(n or os.cpu_count() or 1)

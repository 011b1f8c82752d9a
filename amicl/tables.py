"""Tables generated from committed result files, so that a number in a document cannot drift from its
evidence.

A document marks a generated table with an opening and a closing comment::

    <!-- table streams-savings results/streams/none_V_24seeds ic -->
    | ... generated lines ... |
    <!-- /table -->

The opening names a generator of ``TABLES`` and its arguments (paths relative to the repository root).
``amicl tables`` rewrites every marked block of the documents from the result files; ``amicl tables
--check`` changes nothing and fails (exit 1) when a block differs from what its generator gives, which
the tests run on every document of the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from amicl.common.io import atomic_write_bytes
from amicl.common.registry import Registry

# name -> "module:function"; a generator takes (root, *args) and returns the table's markdown lines
TABLES = Registry(
    "table",
    {
        "amicl-comparison": "amicl.memory.tables:comparison",
        "streams-savings": "transformers_mini.toy.tables:savings",
        "streams-groups": "transformers_mini.toy.tables:groups",
        "streams-interventions": "transformers_mini.toy.tables:interventions",
        "streams-interventions-seeds": "transformers_mini.toy.tables:interventions_over_seeds",
        "streams-patching": "transformers_mini.toy.tables:patching",
        "streams-patching-seeds": "transformers_mini.toy.tables:patching_over_seeds",
        "streams-paired-steps": "transformers_mini.toy.tables:paired_steps",
        "streams-onsets": "transformers_mini.toy.tables:onsets",
        "streams-onset-pairs": "transformers_mini.toy.tables:onset_pairs",
        "streams-probes-at": "transformers_mini.toy.tables:probes_at",
        "streams-final-probes": "transformers_mini.toy.tables:final_probes",
        "phase-grid": "transformers_mini.toy.tables:phase_grid",
        "namm-table": "evolution.table:table_lines",
        "namm-budgets": "evolution.table:budgets_lines",
        "namm-evolutions": "evolution.table:evolutions_lines",
        "namm-variants": "evolution.table:variants_lines",
        "namm-own-budget": "evolution.table:own_budget_lines",
        "namm-margins": "evolution.table:margins_lines",
        "namm-bases": "evolution.table:bases_lines",
        "namm-per-task": "evolution.table:per_task_lines",
        "namm-dev-history": "evolution.table:dev_history_lines",
        "namm-base-accuracy": "evolution.table:base_accuracy_lines",
        "namm-curves": "evolution.table:curves_lines",
        "bench-amicl-retrieval": "amicl.bench_tables:amicl_retrieval",
        "bench-amicl-end-to-end": "amicl.bench_tables:amicl_end_to_end",
        "bench-toy-training": "amicl.bench_tables:toy_training",
        "bench-plain-step": "amicl.bench_tables:plain_step",
        "bench-toy-costs": "amicl.bench_tables:toy_costs",
        "bench-devices": "amicl.bench_tables:devices",
        "include": "amicl.tables:include",
        "results-index": "amicl.tables:results_index",
    },
)
BLOCK = re.compile(r"(<!-- table (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
DOCUMENTS = ("README.md", "docs/*.md", "results/README.md", "results/*/README.md")


def include(root: Path, path: str) -> list[str]:
    """A generated markdown file, verbatim (e.g. a run's table.md)."""
    return (root / path).read_text().rstrip("\n").split("\n")


def results_index(root: Path, folder: str = "results") -> list[str]:
    """Every run folder under ``folder``: its kind, the command that made it (as a user would retype it,
    paths relative to the run's own folder; each distinct one of a run resumed over several sessions) and
    the commit of its last session. In a git checkout only the folders whose config.json git tracks (a
    fresh clone has no others); a folder a process is still writing, or one inside it (a grouped run's
    groups), is left out until it settles."""
    from amicl.common.artifacts import relative_command
    from amicl.common.io import read_json
    from amicl.common.runs import run_kind, writer_pid

    tracked = _tracked(Path(root), folder)
    lines = ["| run folder | kind | command | commit |", "|---|---|---|---|"]
    for cfg in sorted((Path(root) / folder).rglob("config.json")):
        if tracked is not None and cfg not in tracked:  # a run on this disk only, not committed
            continue
        inside = [cfg.parent, *cfg.parent.parents[: len(cfg.parent.relative_to(root).parts) - 1]]
        if any(writer_pid(f) is not None for f in inside):  # written now, or inside a run being written
            continue
        meta = read_json(cfg)
        sessions = meta.get("sessions") or [meta]  # before sessions were recorded: the last command only, as is
        commands = [relative_command(m.get("argv") or []) for m in sessions]
        if "sessions" in meta:  # the whole chain is known: a resume repeats the command that started the run
            commands = [c.removesuffix(" --resume") for c in commands if c]
        distinct = list(dict.fromkeys(c for c in commands if c))
        command = "; then ".join(f"`{c}`" for c in distinct) or "not recorded"
        # one process is one session, though runs of older releases listed it again after every commit made
        # while it trained (its commit was read at each checkpoint); its commit is the one it started from
        keys = [(m["started"], str(m.get("argv"))) if m.get("started") else i for i, m in enumerate(sessions)]
        processes = list(dict.fromkeys(keys))
        if len(processes) > 1:
            command += f" ({len(processes)} sessions)"
        last = sessions[keys.index(processes[-1])]
        commit = str(last.get("git_sha") or meta.get("git_sha") or "")[:10] or "-"
        lines.append(f"| {cfg.parent.relative_to(root).as_posix()} | {run_kind(cfg.parent)} | {command} | {commit} |")
    return lines


def _tracked(root: Path, folder: str) -> set[Path] | None:
    """The files under ``folder`` that git tracks (committed or staged), or None outside a git checkout."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", folder], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return {root / p for p in out.stdout.decode().split("\0") if p}


def render(text: str, root: Path) -> str:
    """``text`` with every marked block regenerated."""

    def one(m: re.Match) -> str:
        name, *args = m.group("spec").split()
        try:
            lines = TABLES[name](root, *args)
        except (OSError, KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"table {m.group('spec')!r}: {exc}") from None
        return m.group(1) + "\n".join(lines) + "\n" + m.group(4)

    return BLOCK.sub(one, text)


def documents(root: Path) -> list[Path]:
    return sorted({p for pattern in DOCUMENTS for p in root.glob(pattern)})


def stale(root: Path) -> list[Path]:
    """The documents whose marked tables differ from what their generators give now."""
    return [p for p in documents(root) if render(p.read_text(), root) != p.read_text()]


@click.command("tables")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if a generated table is out of date.")
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=".", help="The repository root.")
def tables_cmd(check, root):
    """Regenerate the tables marked in README.md, docs/ and results/*/README.md from the result files."""
    root = Path(root)
    if check:
        out = stale(root)
        for p in out:
            click.echo(f"out of date: {p.relative_to(root)} (run amicl tables)", err=True)
        raise SystemExit(1 if out else 0)
    for p in documents(root):
        text = p.read_text()
        new = render(text, root)
        if new != text:
            atomic_write_bytes(p, new.encode())
            click.echo(f"rewrote {p.relative_to(root)}")

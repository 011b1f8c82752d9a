"""``amicl reproduce all``: every experiment of the package from one command, into one report.

The report is composed of sections that the rooms own and register (``amicl.common.sections``): each
states its steps, ordinary ``amicl`` commands writing their own run folders under OUT (the report quotes
the exact command behind every number), at each scale. Finished steps are recorded in
OUT/steps.json and skipped when the command is run again; an unfinished step that checkpoints is
resumed. The report (report.md and a self-contained report.html with the figures embedded) sets each
headline number beside the published one, with its interval, the command and the machine.

- ``quick``: every pipeline at a size that runs in minutes on 2 CPU cores; its numbers show that the
  pipeline works and where it stands at that budget, not the papers' results.
- ``paper``: the papers' protocols (days of CPU; use a GPU). The language model trains on the story
  world unless a user's TinyStories file is given to ``amicl lm train --corpus``.
"""

from __future__ import annotations

import base64
import functools
import html
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import click

from amicl.common.cli import out_option
from amicl.common.io import atomic_write_bytes, read_csv, read_json, run_metadata, write_json
from amicl.common.sections import SECTIONS, Step, md_file
from amicl.common.validate import RunStopped

SCALES = ("quick", "paper")


def plan(scale: str) -> list[Step]:
    """The steps of ``scale``, in order."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    return build_plan({name: SECTIONS[name].sizes[scale] for name in SECTIONS})


def build_plan(sizes: dict) -> list[Step]:
    """Every step: first the live check of the shipped toy models, then each registered section's steps at
    its size in ``sizes`` (section name -> the size the section reads). A section's steps are named under
    its own name (its folder in OUT)."""
    steps = _artifact_steps()
    for name in SECTIONS:
        own = SECTIONS[name].steps(sizes[name])
        stray = [s.name for s in own if s.name != name and not s.name.startswith(name + "/")]
        if stray:
            raise ValueError(f"section {name!r} names steps outside its folder: {', '.join(stray)}")
        steps += own
    return steps


def _artifact_steps() -> list[Step]:
    """The live check of every shipped model: ``transformer evaluate`` of each toy (do its weights still give
    its recorded numbers?), and each artifact's recorded ``check`` command (the evolved NAMM on its base)."""
    from amicl.common.artifacts import manifest

    steps = []
    for name, entry in manifest().items():
        if entry.get("kind") == "streams":
            steps.append(Step(f"artifacts/{name}", ("transformer", "evaluate", f"builtin:{name}", "--out", "{dir}")))
        elif "check" in entry:
            steps.append(Step(f"artifacts/{name}", (*entry["check"]["args"], "--out", "{dir}")))
    return steps


def run_steps(root: Path, scale: str, echo=print) -> list[dict]:
    """Run every unfinished step of ``scale``, each as its own ``amicl`` process (in one process, numba's
    and torch's thread pools fight: a 13-second training step list took 8 minutes); returns the step
    records."""
    done_path = root / "steps.json"
    done = read_json(done_path)["steps"] if done_path.exists() else []
    finished = {d["name"] for d in done}
    for step in plan(scale):
        if step.name in finished:
            continue
        args = step.args(root)
        if step.resume and (root / step.name / step.resume).exists():
            args.append("--resume")
        echo(f"[{step.name}] amicl {' '.join(args)}")
        cmd = [sys.executable, "-c", "from amicl.cli import main; main()", *args]
        rc = subprocess.run(cmd, preexec_fn=functools.partial(_die_with_parent, os.getpid())).returncode
        if rc:
            raise RunStopped(f"step {step.name} failed (exit {rc}, its message above); run the command again to resume")
        done.append({"name": step.name, "command": "amicl " + " ".join(step.args(Path("OUT")))})
        write_json(done_path, {"scale": scale, "steps": done})
    return done


def _die_with_parent(parent: int) -> None:
    """In a step's process before it starts (Linux): end it when ``reproduce all`` itself is killed, so a
    kill -9 of the parent leaves no orphan holding the step's folder when the command is run again."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took hold
            os._exit(1)


# -- the report --------------------------------------------------------------------------------------


def _commands(steps: list[dict], prefix: str) -> str:
    return "\n".join(f"    {s['command']}" for s in steps if s["name"] == prefix or s["name"].startswith(prefix + "/"))


REPO = Path(__file__).resolve().parents[1]  # the checkout, whose results/ holds the committed runs


def committed_section(repo: Path = REPO) -> list[str]:
    """Part A: every headline regenerated from the committed result files, labelled with its source."""
    from amicl.tables import TABLES

    if not (repo / "results").is_dir():
        return ["The committed results live in the repository's results/ folder, which this installation lacks; "
                "run from a clone to see them here."]  # fmt: skip
    sha = run_metadata().get("git_sha") or "?"
    parts = [f"Regenerated now from the result files committed in the repository (commit {sha[:10]}), by the "
             "same generators as the tables of its documents (`amicl tables`):"]  # fmt: skip
    for c in (c for name in SECTIONS for c in SECTIONS[name].committed):
        try:
            table = "\n".join(TABLES[c.generator](repo, *c.args))
        except (OSError, KeyError, ValueError) as exc:
            table = f"(not available: {type(exc).__name__}: {exc})"
        parts += [f"## {c.heading}", c.text, f"Source: `{c.args[0]}`.", table]
    return [p for p in parts if p]


def artifact_section(root: Path, steps: list[dict]) -> list[str]:
    """Part B: the shipped models evaluated now, against the numbers recorded when they were made."""
    from amicl.common.artifacts import manifest, pending

    parts = ["Each shipped model (`amicl artifacts list`) evaluated now; 'yes' means it gives exactly the numbers "
             "recorded when it was made (the toys: on their own test sets; the NAMM: on fresh prompts)."]  # fmt: skip
    entries = manifest()
    for folder in sorted((root / "artifacts").glob("*")) if (root / "artifacts").is_dir() else []:
        check = entries.get(folder.name, {}).get("check")
        parts += [f"## builtin:{folder.name}", check_table(folder, check) if check else md_file(folder / "eval.md")]
    parts += [f"builtin:{n} is not shipped in this release: {e['why']}." for n, e in pending().items()]
    return parts + [_commands(steps, "artifacts")]


def check_table(folder: Path, check: dict) -> str:
    """An artifact's recorded check against the eval.csv its command wrote now, row by row."""
    if not (folder / "eval.csv").exists():
        return "(missing: eval.csv)"
    now = {r["task"]: r for r in read_csv(folder / "eval.csv")}
    head = "| task | score (full cache) now | recorded | cache kept now | recorded | same |"
    lines = [check.get("what", ""), "", head, "|---|---|---|---|---|---|"]
    for e in check["expect"]:
        r = now.get(e["task"])
        if r is None:
            lines.append(f"| {e['task']} | missing | {e['score']} ({e['full_score']}) | | {e['cache_fraction']} | no |")
            continue
        keys = ("score", "full_score", "normalised", "cache_fraction")
        same = all(abs(float(r[k]) - float(e[k])) <= 1e-9 for k in keys)
        cells = [f"{float(x['score']):.4f} ({float(x['full_score']):.4f})" for x in (r, e)]
        cells += [f"{float(x['cache_fraction']):.4f}" for x in (r, e)]
        lines.append(f"| {e['task']} | {' | '.join(cells)} | {'yes' if same else 'no'} |")
    return "\n".join(lines)


def build_report(root: Path, scale: str, steps: list[dict]) -> str:
    """report.md's text."""
    meta = run_metadata()
    parts = [
        f"# amicl: what this package reproduces ({scale} scale)",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores, torch {meta['versions'].get('torch', '?')}; "
        f"commit {meta.get('git_sha', '?')}; report written by the run started {meta.get('started', '?')}.",
        "The quick scale runs every pipeline at a size that fits minutes on 2 cores: its numbers show where each "
        "pipeline stands at that budget, not the papers' results (those need the paper scale)."
        if scale == "quick"
        else "The paper scale follows the papers' protocols.",
        "# Part A. The committed headlines",
        *committed_section(),
        "# Part B. The shipped models, checked now",
        *artifact_section(root, steps),
        f"# Part C. Every pipeline re-run now ({scale} scale)",
    ]
    for i, name in enumerate(SECTIONS, 1):
        section = SECTIONS[name]
        parts += [f"## {i}. {section.title}", *section.body(root), _commands(steps, name)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _figures(root: Path) -> list[Path]:
    folders = [f for name in SECTIONS for f in SECTIONS[name].figures]
    return [p for f in folders for p in sorted((root / f).glob("*.png"))]


def markdown_to_html(md: str, title: str, images: list[Path]) -> str:
    """A self-contained page: the markdown subset the report uses (headings, tables, indented code,
    paragraphs) and every figure embedded as base64 PNG."""
    out, table, code = [], [], []

    def flush():
        if table:
            rows = [
                [html.escape(c.strip()) for c in r.strip().strip("|").split("|")]
                for r in table
                if not re.match(r"^\|[-| ]+\|$", r.strip())
            ]
            out.append(
                "<table><tr>"
                + "".join(f"<th>{c}</th>" for c in rows[0])
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[1:])
                + "</table>"
            )
            table.clear()
        if code:
            out.append("<pre>" + html.escape("\n".join(code)) + "</pre>")
            code.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        if line.startswith("    "):
            code.append(line[4:])
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    for img in images:
        data = base64.b64encode(img.read_bytes()).decode()
        caption = html.escape(f"{img.parent.parent.name}/{img.name}")
        img_tag = f'<img alt="{caption}" src="data:image/png;base64,{data}">'
        out.append(f"<figure>{img_tag}<figcaption>{caption}</figcaption></figure>")
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{''.join(out)}</body></html>\n"


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}"
    "pre{background:#f4f4f4;padding:6px;white-space:pre-wrap}"
)


def reproduce_all(root: Path, scale: str, echo=print) -> Path:
    """Run (or finish) every step, then write report.md and report.html; returns report.md's path."""
    steps = run_steps(root, scale, echo)
    md = build_report(root, scale, steps)
    atomic_write_bytes(root / "report.md", md.encode())
    atomic_write_bytes(root / "report.html", markdown_to_html(md, f"amicl report ({scale})", _figures(root)).encode())
    return root / "report.md"


@click.command("all")
@click.option(
    "--scale",
    type=click.Choice(SCALES),
    default="quick",
    show_default=True,
    help="quick: every pipeline in minutes on 2 cores; paper: the papers' protocols (days of CPU).",
)
@out_option("Results root.", default="out/all")
def reproduce_all_cmd(scale, out):
    """Run every experiment of the package (AMICL, residual streams and their probes, theory vs network,
    NAMM against the training-free policies) and write report.md and a self-contained report.html.
    Run it again to finish an interrupted run: finished steps are skipped."""
    from amicl.common.runs import claim_run_folder

    root = Path(out)
    started = (root / "config.json").exists()
    with claim_run_folder(root, "report", resume=started):
        if started and read_json(root / "config.json")["scale"] != scale:
            raise click.UsageError(f"{root} holds a {read_json(root / 'config.json')['scale']} run; use another --out")
        if not started:
            write_json(root / "config.json", {"kind": "report", "scale": scale, **run_metadata()})
        path = reproduce_all(root, scale, echo=lambda m: click.echo(m, err=True))
    click.echo(f"{path} and {path.with_suffix('.html')}")

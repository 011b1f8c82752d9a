"""``amicl reproduce all``: every experiment of the package from one command, into one report.

A scale is a list of steps, each an ordinary ``amicl`` command writing its own run folder under OUT
(the report quotes the exact command behind every number). Finished steps are recorded in
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
from dataclasses import dataclass
from pathlib import Path

import click

from amicl.common.cli import out_option
from amicl.common.io import atomic_write_bytes, read_csv, read_json, run_metadata, write_json
from amicl.common.validate import RunStopped

SCALES = ("quick", "paper")
POLICIES = ("h2o", "tova", "snapkv", "pyramidkv", "keydiff", "recency", "l2", "random")


@dataclass(frozen=True)
class Step:
    """One command of a scale: ``argv`` with {root} (OUT) and {dir} (this step's folder) filled in;
    ``resume``: the file whose presence means an interrupted run to continue with --resume."""

    name: str
    argv: tuple[str, ...]
    resume: str | None = None

    def args(self, root: Path) -> list[str]:
        return [a.format(root=root, dir=root / self.name) for a in self.argv]


def _namm_steps(base_args, evolve_args, eval_args) -> list[Step]:
    steps = [
        Step("namm/base", ("namm", "train-base", *base_args, "--out", "{dir}"), "base.pt"),
        Step(
            "namm/evolve",
            ("namm", "evolve", "--base", "{root}/namm/base", *evolve_args, "--out", "{dir}"),
            "evolution.pkl",
        ),
        Step(
            "namm/eval/namm",
            (
                "namm",
                "eval",
                "--base",
                "{root}/namm/base",
                "--policy",
                "namm",
                "--namm",
                "{root}/namm/evolve",
                *eval_args,
                "--out",
                "{dir}",
            ),
        ),
    ]
    for p in POLICIES:
        args = ("--base", "{root}/namm/base", "--policy", p, "--match", "{root}/namm/eval/namm", *eval_args)
        steps.append(Step(f"namm/eval/match_{p}", ("namm", "eval", *args, "--out", "{dir}")))
    evals = ["{root}/namm/eval/namm", *(f"{{root}}/namm/eval/match_{p}" for p in POLICIES)]
    steps.append(Step("namm/table", ("namm", "table", *evals, "--out", "{dir}")))
    steps.append(
        Step("namm/figures", ("figures", "namm", "{root}/namm/evolve", *evals, "--out", "{dir}", "--format", "png"))
    )
    return steps


SIZES = {  # per scale, the size options of each pipeline
    "quick": {
        "trials": ("--trials", "1000"),
        "streams": ("--streams", "none,V", "--seeds", "2", "--steps", "1500", "--eval-every", "250")
        + ("--eval-size", "500", "--checkpoint-every", "500", "--probe-size", "128"),
        "phase": (
            "--grid-B",
            "1,4",
            "--grid-epsilon",
            "0.1,1.0",
            "--seeds",
            "1",
            "--steps",
            "300",
            "--eval-every",
            "100",
        )
        + ("--eval-size", "500", "--checkpoint-every", "100"),
        "base": ("--layers", "2", "--d-model", "64", "--steps", "400", "--batch", "8", "--min-context", "128")
        + ("--max-context", "256", "--curriculum", "200", "--eval-every", "200", "--tasks", "kv_retrieval,needle"),
        "evolve": ("--stages", "kv_retrieval;kv_retrieval,needle", "--generations", "2,2", "--popsize", "8")
        + ("--prompts", "4", "--dev-prompts", "16", "--dev-every", "2", "--context", "256"),
        "eval": ("--tasks", "kv_retrieval,needle", "--prompts", "32", "--context", "256", "--metric", "prob"),
        "lm": ("--stories", "5000", "--steps", "300", "--batch", "16", "--eval-every", "100"),
        "lm_seeds": 1,
        "ioi": ("--prompts", "400"),
    },
    "paper": {
        "trials": ("--trials", "1000"),
        "streams": ("--streams", "none,V,K,Q", "--seeds", "8", "--stop-when-reached"),
        "phase": ("--seeds", "2", "--steps", "20000"),
        "base": ("--steps", "6250"),
        "evolve": (),
        "eval": ("--tasks", "kv_retrieval,variable_tracking,icl_classification,needle", "--prompts", "128"),
        "lm": ("--model", "paper-8m", "--tokenizer", "gpt2", "--batch", "64", "--steps", "99400"),
        "lm_seeds": 3,
        "ioi": ("--prompts", "1000"),
    },
}


def plan(scale: str) -> list[Step]:
    """The steps of ``scale``, in order."""
    if scale not in SIZES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    return build_plan(SIZES[scale])


def build_plan(size: dict) -> list[Step]:
    """Every step, with the size options ``size`` (keys as in ``SIZES``): first the live check of the
    shipped toy models, then the pipelines."""
    return [
        *_artifact_steps(),
        Step("amicl", ("reproduce", "amicl", "--out", "{root}", *size["trials"])),
        Step("streams/run", ("transformer", "compare", *size["streams"], "--out", "{dir}"), "checkpoint.pt"),
        Step("streams/figures", ("figures", "streams", "{root}/streams/run", "--out", "{dir}", "--format", "png")),
        Step("theory/phase", ("transformer", "phase", *size["phase"], "--out", "{dir}"), "config.json"),
        Step("theory/figures", ("figures", "phase", "{root}/theory/phase", "--out", "{dir}", "--format", "png")),
        *_namm_steps(size["base"], size["evolve"], size["eval"]),
        *_lm_steps(size["lm"], size["lm_seeds"], size["ioi"]),
    ]


def _artifact_steps() -> list[Step]:
    """``transformer evaluate`` of every shipped toy model: do its weights still give its recorded numbers?"""
    from amicl.common.artifacts import manifest

    names = [n for n, e in manifest().items() if e.get("kind") == "streams"]
    return [Step(f"artifacts/{n}", ("transformer", "evaluate", f"builtin:{n}", "--out", "{dir}")) for n in names]


def _lm_steps(train_args, seeds: int, ioi_args) -> list[Step]:
    runs = [(arm, s, f"lm/{arm}_seed{s}") for s in range(seeds) for arm in ("none", "V")]
    steps = [
        Step(name, ("lm", "train", "--stream", arm, "--seed", str(s), *train_args, "--out", "{dir}"), "lm.pt")
        for arm, s, name in runs
    ]
    folders = [f"{{root}}/{name}" for _, _, name in runs]
    steps.append(Step("lm/ioi", ("lm", "ioi", *folders, *ioi_args, "--out", "{dir}")))
    figures = ("figures", "lm", *folders, "--ioi", "{root}/lm/ioi", "--out", "{dir}", "--format", "png")
    steps.append(Step("lm/figures", figures))
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


def _md_file(path: Path) -> str:
    return path.read_text().strip() if path.exists() else f"(missing: {path.name})"


def _commands(steps: list[dict], prefix: str) -> str:
    return "\n".join(f"    {s['command']}" for s in steps if s["name"].startswith(prefix))


def _streams_headline(run: Path) -> str:
    rows = [r for r in read_csv(run / "compare.csv") if r["test_set"] == "ic"] if (run / "compare.csv").exists() else []
    lines = [
        "| arm | reached 0.95 | median steps [95% CI] | fewer steps than none: median per-seed saving [95% CI] "
        "| published (V vs none) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        fewer = "-"
        if r.get("median_saving_vs_none"):
            fewer = (
                f"{_pct(r['median_saving_vs_none'])} [{_pct(r['median_saving_low'])}, {_pct(r['median_saving_high'])}]"
            )
        pub = "24% fewer steps (AMICL paper)" if r["arm"] == "V" else "-"
        median = f"{float(r['median_steps']):.0f} [{float(r['median_ci_low']):.0f}, {float(r['median_ci_high']):.0f}]"
        if median.startswith("inf"):
            median = "not reached (median run censored)"
        lines.append(f"| {r['arm']} | {r['n_reached']}/{r['n_seeds']} | {median} | {fewer} | {pub} |")
    return "\n".join(lines)


def _pct(v) -> str:
    v = float(v)
    return "undefined" if v != v or abs(v) == float("inf") else f"{v:+.1%}"


REPO = Path(__file__).resolve().parents[1]  # the checkout, whose results/ holds the committed runs
COMMITTED = (  # (heading, what it shows, generator and arguments of amicl.tables)
    ("AMICL notebook", "Each published accuracy beside ours (1000 trials, 95% Clopper-Pearson interval).",
     ("amicl-comparison", "results/amicl/comparison.csv")),
    ("Residual values stream, 24 consecutive seeds (0-23)", "Steps to 0.95 on ic; paired savings over none by the "
     "package's three estimators (primary: median of per-seed savings); the paper reports about 24%.",
     ("streams-savings", "results/streams/none_V_24seeds", "ic")),
    ("The paper's open questions (seeds 0-7)", "V without its gradient path (detach), at half weight, and with "
     "a learned weight, paired with none and V on the same seeds.",
     ("streams-savings", "results/streams/ablation_seeds0_7", "ic")),
    ("K and Q on seeds 16-23, probed", "", ("streams-savings", "results/streams/all4_seeds16_23", "ic")),
    ("Theory vs network over burstiness and noise (20,000-step budget)", "",
     ("include", "results/theory/phase/phase.md")),
    ("NAMM: every training-free policy at 10/25/50% of the cache (frozen base, 128 prompts per task)",
     "Normalised score with bootstrap intervals. No NAMM is ahead of KeyDiff; the NAMM that meets the trained-task "
     "target is the best of four evolutions (docs/namm.md).", ("include", "results/namm/sweeps/table_frozen/table.md")),
    ("Language model and IOI, story world 1 (3 seeds per arm; superseded)", "This regime cannot test the paper's "
     "claim: world 1 teaches the IOI structure itself and most prompt tokens are untrained (docs/lm.md).",
     ("include", "results/lm/world1/ioi/ioi.md")),
)  # fmt: skip


def committed_section(repo: Path = REPO) -> list[str]:
    """Part A: every headline regenerated from the committed result files, labelled with its source."""
    from amicl.tables import TABLES

    if not (repo / "results").is_dir():
        return ["The committed results live in the repository's results/ folder, which this installation lacks; "
                "run from a clone to see them here."]  # fmt: skip
    sha = run_metadata().get("git_sha") or "?"
    parts = [f"Regenerated now from the result files committed in the repository (commit {sha[:10]}), by the "
             "same generators as the tables of its documents (`amicl tables`):"]  # fmt: skip
    for heading, text, (name, *args) in COMMITTED:
        try:
            table = "\n".join(TABLES[name](repo, *args))
        except (OSError, KeyError, ValueError) as exc:
            table = f"(not available: {type(exc).__name__}: {exc})"
        parts += [f"## {heading}", text, f"Source: `{args[0]}`.", table]
    return [p for p in parts if p]


def artifact_section(root: Path, steps: list[dict]) -> list[str]:
    """Part B: the shipped models evaluated now, against the numbers their histories recorded."""
    from amicl.common.artifacts import pending

    parts = ["Each shipped toy model (`amicl artifacts list`) evaluated now on its own test sets; 'yes' means the "
             "weights give exactly the numbers recorded when it was trained."]  # fmt: skip
    for folder in sorted((root / "artifacts").glob("*")) if (root / "artifacts").is_dir() else []:
        parts += [f"## builtin:{folder.name}", _md_file(folder / "eval.md")]
    parts += [f"builtin:{n} is not shipped in this release: {e['why']}." for n, e in pending().items()]
    return parts + [_commands(steps, "artifacts")]


def build_report(root: Path, scale: str, steps: list[dict]) -> str:
    """report.md's text."""
    meta = run_metadata()
    streams = root / "streams" / "run"
    saved = read_json(streams / "config.json") if (streams / "config.json").exists() else {}
    cfg = saved.get("run", {}).get("train", {})
    parts = [
        f"# amicl: what this package reproduces ({scale} scale)",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores, torch {meta['versions'].get('torch', '?')} "
        f"(training device: {saved.get('device', '?')}); commit {meta.get('git_sha', '?')}; "
        f"report written by the run started {meta.get('started', '?')}.",
        "The quick scale runs every pipeline at a size that fits minutes on 2 cores: its numbers show where each "
        "pipeline stands at that budget, not the papers' results (those need the paper scale)."
        if scale == "quick"
        else "The paper scale follows the papers' protocols.",
        "# Part A. The committed headlines",
        *committed_section(),
        "# Part B. The shipped models, checked now",
        *artifact_section(root, steps),
        f"# Part C. Every pipeline re-run now ({scale} scale)",
        "## 1. Associative memory for in-context learning (AMICL notebook)",
        "Each published accuracy beside the measured one (95% binomial interval):",
        _md_file(root / "amicl" / "comparison.md"),
        _commands(steps, "amicl"),
        "## 2. The residual values stream (toy Transformer)",
        f"Steps until ic accuracy first reaches {cfg.get('threshold', 0.95)} (a run that never does is censored at "
        f"its last step, {cfg.get('steps', '?')}):",
        _streams_headline(streams),
        "The full comparison, the survival view, the mechanisms and the probes:",
        _md_file(streams / "compare.md"),
        _commands(steps, "streams"),
        "## 3. Theory vs network over task parameters",
        _md_file(root / "theory" / "phase" / "phase.md"),
        _commands(steps, "theory"),
        "## 4. NAMM: evolved KV-cache memory against the training-free policies",
        "Published (NAMM paper): NAMM above the full cache on LongBench with about 25% of it, ahead of H2O and L2. "
        "Here: scores normalised by the full cache on the same prompts, every baseline given NAMM's per-layer cache; "
        "bootstrap 95% intervals:",
        _md_file(root / "namm" / "table" / "table.md"),
        _commands(steps, "namm"),
        "## 5. Language model and IOI",
        "Published (AMICL paper, 8M GPT on TinyStories, 3 models per arm): P(IO) about 7% (baseline) and 41% "
        "(V-pass). Here, on the package's story world and its IOI frames:",
        _md_file(root / "lm" / "ioi" / "ioi.md"),
        _commands(steps, "lm"),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _figures(root: Path) -> list[Path]:
    names = ["amicl/figures", "streams/figures", "theory/figures", "namm/figures", "lm/figures"]
    return [p for n in names for p in sorted((root / n).glob("*.png"))]


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

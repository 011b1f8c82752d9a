"""``amicl reproduce amicl``: every AMICL notebook number and figure, plus the figures it lacks.

Each experiment is a sweep saved in its own folder; a folder that already holds config.json is
complete and is skipped, so an interrupted reproduction resumes where it stopped. The comparison
with the published values (notebook outputs and figures, ``docs/reference.md`` sec. 1)
is written to comparison.csv / comparison.md and printed.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from amicl.common.cli import executor_options, out_option
from amicl.common.io import atomic_write_bytes, write_csv

# name -> (data kind, memory overrides, data overrides, grid); every point scored on --trials trials
EXPERIMENTS = {
    "a_K512": ("episodes", {}, {"K": 512}, {"a": [1.0, 1.25, 1.5, 1.75, 2.0]}),
    "a1_D1000": ("episodes", {"a": 1.0}, {"D": 1000}, {}),
    "a1_D1000_K1024": ("episodes", {"a": 1.0}, {"D": 1000, "K": 1024}, {}),
    "a1_K1024": ("episodes", {"a": 1.0}, {"K": 1024}, {}),
    "a1_T100": ("episodes", {"a": 1.0}, {"T": 100}, {}),
    "a_similarity": ("episodes", {}, {"K": 50}, {"similarity": ["dot", "pearson"], "a": list(np.linspace(0, 2, 101))}),
    "T": ("episodes", {}, {"K": 50}, {"T": [10, 20, 40, 100, 500, 1000]}),
    "D": ("episodes", {}, {"K": 50}, {"D": [10, 20, 40, 100, 500, 1000]}),
    # Beyond the notebook: noise on Reddy's 1/sqrt(D) scale so that epsilon matters.
    "phase_a_epsilon": (
        "episodes",
        {},
        {"K": 50, "noise": "1/sqrt(D)"},
        {"a": list(np.linspace(0, 3, 31)), "epsilon": list(np.linspace(0, 2, 21))},
    ),
    "beta_similarity": (
        "episodes",
        {"separation": "softmax"},
        {"K": 50},
        {"similarity": ["dot", "pearson", "euclidean"], "beta": list(np.logspace(-1, 3, 25))},
    ),
    "beta_iterations": (
        "episodes",
        {"separation": "softmax"},
        {"K": 50},
        {"max_iter": [0, 1, 10], "beta": list(np.logspace(-1, 3, 25))},
    ),
    # The memory on the Transformer's own test sequences (Reddy's generator, AMICL toy settings).
    "reddy_test_sets": ("reddy", {}, {}, {"test_set": ["test", "ic", "ic2", "iw"], "a": list(np.linspace(0, 3, 31))}),
}

# (experiment, point, published value, what it is, source); "notebook output" values are k/1000
PUBLISHED = [
    ("a_K512", {"a": 1.0}, 0.325, "K=512, D=100, T=20, a=1", "notebook output 325/1000"),
    ("a_K512", {"a": 1.25}, 0.907, "K=512, a=1.25", "notebook output 907/1000"),
    ("a_K512", {"a": 1.5}, 0.994, "K=512, a=1.5", "notebook output 994/1000"),
    ("a_K512", {"a": 1.75}, 1.0, "K=512, a=1.75", "notebook output 1000/1000"),
    ("a_K512", {"a": 2.0}, 1.0, "K=512, a=2", "notebook output 1000/1000"),
    ("a1_D1000", {}, 0.315, "a=1, D=1000", "notebook output 315/1000"),
    ("a1_D1000_K1024", {}, 0.321, "a=1, D=1000, K=1024", "notebook output 321/1000"),
    ("a1_K1024", {}, 0.342, "a=1, K=1024", "notebook output 342/1000"),
    ("a1_T100", {}, 0.315, "a=1, T=100", "notebook output 315/1000"),
    ("a_similarity", {"similarity": "dot", "a": 0.5}, 0.0, "K=50, dot, a=0.5", "notebook figure (~0 below a~0.75)"),
    ("a_similarity", {"similarity": "dot", "a": 2.0}, 1.0, "K=50, dot, a=2", "notebook figure (~1 above a~1.5)"),
    (
        "a_similarity",
        {"similarity": "pearson", "a": 2.0},
        0.87,
        "K=50, Pearson, a=2",
        "notebook figure (plateau ~0.87)",
    ),
    *[("T", {"T": t}, 1.0, f"a=2, K=50, T={t}", "notebook figure") for t in (10, 20, 40, 100, 500, 1000)],
    *[
        ("D", {"D": d}, v, f"a=2, K=50, D={d}", "notebook figure (read off)")
        for d, v in ((10, 0.73), (20, 0.95), (40, 0.99), (100, 1.0), (500, 1.0), (1000, 1.0))
    ],
]


def check_experiments(trials: int, where) -> None:
    """Refuse, before any folder is written, a trial count whose results cannot fit in memory."""
    from amicl.memory.hopfield import MemoryConfig
    from amicl.memory.sweep import DATA_KINDS, RunSpec, check_memory

    for kind, mem, data, grid in EXPERIMENTS.values():
        check_memory(RunSpec(MemoryConfig(**mem), DATA_KINDS[kind](**data), "ic", trials), grid, where.pool_size)


def run_experiments(out: Path, trials: int, seed: int, where=None, only=None, echo=click.echo) -> None:
    from amicl.common.parallel import ExecutorSpec
    from amicl.memory.hopfield import MemoryConfig
    from amicl.memory.sweep import DATA_KINDS, RunSpec, sweep

    where = where or ExecutorSpec()
    check_experiments(trials, where)
    with where.open() as ex:
        for name, (kind, mem, data, grid) in EXPERIMENTS.items():
            folder = out / name
            if (only and name not in only) or (folder / "config.json").exists():
                continue
            spec = RunSpec(MemoryConfig(**mem), DATA_KINDS[kind](**data), "ic", trials)
            n = int(np.prod([len(v) for v in grid.values()])) if grid else 1
            echo(f"[{name}] {n} point(s) x {trials} trials", err=True)
            sweep(spec, grid, seed=seed, executor=ex).save(folder)


def comparison(out: Path) -> list[dict]:
    """Rows comparing each published value with the measured accuracy and its 95% interval."""
    from amicl.memory.sweep import SweepResult

    rows = []
    cache = {}
    for name, point, published, what, source in PUBLISHED:
        if not (out / name / "config.json").exists():
            continue
        res = cache.setdefault(name, SweepResult.load(out / name))
        match = [r for r in res.rows() if all(_same(r[k], v) for k, v in point.items())]
        if len(match) != 1:
            raise ValueError(f"{name}: no unique grid point {point}")
        r = match[0]
        p_two = _fisher_p(published, r) if source.startswith("notebook output") else None
        rows.append(
            {
                "setting": what,
                "published": published,
                "measured": round(r["accuracy"], 4),
                "ci_low": round(r["ci_low"], 4),
                "ci_high": round(r["ci_high"], 4),
                "published_in_ci": bool(r["ci_low"] <= published <= r["ci_high"]),
                "p_two_sample": None if p_two is None else round(p_two, 3),
                "trials": r["trials"],
                "source": source,
                "experiment": name,
            }
        )
    return rows


def _fisher_p(published: float, row: dict, n_published: int = 1000) -> float:
    """Fisher's exact test of the notebook's k/1000 against ours: both are binomial draws."""
    from scipy.stats import fisher_exact

    k_pub = round(published * n_published)
    table = [[k_pub, n_published - k_pub], [row["correct"], row["trials"] - row["correct"]]]
    return float(fisher_exact(table)[1])


def _same(a, b) -> bool:
    return np.isclose(float(a), float(b)) if isinstance(b, (int, float)) else a == b


def markdown(rows: list[dict]) -> str:
    lines = [
        "| setting | published | measured | 95% CI | published in CI | two-sample p | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = "-" if r["p_two_sample"] is None else f"{r['p_two_sample']:.2f}"
        lines.append(
            f"| {r['setting']} | {r['published']:.3f} | {r['measured']:.3f} | "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {'yes' if r['published_in_ci'] else 'no'} | "
            f"{p} | {r['source']} |"
        )
    return "\n".join(lines) + "\n"


@click.command("amicl")
@out_option("Results root; AMICL goes to OUT/amicl.", default="out")
@click.option("--trials", type=click.IntRange(min=1), default=1000, help="Trials per grid point.")
@click.option("--seed", type=click.IntRange(min=0), default=0)
@executor_options
@click.option("--only", multiple=True, type=click.Choice(list(EXPERIMENTS)), help="Run only these experiments.")
def reproduce_amicl(out, trials, seed, executor, workers, scheduler, only):
    """Reproduce the AMICL notebook's numbers and figures (and the extra sweeps) into OUT/amicl."""
    from amicl.common.io import run_metadata, write_json
    from amicl.common.parallel import ExecutorSpec
    from amicl.common.runs import claim_run_folder

    where = ExecutorSpec.from_options(executor, workers, scheduler)
    check_experiments(trials, where)
    root = Path(out) / "amicl"
    with claim_run_folder(root, "amicl-reproduction", resume=(root / "config.json").exists()):
        if (root / "config.json").exists():  # resuming: the finished sweeps must have the same trials and seed
            from amicl.common.io import read_json

            old = read_json(root / "config.json")
            if (old.get("trials"), old.get("seed")) != (trials, seed):
                raise click.UsageError(
                    f"{root} was started with --trials {old.get('trials')} --seed {old.get('seed')}; "
                    "give the same to resume, or another --out"
                )
        else:  # first: marks the folder as this kind of run
            write_json(
                root / "config.json", {"kind": "amicl-reproduction", "trials": trials, "seed": seed, **run_metadata()}
            )
        _reproduce(root, trials, seed, where, only)


def _reproduce(root: Path, trials: int, seed: int, where, only) -> None:
    from amicl.memory.figures import draw_all, save_matrices

    run_experiments(root, trials, seed, where, only)
    if not (root / "matrices" / "config.json").exists():
        save_matrices(root / "matrices", seed=seed)
    rows = comparison(root)
    write_csv(root / "comparison.csv", rows)
    md = markdown(rows)
    atomic_write_bytes(root / "comparison.md", md.encode())
    draw_all(root, root / "figures")
    click.echo(md)
    click.echo(f"results, comparison.md and figures/ in {root}", err=True)

"""AMICL figures, drawn from saved result folders only (never by re-running).

A sweep folder (config.json + results.npz) becomes one figure chosen from its grid: one parameter ->
accuracy vs it with a 95% band; a numeric parameter plus a short or categorical one -> one line per
value of the short one; two long numeric parameters -> a phase diagram. A matrices folder becomes the
notebook's T x T score-matrix panel (raw, row-softmax, row-argmax for every similarity).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from amicl.common.cli import format_option, out_option
from amicl.common.io import read_json, run_metadata, save_figure, write_json, write_npz
from amicl.common.runs import run_kind
from amicl.memory.hopfield import MemoryConfig
from amicl.task import EpisodeConfig

SIMS = ("dot", "pearson", "euclidean", "manhattan")


def save_matrices(
    out,
    a: float = MemoryConfig.a,
    episode: EpisodeConfig = EpisodeConfig(),
    beta: float = MemoryConfig.beta,
    seed: int = 0,
):
    """Score matrices sim(m_i, m_j) of one notebook episode for every similarity -> matrices.npz."""
    from amicl.memory.hopfield import score_matrix
    from amicl.task import sample_episodes

    cfg = episode
    ep = sample_episodes(cfg, 1, np.random.default_rng(seed))
    mats = {s: score_matrix(ep.tokens[0], a, s) for s in SIMS}
    write_npz(Path(out) / "matrices.npz", token_labels=ep.token_labels[0], **mats)
    write_json(
        Path(out) / "config.json",
        {
            "kind": "memory-matrices",
            "matrices": {"a": a, "beta": beta, "seed": seed, **cfg.to_dict()},
            **run_metadata(),
        },
    )


def _label(name: str) -> str:
    return {
        "a": "binding weight a",
        "beta": r"inverse temperature $\beta$",
        "epsilon": r"noise $\varepsilon$",
        "D": "token dimension D",
        "T": "sequence length T",
        "K": "classes K",
        "B": "burstiness B",
    }.get(name, name)


def plot_sweep(folder: Path):
    """One figure for a sweep folder; returns the matplotlib figure (None if the grid is empty)."""
    import matplotlib.pyplot as plt

    from amicl.memory.sweep import SweepResult

    res = SweepResult.load(folder)
    rows = res.rows()
    grid = res.grid
    names = list(grid)
    if not names:
        return None
    acc = np.array([r["accuracy"] for r in rows])
    lo = np.array([r["ci_low"] for r in rows])
    hi = np.array([r["ci_high"] for r in rows])
    shape = tuple(len(v) for v in grid.values())
    numeric = [all(isinstance(v, (int, float)) for v in grid[n]) for n in names]

    if len(names) == 2 and all(numeric) and min(shape) > 6:  # phase diagram
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        x, y = np.asarray(grid[names[1]], float), np.asarray(grid[names[0]], float)
        im = ax.pcolormesh(x, y, acc.reshape(shape), shading="nearest", vmin=0, vmax=1, cmap="viridis")
        ax.contour(x, y, acc.reshape(shape), levels=[0.5, 0.95], colors="w", linewidths=0.8)
        ax.text(0.98, 0.02, "white: accuracy 0.5, 0.95", color="w", fontsize=7, ha="right", transform=ax.transAxes)
        fig.colorbar(im, ax=ax, label="accuracy")
        ax.set_xlabel(_label(names[1]))
        ax.set_ylabel(_label(names[0]))
    else:
        if len(names) > 2:
            raise ValueError(f"{folder}: cannot draw a {len(names)}-parameter sweep")
        # x axis: the numeric parameter with most values; lines: the other one
        xi = max(range(len(names)), key=lambda i: (numeric[i], shape[i]))
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        A, L, H = (arr.reshape(shape) for arr in (acc, lo, hi))
        if len(names) == 2 and xi == 0:
            A, L, H = A.T, L.T, H.T
        hue = names[1 - xi] if len(names) == 2 else None
        xs = np.asarray(grid[names[xi]], float if numeric[xi] else object)
        for j, hv in enumerate(grid[hue] if hue else [None]):
            a_, l_, h_ = (M[j] for M in (A, L, H)) if hue else (A, L, H)
            lbl = f"{hue} = {hv}" if hue else None
            xx = xs if numeric[xi] else np.arange(len(xs))
            (line,) = ax.plot(xx, a_, marker="o", ms=3, lw=1.2, label=lbl)
            ax.fill_between(xx, l_, h_, color=line.get_color(), alpha=0.25, lw=0)
        if numeric[xi] and xs.min() > 0 and xs.max() / xs.min() > 50:
            ax.set_xscale("log")
        if not numeric[xi]:
            ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel(_label(names[xi]))
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if hue:
            ax.legend(frameon=False, fontsize=8)
    spec = res.spec
    fixed = f"{spec.kind}: " + ", ".join(
        f"{k}={v}"
        for k, v in {
            **spec.data.to_dict(),
            "a": spec.memory.a,
            "sim": spec.memory.similarity,
            "sep": spec.memory.separation,
        }.items()
        if k not in grid and k not in ("no_repeats", "Nmax", "n_novel")
    )
    ax.set_title(f"{fixed}\n{spec.trials} trials/point, 95% Clopper-Pearson bands", fontsize=7)
    fig.tight_layout()
    return fig


def plot_matrices(folder: Path):
    import matplotlib.pyplot as plt

    from amicl.memory.reference import separation

    cfg = read_json(folder / "config.json")["matrices"]
    with np.load(folder / "matrices.npz") as z:
        mats = {s: z[s] for s in SIMS}
        labels = z["token_labels"]
    fig, axes = plt.subplots(3, len(SIMS), figsize=(3.0 * len(SIMS), 8.4))
    ticks = ["q" if i == len(labels) - 2 else ("L" if lab >= 0 else "x") for i, lab in enumerate(labels)]
    ticks[-1] = "∅"
    for j, s in enumerate(SIMS):
        S = mats[s]
        for i, (name, M) in enumerate(
            [
                ("raw", S),
                (f"softmax (β={cfg['beta']})", separation(S, "softmax", cfg["beta"])),
                ("argmax", separation(S, "argmax")),
            ]
        ):
            ax = axes[i, j]
            im = ax.imshow(M, cmap="magma")
            ax.set_title(f"{s}, {name}", fontsize=9)
            ax.set_xticks(range(len(ticks)), ticks, fontsize=5)
            ax.set_yticks(range(len(ticks)), ticks, fontsize=5)
            if i == 0:
                fig.colorbar(im, ax=ax, fraction=0.046)
    axes[0, 0].set_ylabel("query memory $m_i$")
    axes[-1, 0].set_xlabel("stored memory $m_j$")
    fig.suptitle(
        f"Score matrices of bound memories, a={cfg['a']}, D={cfg['D']}, T={cfg['T']} "
        "(x item, L label, q query item, ∅ empty label)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def draw_all(results: Path, out: Path, formats=("png", "pdf")) -> list[Path]:
    """Draw a figure for every result folder below ``results``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, out = Path(results), Path(out)
    kinds = {p.parent: run_kind(p.parent) for p in sorted(results.rglob("config.json"))}
    folders = [f for f, k in kinds.items() if k in ("memory-sweep", "memory-run", "memory-matrices")]
    if not folders:
        found = sorted({k for k in kinds.values() if k})
        raise ValueError(
            f"no AMICL result folders (memory-sweep, memory-run, memory-matrices) under {results}"
            + (f"; found {', '.join(found)}" if found else "")
        )
    written = []
    for folder in folders:
        fig = plot_matrices(folder) if kinds[folder] == "memory-matrices" else plot_sweep(folder)
        if fig is not None:
            name = folder.relative_to(results).as_posix().replace("/", "_") or folder.name
            written += save_figure(fig, out, name, formats)
            plt.close(fig)
    return written


@click.command("amicl")
@click.argument("results", type=click.Path(exists=True, file_okay=False))
@out_option("Figure folder [default: RESULTS/figures].", required=False)
@format_option
def figures_amicl(results, out, formats):
    """Draw the AMICL figures from the result folders under RESULTS."""
    out = Path(out) if out else Path(results) / "figures"
    from amicl.common.cli import comma_list

    for p in draw_all(Path(results), out, tuple(comma_list(formats, "--format"))):
        click.echo(p)

"""NAMM figures from saved evolve / eval folders only."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import numpy as np

from amicl.common.io import read_csv, read_json, save_figure
from evolution.config import EvolveConfig


def _colours(evals: list[Path]) -> dict[str, str]:
    """One colour per policy, the same in every figure of a set."""
    policies = sorted({r["policy"] for e in evals for r in read_csv(e / "eval.csv")})
    if len(policies) <= 10:
        return {p: f"C{i}" for i, p in enumerate(policies)}
    import matplotlib

    tab20 = matplotlib.colormaps["tab20"]  # "C10" would be "C0" again: two policies in one colour
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # its ten strong colours first, then their light pairs
    return {p: matplotlib.colors.to_hex(tab20(order[i % 20])) for i, p in enumerate(policies)}


def plot_evolution(run: Path):
    """Fitness (population and dev-set mean) and cache kept over generations; dotted lines: new stage."""
    import matplotlib.pyplot as plt

    hist = read_csv(run / "history.csv")
    g = np.array([int(h["generation"]) for h in hist])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for key, label in (("fitness_mean", "population mean"), ("fitness_best", "population best")):
        axes[0].plot(g, [float(h[key]) for h in hist], label=label, lw=1)
    for key, label in (("cache_fraction_mean", "population mean"), ("cache_fraction_of_best", "best member")):
        axes[1].plot(g, [float(h[key]) for h in hist], label=label, lw=1)
    dev = [
        (int(h["generation"]), float(h["dev_mean_fitness"]), float(h["dev_mean_cache_fraction"]))
        for h in hist
        if h.get("dev_mean_fitness") not in (None, "")
    ]
    if dev:
        d = np.array(dev)
        axes[0].plot(d[:, 0], d[:, 1], "ko-", ms=3, label="CMA-ES mean on dev set")
        axes[1].plot(d[:, 0], d[:, 2], "ko-", ms=3, label="CMA-ES mean on dev set")
    stages = [int(h["stage"]) for h in hist]
    for ax in axes:
        for i in range(1, len(stages)):
            if stages[i] != stages[i - 1]:
                ax.axvline(g[i] - 0.5, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("generation")
        ax.grid(alpha=0.3)
    axes[0].axhline(1.0, color="grey", ls="--", lw=0.8)
    axes[0].set_ylabel("score / full-cache score")
    axes[1].set_ylabel("cache fraction kept")
    axes[0].legend(frameon=False, fontsize=7)
    fig.suptitle(f"NAMM evolution: {run.name} (dotted lines: new stage)", fontsize=9)
    fig.tight_layout()
    return fig


def curve_intervals(evals: list[Path], trained: set[str], n_boot: int = 1000) -> dict:
    """(policy, budget) -> {"trained" | "held_out": (low, high)}: the 95% bootstrap interval over prompts of
    the task group's normalised score (``evolution.table.bootstrap_rows``), for the same-budget baselines
    of evals that saved their per-prompt scores. A (policy, budget) found in two folders gets none: its
    prompts are not one sample."""
    from evolution.table import bootstrap_rows, read_cells

    found, out = defaultdict(int), {}
    for e in evals:
        if not (e / "prompt_scores.csv").exists() or not (e / "config.json").exists():
            continue
        cells, fraction = read_cells([e])
        for r in bootstrap_rows(cells, fraction, trained, against="", n_boot=n_boot, seed=0)[0]:
            if r["policy"] != "namm" and r["budget"].isdigit():
                found[r["policy"], r["budget"]] += 1
                out[r["policy"], r["budget"]] = {g: r[g][1:] for g in ("trained", "held_out") if g in r}
    return {k: v for k, v in out.items() if found[k] == 1}


def plot_score_vs_cache(
    evals: list[Path], trained: set[str], colour: dict, compression: bool = False, bands: dict | None = None
):
    """Normalised score against cache kept, trained and held-out tasks side by side; ``compression``: against
    the compression ratio (cache / kept, log scale: 2:1 ... 32:1), the field's format. A curve whose every
    point has its per-prompt scores carries its 95% interval as a band (``bands``: ``curve_intervals``'
    answer, computed here when not given)."""
    import matplotlib.pyplot as plt

    names = [e.name for e in evals]  # an eval's label; with its parent where two folders share a name
    names = [f"{e.parent.name}/{e.name}" if names.count(e.name) > 1 else e.name for e in evals]
    rows = [(name, r) for e, name in zip(evals, names) for r in read_csv(e / "eval.csv")]
    several_namms = len({name for name, r in rows if r["policy"] == "namm"}) > 1
    bands = curve_intervals(evals, trained) if bands is None else bands
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), sharey=True, layout="constrained")
    for ax, held in zip(axes, (False, True)):
        pts = defaultdict(list)
        for name, r in rows:
            if (r["task"] not in trained) == held:
                # NAMMs of several evolutions (one eval folder each) are points of their own
                key = (r["policy"], r["budget"], name if r["policy"] == "namm" else "")
                kept = float(r["cache_fraction"])
                pts[key].append((1 / kept if compression else kept, float(r["normalised"])))
        uniform, other = defaultdict(list), []
        for (pol, budget, name), v in pts.items():
            if budget.isdigit() and pol != "namm":
                uniform[pol].append((budget, *np.mean(v, axis=0)))
            else:  # NAMMs (in budget mode too: one point per evolution) and baselines at NAMM's budget
                other.append((pol, name, budget, np.mean(v, axis=0)))
        group = "held_out" if held else "trained"
        for pol, v in sorted(uniform.items()):  # one budget for every layer: a curve per policy
            v = sorted(v, key=lambda x: x[1])
            x, y = np.array([p[1] for p in v]), np.array([p[2] for p in v])
            ax.plot(x, y, "o-", ms=4, color=colour[pol], label=f"{pol}, same budget per layer")
            ci = [bands.get((pol, p[0]), {}).get(group) for p in v]
            if all(c is not None for c in ci):
                ax.fill_between(x, [c[0] for c in ci], [c[1] for c in ci], color=colour[pol], alpha=0.12, lw=0)
        stars = itertools.cycle(("*", "P", "X", "p", "h", "^"))
        for pol, name, budget, (x, y) in sorted(other, key=lambda o: o[:3]):
            if pol == "namm":
                mode = "at the budget" if budget.isdigit() else "its own budget"
                label = f"NAMM {name} ({mode})" if several_namms else f"NAMM ({mode})"
                ax.plot(x, y, next(stars), ms=11, color=colour[pol], mec="k", mew=0.5, label=label)
            else:  # a baseline given NAMM's measured per-layer budget (--match)
                ax.plot(x, y, "D", ms=6, mfc="none", color=colour[pol], label=f"{pol}, NAMM's per-layer budget")
        ax.axhline(1.0, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("compression ratio (cache / kept)" if compression else "cache fraction kept")
        if compression:
            ax.set_xscale("log", base=2)
            ticks = [2**k for k in range(1, 6)]
            ax.set_xticks(ticks, [f"{t}:1" for t in ticks])
        ax.set_title("held-out tasks" if held else "training tasks", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score / full-cache score (mean over tasks)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", frameon=False, fontsize=7)
    return fig


def plot_layers_and_ages(evals: list[Path], colour: dict):
    """Per-layer cache kept and the age histogram of kept tokens: NAMM and its matched baselines."""
    import matplotlib.pyplot as plt

    infos = [(read_json(e / "config.json")["eval"]["policy"], read_json(e / "eval.json")) for e in evals]
    focus = [(pol, b, info) for pol, info in infos for b in info["layer_fraction"] if pol == "namm" or not b.isdigit()]
    focus = focus or [(pol, b, info) for pol, info in infos for b in info["layer_fraction"]]
    has_namm = any(pol == "namm" for pol, _, _ in focus)  # then the layer panel shows NAMM alone
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for pol, budget, info in focus:
        label = "NAMM" if pol == "namm" else pol if not budget.isdigit() else f"{pol} ({budget})"
        if pol == "namm" or not has_namm:
            frac = info["layer_fraction"][budget]
            axes[0].plot(range(len(frac)), frac, "o-", ms=4, color=colour[pol], label=label)
        lo, hi = info["age_range"]
        h = np.asarray(info["age_histogram"][budget], float)
        edges = np.linspace(lo, hi, len(h) + 1)
        axes[1].step(edges[:-1], h / max(h.sum(), 1), where="post", color=colour[pol], label=label)
    axes[0].set_xlabel("layer")
    axes[0].set_xticks(range(max(len(i["layer_fraction"][b]) for _, b, i in focus)))
    axes[0].set_ylabel("fraction of tokens kept")
    axes[1].set_xlabel("age of kept token at the answer (tokens)")
    axes[1].set_ylabel("share of kept tokens")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def plot_spectrogram(evals: list[Path]):
    """The first saved example spectrogram among ``evals`` (None if there is none)."""
    import matplotlib.pyplot as plt

    for e in evals:
        if not (e / "example_spectrogram.npz").exists():
            continue
        with np.load(e / "example_spectrogram.npz") as z:
            spec = z["spectrogram"]  # (T, frames, 17)
        picks = np.linspace(0, len(spec) - 1, 6).astype(int)
        fig, axes = plt.subplots(1, 6, figsize=(12, 2.4), sharey=True)
        for ax, t in zip(axes, picks):
            ax.imshow(spec[t].T, origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"token {t}", fontsize=8)
            ax.set_xlabel("frame")
        axes[0].set_ylabel("frequency bin")
        fig.suptitle(
            "Attention spectrograms (layer 0, head 0, last update): |STFT| of the attention each token received",
            fontsize=9,
        )
        fig.tight_layout()
        return fig
    return None


def draw_namm(runs: list[Path], out: Path, formats=("png", "pdf")) -> list[Path]:
    """Every NAMM figure the given evolve and eval folders support; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in runs if (r / "eval.csv").exists()]
    evolves = [r for r in runs if (r / "evolution.pkl").exists()]
    # tasks a NAMM was evolved on; every other task is held out (the defaults' stages if no run is given)
    stages = [s for r in evolves for s in read_json(r / "config.json")["evolve"]["stages"]] or EvolveConfig().stages
    trained = {t for s in stages for t in s}
    figs = [(f"evolution_{run.name}", plot_evolution(run)) for run in evolves]
    if evals:
        colour, bands = _colours(evals), curve_intervals(evals, trained)  # one bootstrap for both figures
        figs += [
            ("score_vs_cache", plot_score_vs_cache(evals, trained, colour, bands=bands)),
            ("score_vs_compression", plot_score_vs_cache(evals, trained, colour, compression=True, bands=bands)),
            ("layers_and_ages", plot_layers_and_ages(evals, colour)),
            ("example_spectrogram", plot_spectrogram(evals)),
        ]
    written = []
    for name, fig in figs:
        if fig is not None:
            written += save_figure(fig, out, name, formats)
            plt.close(fig)
    if not written:
        raise ValueError("no evolve or eval folders among the given runs")
    return written

"""Figures of a stream comparison, drawn from its history.csv, members.csv and probes.csv only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amicl.common.io import read_csv, read_json, save_figure
from transformers_mini.toy import probe_specs
from transformers_mini.toy.compare import censored_times

SET_TITLES = {
    "test": "test (training mixture)",
    "ic": "ic: novel classes (ICL)",
    "ic2": "ic2: swapped labels (ICL)",
    "iw": "iw: in-weights",
}


def draw_streams(results: Path, out: Path, formats=("png", "pdf")) -> list[Path]:
    """learning_curves.* (median over seeds, band = min..max, while every seed trains) and steps_to_threshold.*"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from transformers_mini.toy.run import load_history

    run, history = load_history(results)
    if not history:
        raise ValueError(f"{results}: empty history")
    members_path = Path(results) / "members.csv"
    members = read_csv(members_path) if members_path.exists() else []
    arms = list(run.arms)
    sets = [s for s in ("test", "ic", "ic2", "iw") if s in history[0]]
    written = []

    fig, axes = plt.subplots(1, len(sets), figsize=(3.4 * len(sets), 3.2), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), sets):
        for arm in arms:
            rows = [r for r in history if r["arm"] == arm]
            per_seed = [[(int(r["step"]), float(r[name])) for r in rows if int(r["seed"]) == s] for s in run.seeds]
            # members stop at different steps (joined runs, --stop-when-reached): the median and band are
            # drawn while every seed is still there, and each seed's own curve to its end
            n = min(len(a) for a in per_seed)
            acc = np.array([[v for _, v in a[:n]] for a in per_seed])
            steps = np.array([t for t, _ in per_seed[0][:n]])
            (line,) = ax.plot(steps, np.median(acc, 0), lw=1.4, label=arm)
            ax.fill_between(steps, acc.min(0), acc.max(0), color=line.get_color(), alpha=0.2, lw=0)
            for a in per_seed:
                if len(a) > n:
                    ax.plot(*zip(*a[n - 1 :]), color=line.get_color(), lw=0.6, alpha=0.5)
        mem = [float(r[f"final_{name}"]) for r in members if r["arm"].startswith("amicl-memory")]
        if mem:
            ax.axhline(np.mean(mem), color="k", ls=":", lw=1, label="AMICL memory (a=2)")
        if name in ("ic", "ic2"):
            ax.axhline(run.train.threshold, color="grey", ls="--", lw=0.8)
        ax.set_title(SET_TITLES[name], fontsize=9)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("accuracy")
    np.atleast_1d(axes)[0].legend(frameon=False, fontsize=7)
    fig.suptitle(
        f"{len(run.seeds)} paired seeds per arm: median and min-max band while all train; thin: seeds after",
        fontsize=9,
    )
    fig.tight_layout()
    written += save_figure(fig, Path(out), "learning_curves", formats)
    plt.close(fig)

    if members:
        for name, fig in (
            ("steps_to_threshold", plot_steps(members, arms, run.train.threshold)),
            ("survival", plot_survival(members, arms, run.train.threshold)),
            ("covariates", plot_covariates(members, arms, run.train.threshold)),
        ):
            if fig is not None:
                written += save_figure(fig, Path(out), name, formats)
                plt.close(fig)
    if (Path(results) / "probes.csv").exists():
        fig = plot_probes(read_csv(Path(results) / "probes.csv"), history, arms)
        written += save_figure(fig, Path(out), "probes", formats)
        plt.close(fig)
    return written


def plot_steps(members: list[dict], arms: list[str], threshold: float):
    """Steps to the threshold on ic and ic2, one dot per seed, the median as a bar, 'never' counted."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2), sharey=True)
    for ax, name in zip(axes, ("ic", "ic2")):
        for i, arm in enumerate(arms):
            vals = [r[f"steps_{name}"] for r in members if r["arm"] == arm]
            reached = np.array([float(v) for v in vals if v not in ("", "None", None)])
            jitter = np.random.default_rng(i).uniform(-0.12, 0.12, len(reached))
            ax.scatter(np.full(len(reached), i) + jitter, reached, s=14, alpha=0.8)
            if len(reached):
                ax.hlines(np.median(reached), i - 0.25, i + 0.25, color="k", lw=1.5)
            missing = len(vals) - len(reached)
            if missing:
                ax.annotate(
                    f"{missing} never", (i, 0), textcoords="offset points", xytext=(0, -28), ha="center", fontsize=7
                )
        ax.set_xticks(range(len(arms)), arms)
        ax.set_title(f"steps to {threshold:g} on {name}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("training steps (bar: median)")
    fig.tight_layout()
    return fig


def plot_probes(probes: list[dict], history: list[dict], arms: list[str]):
    """Each probe against training steps per arm: median over seeds (band: min-max) while every seed is
    probed; dashed: the arm's median take-off (first ic >= 0.5)."""
    import matplotlib.pyplot as plt

    from transformers_mini.toy.mechanisms import TAKEOFF, onsets

    takeoff = onsets(probes, history)
    first = min(int(r["step"]) for r in probes)
    hist = [r for r in history if int(r["step"]) >= first]
    panels = probe_specs.panels()
    rows_n = -(-len(panels) // 4)  # every registered panel gets an axis
    fig, axes = plt.subplots(rows_n, 4, figsize=(13, 2.8 * rows_n), sharex=True, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (key, title) in zip(axes.flat, panels.items()):
        rows = hist if key == "ic" else probes
        for i, arm in enumerate(arms):
            by_seed = {}
            for r in rows:
                if r["arm"] == arm and r.get(key) not in (None, ""):
                    by_seed.setdefault(int(r["seed"]), []).append((int(r["step"]), float(r[key])))
            if not by_seed:
                continue
            n = min(len(v) for v in by_seed.values())
            steps = [t for t, _ in sorted(next(iter(by_seed.values())))[:n]]
            vals = np.array([[v for _, v in sorted(a)[:n]] for a in by_seed.values()])
            ax.plot(steps, np.median(vals, 0), color=f"C{i}", lw=1.3, label=arm)
            ax.fill_between(steps, vals.min(0), vals.max(0), color=f"C{i}", alpha=0.15, lw=0)
            t = [r["takeoff"] for r in takeoff if r["arm"] == arm and r["takeoff"] is not None]
            if t:
                ax.axvline(np.median(t), color=f"C{i}", ls="--", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    axes.flat[0].legend(frameon=False, fontsize=7)
    fig.suptitle(
        f"Probes on fixed ic sequences: median and min-max over seeds; dashed: median take-off (ic >= {TAKEOFF})",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def plot_survival(members: list[dict], arms: list[str], threshold: float):
    """Kaplan-Meier curves of 'not yet at the threshold' per arm; + marks censored runs."""
    import matplotlib.pyplot as plt

    from amicl.common.stats import kaplan_meier

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    for ax, name in zip(axes, ("ic", "ic2")):
        for arm in arms:
            t, e, _ = censored_times(members, arm, name)
            steps, surv = kaplan_meier(t, e)
            end = max(t.max(), steps[-1])
            (line,) = ax.step(np.r_[steps, end], np.r_[surv, surv[-1]], where="post", label=f"{arm} (n={len(t)})")
            for c in t[~e]:
                ax.plot(c, surv[np.searchsorted(steps, c, side="right") - 1], "+", color=line.get_color(), ms=8)
        ax.set_title(f"{name}: share of seeds not yet at {threshold:g}", fontsize=9)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Kaplan-Meier survival")
    axes[0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


COVARIATES = {
    "init_b3": "third MLP bias b3 at init",
    "init_z3_norm": "third MLP output norm at init",
    "init_z3_active": "active share of third MLP units at init",
}


def plot_covariates(members: list[dict], arms: list[str], threshold: float):
    """Steps to the threshold on ic against each initial-state covariate, per arm (open marks: censored)."""
    import matplotlib.pyplot as plt

    if not members or not all(k in members[0] for k in COVARIATES):
        return None
    fig, axes = plt.subplots(1, len(COVARIATES), figsize=(3.4 * len(COVARIATES), 3.2), sharey=True)
    for ax, (key, label) in zip(axes, COVARIATES.items()):
        for i, arm in enumerate(arms):
            t, e, _ = censored_times(members, arm, "ic")
            rows = [r for r in members if r["arm"] == arm]  # the order censored_times reads them in
            x = np.array([float(r[key]) for r in rows])
            ax.scatter(x[e], t[e], s=16, color=f"C{i}", label=arm)
            ax.scatter(x[~e], t[~e], s=16, facecolors="none", edgecolors=f"C{i}")
        ax.set_xlabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"steps to {threshold:g} on ic")
    axes[0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def draw_phase(results: Path, out: Path, formats=("png", "pdf")) -> list[Path]:
    """phase.*: ic and ic2 accuracy over the (B, epsilon) grid, the AMICL memory beside each trained arm
    (mean over seeds, written in each cell); phase_curves.*: each cell's ic accuracy over training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from amicl.common.io import read_json
    from transformers_mini.toy.phase import cell_name

    cfg = read_json(Path(results) / "config.json")
    rows = read_csv(Path(results) / "phase.csv")
    Bs, eps = cfg["grid"]["B"], cfg["grid"]["epsilon"]
    memory_arms = list(dict.fromkeys(r["arm"] for r in rows if r["arm"].startswith("amicl")))
    arms = list(cfg["run"]["arms"])
    cols = memory_arms + arms

    def cell_mean(which: list[str], B: int, e: float, test_set: str) -> float:
        """Mean accuracy over the rows of arms ``which`` in cell (B, e); NaN where there are none."""
        v = [float(r[test_set]) for r in rows if r["arm"] in which and int(r["B"]) == B and float(r["epsilon"]) == e]
        return float(np.mean(v)) if v else np.nan

    fig, axes = plt.subplots(2, len(cols), figsize=(2.9 * len(cols), 5.4), squeeze=False)
    for i, test_set in enumerate(("ic", "ic2")):
        for j, arm in enumerate(cols):
            grid = np.full((len(Bs), len(eps)), np.nan)
            for a, B in enumerate(Bs):
                for b, e in enumerate(eps):
                    grid[a, b] = cell_mean([arm], B, e, test_set)
            ax = axes[i, j]
            ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
            for (a, b), v in np.ndenumerate(grid):
                ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=8, color="w" if v < 0.6 else "k")
            ax.set_xticks(range(len(eps)), [f"{e:g}" for e in eps])
            ax.set_yticks(range(len(Bs)), [str(B) for B in Bs])
            ax.set_title(f"{arm}: {test_set}", fontsize=9)
            ax.set_xlabel("within-class noise epsilon", fontsize=8)
            ax.set_ylabel("burstiness B", fontsize=8)
    steps = cfg["run"]["train"]["steps"]
    fig.suptitle(f"ICL accuracy: AMICL memory (untrained) vs networks after {steps:,} steps", fontsize=9)
    fig.tight_layout()
    written = save_figure(fig, Path(out), "phase", formats)
    plt.close(fig)

    # phase_curves: per cell, every member's ic accuracy over training, the memory's as a line
    fig, axes = plt.subplots(len(Bs), len(eps), figsize=(2.8 * len(eps), 2.2 * len(Bs)), sharex=True, sharey=True)
    axes = np.asarray(axes).reshape(len(Bs), len(eps))
    for a, B in enumerate(Bs):
        for b, e in enumerate(eps):
            ax = axes[len(Bs) - 1 - a, b]  # B grows upwards, as in phase.*
            history = read_csv(Path(results) / "cells" / cell_name(B, e) / "history.csv")
            for k, arm in enumerate(arms):
                for seed in dict.fromkeys(int(r["seed"]) for r in history):
                    mine = [r for r in history if r["arm"] == arm and int(r["seed"]) == seed]
                    ax.plot([int(r["step"]) for r in mine], [float(r["ic"]) for r in mine], color=f"C{k}", lw=0.9)
                ax.plot([], [], color=f"C{k}", label=arm)
            memory = cell_mean(memory_arms, B, e, "ic")
            if not np.isnan(memory):
                ax.axhline(memory, color="k", ls="--", lw=0.8, label="AMICL memory")
            ax.axhline(B / cfg["run"]["task"]["N"], color="0.5", ls="-.", lw=0.6, label="copy a context label (B/N)")
            ax.axvline(steps, color="0.6", ls=":", lw=0.8)
            ax.set_title(f"B={B}, epsilon={e:g}", fontsize=8)
            ax.set_ylim(0, 1.02)
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("ic accuracy", fontsize=8)
    axes[-1, 0].legend(fontsize=6, loc="center left")  # the lowest B: its curves stay low
    fig.suptitle(f"ICL (ic) over training in every cell, one line per seed; dotted: the budget ({steps:,})", fontsize=9)
    fig.tight_layout()
    written += save_figure(fig, Path(out), "phase_curves", formats)
    plt.close(fig)
    return written


def draw_interventions(results: list[Path], out: Path, test_set: str = "ic", formats=("png", "pdf")) -> list[Path]:
    """interventions.*: per arm of the ``transformer intervene`` runs, the AMICL transplant's accuracy
    over (a, beta) (mean over seeds, written in each cell) and the binding transplant's accuracy against
    w, each beside the network's own (clean) accuracy on ``test_set``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for p in results for r in read_csv(Path(p) / "interventions.csv") if r["set"] == test_set]
    if not rows:
        raise ValueError(f"no {test_set} rows in the interventions runs given")
    arms = list(dict.fromkeys(r["arm"] for r in rows))

    def mean(arm: str, label: str) -> float:
        v = [float(r["accuracy"]) for r in rows if r["arm"] == arm and r["intervention"] == label]
        return float(np.mean(v)) if v else np.nan

    labels = list(dict.fromkeys(r["intervention"] for r in rows))
    grid = [lab.removeprefix("amicl:").split(",") for lab in labels if lab.startswith("amicl:")]
    a_values = sorted({float(g[0][2:]) for g in grid})
    betas = sorted({float(g[1][5:]) for g in grid})
    ws = sorted(float(lab[len("binding:w=") :]) for lab in labels if lab.startswith("binding:"))
    fig, axes = plt.subplots(2, len(arms), figsize=(3.2 * len(arms), 6.0), squeeze=False)
    for j, arm in enumerate(arms):
        clean = mean(arm, "clean")
        cells = np.array([[mean(arm, f"amicl:a={a:g},beta={b:g}") for b in betas] for a in a_values])
        ax = axes[0, j]
        ax.imshow(cells, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        for (i, k), v in np.ndenumerate(cells):
            ax.text(k, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
        ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
        ax.set_yticks(range(len(a_values)), [f"{a:g}" for a in a_values])
        ax.set_xlabel("beta (AMICL's inverse temperature)", fontsize=8)
        ax.set_ylabel("a (AMICL's binding weight)", fontsize=8)
        n = len({r["seed"] for r in rows if r["arm"] == arm})
        ax.set_title(f"{arm}: AMICL in layer 2 ({n} seed{'s' if n > 1 else ''}; own {clean:.3f})", fontsize=8)
        ax = axes[1, j]
        ax.plot(ws, [mean(arm, f"binding:w={w:.3g}") for w in ws], "o-", color="C0", label="binding transplant")
        ax.axhline(clean, color="k", ls="--", lw=0.8, label="the network's own")
        ax.axvline(2 / 3, color="0.6", ls=":", lw=0.8, label="AMICL's a = 2")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("w, layer 1's mass on the predecessor", fontsize=8)
        ax.set_ylabel(f"{test_set} accuracy", fontsize=8)
        ax.grid(alpha=0.3)
    axes[1, 0].legend(fontsize=7, frameon=False)
    fig.suptitle(f"Transplanting AMICL into the trained networks ({test_set} accuracy)", fontsize=9)
    fig.tight_layout()
    written = save_figure(fig, Path(out), "interventions", formats)
    plt.close(fig)
    return written


def draw_clamp(runs: dict[str, Path], out: Path, seeds: list[int] | None = None, formats=("png", "pdf")) -> list[Path]:
    """clamp_survival.*: Kaplan-Meier curves of 'not yet at the threshold' on ic, every arm of every
    ``runs`` (label -> a streams run folder with members.csv: e.g. the free run and the clamped ones), one
    line style per run and one colour per arm; ``seeds``: only these seeds of each run (the free run may
    hold more seeds than the clamped ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from amicl.common.stats import kaplan_meier

    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    curves = {}
    for label, folder in runs.items():
        run = read_json(Path(folder) / "config.json")["run"]
        members = [r for r in read_csv(Path(folder) / "members.csv") if r["arm"] in run["arms"]]  # trained arms
        if seeds is not None:
            members = [r for r in members if int(r["seed"]) in seeds]
        if not members:
            raise ValueError(f"{folder} has no members{' of the seeds given' if seeds else ''}")
        threshold = run["train"]["threshold"]
        curves[label] = {arm: censored_times(members, arm, "ic") for arm in dict.fromkeys(r["arm"] for r in members)}
    times = np.concatenate([t for arms in curves.values() for t, _, _ in arms.values()])
    first = times[times > 0].min() if (times > 0).any() else 1.0
    log = times.max() / first > 20  # runs whose times differ by orders of magnitude (a clamp that learns in 500 steps)
    for k, (label, arms) in enumerate(curves.items()):
        for j, (arm, (t, e, _)) in enumerate(arms.items()):
            steps, surv = kaplan_meier(t, e)
            if log:
                steps = np.where(steps > 0, steps, first / 2)  # step 0 has no place on a log axis
            end = max(t.max(), steps[-1])
            ax.step(np.r_[steps, end], np.r_[surv, surv[-1]], where="post", color=f"C{j}", ls=styles[k % 4],
                    label=f"{arm}, {label} (n={len(t)})")  # fmt: skip
            for c in t[~e]:
                ax.plot(c, surv[np.searchsorted(steps, c, side="right") - 1], "+", color=f"C{j}", ms=8)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("training step" + (" (log scale)" if log else ""))
    ax.set_ylabel("share of seeds not yet at the threshold")
    ax.set_title(f"Clamped training: time to {threshold:g} on ic (+: censored)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    written = save_figure(fig, Path(out), "clamp_survival", formats)
    plt.close(fig)
    return written

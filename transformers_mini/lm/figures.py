"""Figures of the language model, drawn from its run folders and ``lm ioi`` results (never by re-running)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amicl.common.io import read_csv, save_figure


def draw_lm(runs: list[Path], out: Path, ioi: Path | None = None, formats=("png", "pdf")) -> list[Path]:
    """lm_loss.*: validation loss against training tokens (steps for runs that did not count them) per
    arm (thin: each seed; bold: the mean over seeds at the evaluations all share), beside it P(IO) of the
    IOI prompts monitored during training where the runs have it; given an ``lm ioi`` folder, ioi.*:
    P(IO) per arm and seed with prompt intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from amicl.common.runs import expect_runs
    from transformers_mini.lm.config import read_config, read_history

    hists = {}
    for folder in expect_runs(runs, "lm", "RUNS"):
        hists.setdefault(read_config(folder).stream, []).append(read_history(folder))
    # runs that count their training tokens are drawn against them (the data axis); older ones against steps
    x_key = "tokens" if all("tokens" in hist[0] for runs_ in hists.values() for hist in runs_) else "step"
    panels = [("val_loss", "validation loss")]
    if any(h.get("ioi_p_io") not in ("", None) for runs_ in hists.values() for hist in runs_ for h in hist):
        panels.append(("ioi_p_io", "P(IO) at evaluation\n(dashed: ABC controls)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for i, (arm, runs_) in enumerate(hists.items()):
            for col, style in ((key, "-"), ("abc_p_io", "--")) if key == "ioi_p_io" else ((key, "-"),):
                curves = []
                for hist in runs_:
                    rows = [h for h in hist if h.get(col) not in ("", None)]
                    curves.append(([int(h[x_key]) for h in rows], [float(h[col]) for h in rows]))
                curves = [c for c in curves if c[0]]
                if not curves:
                    continue
                for steps, y in curves:
                    ax.plot(steps, y, style, color=f"C{i}", lw=0.6, alpha=0.5)
                n = min(len(c[0]) for c in curves)
                label_ = f"{arm} ({len(curves)} seed{'s' if len(curves) > 1 else ''})" if style == "-" else None
                ax.plot(curves[0][0][:n], np.mean([y[:n] for _, y in curves], 0), style, color=f"C{i}", lw=1.6,
                        label=label_)  # fmt: skip
        ax.set_xlabel("training tokens" if x_key == "tokens" else "training step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].set_yscale("log")  # the loss falls from ln(vocabulary) to under 1: on a linear axis the arms merge
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    written = save_figure(fig, Path(out), "lm_loss", formats)
    plt.close(fig)
    if ioi is not None:
        from amicl.common.runs import expect_run

        need = ("prompts", "arm", "seed", "p_io", "p_io_low", "p_io_high")
        rows = [r for r in read_csv(expect_run(ioi, "lm-ioi", "--ioi") / "ioi.csv", need) if r["prompts"] == "IOI"]
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for j, r in enumerate(rows):
            i = list(dict.fromkeys(x["arm"] for x in rows)).index(r["arm"])
            lo, hi = float(r["p_io"]) - float(r["p_io_low"]), float(r["p_io_high"]) - float(r["p_io"])
            ax.bar(j, float(r["p_io"]), color=f"C{i}", yerr=[[lo], [hi]], capsize=3)
        ax.set_xticks(range(len(rows)), [f"{r['arm']}\nseed {r['seed']}" for r in rows], fontsize=7)
        ax.set_ylabel("P(IO), IOI prompts")
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        written += save_figure(fig, Path(out), "ioi", formats)
        plt.close(fig)
    return written


def draw_dose(dose: Path, out: Path, formats=("png", "pdf")) -> list[Path]:
    """dose.*: P(IO) against the story world's IOI rate per arm, from an ``lm dose`` folder: each seed a
    dot, the mean over seeds with its 95% interval, the --target P(IO) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from amicl.common.io import read_json
    from amicl.common.runs import expect_run

    dose = expect_run(dose, "lm-dose", "--dose")
    runs = read_csv(dose / "dose_runs.csv", ("arm", "rate", "p_io"))
    table = read_csv(dose / "dose.csv", ("arm", "rate", "p_io", "p_io_low", "p_io_high"))
    target = float(read_json(dose / "config.json").get("target", 0.07))
    fig, ax = plt.subplots(figsize=(5, 3.4))
    arms = list(dict.fromkeys(r["arm"] for r in table))
    for i, arm in enumerate(arms):
        mine = sorted((float(r["rate"]), r) for r in table if r["arm"] == arm)
        x = [m[0] for m in mine]
        ax.fill_between(x, [float(r["p_io_low"]) for _, r in mine], [float(r["p_io_high"]) for _, r in mine],
                        color=f"C{i}", alpha=0.2, lw=0)  # fmt: skip
        ax.plot(x, [float(r["p_io"]) for _, r in mine], "-o", color=f"C{i}", ms=3, label=arm)
        dots = [r for r in runs if r["arm"] == arm]
        ax.plot([float(r["rate"]) for r in dots], [float(r["p_io"]) for r in dots], ".", color=f"C{i}", alpha=0.5)
    ax.axhline(target, color="0.4", ls="--", lw=0.8)
    nonzero = sorted({float(r["rate"]) for r in table} - {0.0})
    if nonzero:
        ax.set_xscale("symlog", linthresh=nonzero[0])
    ax.set_xlabel("IOI rate (share of training stories with an IOI frame)")
    ax.set_ylabel("P(IO), monitored IOI set")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    written = save_figure(fig, Path(out), "dose", formats)
    plt.close(fig)
    return written

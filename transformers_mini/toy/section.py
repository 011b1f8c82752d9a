"""The toy room's two sections of ``amicl reproduce all``: the residual values stream (steps to ICL by
arm, with the probes) and theory against the network over the task's burstiness and noise."""

from __future__ import annotations

from pathlib import Path

from amicl.common.io import read_json
from amicl.common.sections import Committed, Section, Step, md_file, pct, rows_of


def _stream_steps(size: dict) -> list[Step]:
    return [
        Step("streams/run", ("transformer", "compare", *size["args"], "--out", "{dir}"), "checkpoint.pt"),
        Step("streams/figures", ("figures", "streams", "{root}/streams/run", "--out", "{dir}", "--format", "png")),
    ]


def headline(run: Path) -> str:
    """Steps to the threshold on ic by arm, with the paired saving over none and the published figure."""
    lines = [
        "| arm | reached 0.95 | median steps [95% CI] | fewer steps than none: median per-seed saving [95% CI] "
        "| published (V vs none) |",
        "|---|---|---|---|---|",
    ]
    for r in rows_of(run / "compare.csv", test_set="ic"):
        fewer = "-"
        if r.get("median_saving_vs_none"):
            fewer = f"{pct(r['median_saving_vs_none'])} [{pct(r['median_saving_low'])}, {pct(r['median_saving_high'])}]"
        pub = "24% fewer steps (AMICL paper)" if r["arm"] == "V" else "-"
        median = f"{float(r['median_steps']):.0f} [{float(r['median_ci_low']):.0f}, {float(r['median_ci_high']):.0f}]"
        if median.startswith("inf"):
            median = "not reached (median run censored)"
        lines.append(f"| {r['arm']} | {r['n_reached']}/{r['n_seeds']} | {median} | {fewer} | {pub} |")
    return "\n".join(lines)


def _stream_body(root: Path) -> list[str]:
    run = root / "streams" / "run"
    saved = read_json(run / "config.json") if (run / "config.json").exists() else {}
    cfg = saved.get("run", {}).get("train", {})
    return [
        f"Steps until ic accuracy first reaches {cfg.get('threshold', 0.95)} (a run that never does is censored at "
        f"its last step, {cfg.get('steps', '?')}; trained on {saved.get('device', '?')}):",
        headline(run),
        "The full comparison, the survival view, the mechanisms and the probes:",
        md_file(run / "compare.md"),
    ]


STREAMS = Section(
    title="The residual values stream (toy Transformer)",
    sizes={
        "quick": {
            "args": (
                "--streams",
                "none,V",
                "--seeds",
                "2",
                "--steps",
                "1500",
                "--eval-every",
                "250",
                "--eval-size",
                "500",
                "--checkpoint-every",
                "500",
                "--probe-size",
                "128",
            )
        },
        "paper": {"args": ("--streams", "none,V,K,Q", "--seeds", "8", "--stop-when-reached")},
    },  # fmt: skip
    steps=_stream_steps,
    body=_stream_body,
    committed=(
        Committed(
            "Residual values stream, 24 consecutive seeds (0-23)",
            "Steps to 0.95 on ic; paired savings over "
            "none by the package's three estimators (primary: median of per-seed savings); the paper reports "
            "about 24%.",
            "streams-savings",
            ("results/streams/none_V_24seeds", "ic"),
        ),
        Committed(
            "The paper's open questions (seeds 0-7)",
            "V without its gradient path (detach), at half weight, "
            "and with a learned weight, paired with none and V on the same seeds.",
            "streams-savings",
            ("results/streams/ablation_seeds0_7", "ic"),
        ),
        Committed("K and Q on seeds 16-23, probed", "", "streams-savings", ("results/streams/all4_seeds16_23", "ic")),
    ),  # fmt: skip
    figures=("streams/figures",),
)


def _theory_steps(size: dict) -> list[Step]:
    return [
        Step("theory/phase", ("transformer", "phase", *size["args"], "--out", "{dir}"), "config.json"),
        Step("theory/figures", ("figures", "phase", "{root}/theory/phase", "--out", "{dir}", "--format", "png")),
    ]


THEORY = Section(
    title="Theory vs network over task parameters",
    sizes={
        "quick": {
            "args": (
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
                "--eval-size",
                "500",
                "--checkpoint-every",
                "100",
            )
        },
        "paper": {"args": ("--seeds", "2", "--steps", "20000")},
    },  # fmt: skip
    steps=_theory_steps,
    body=lambda root: [md_file(root / "theory" / "phase" / "phase.md")],
    committed=(
        Committed(
            "Theory vs network over burstiness and noise (20,000-step budget)",
            "",
            "include",
            ("results/theory/phase/phase.md",),
        ),
    ),  # fmt: skip
    figures=("theory/figures",),
)

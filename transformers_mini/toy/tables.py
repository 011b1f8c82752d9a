"""Tables of the toy room generated from committed result files (``amicl tables``). Torch-free."""

from __future__ import annotations

from pathlib import Path

from amicl.common.io import read_csv

ESTIMATORS = ("median_saving", "ratio_of_medians", "ratio_of_means")


def _pct(r: dict, name: str) -> str:
    if r.get(f"{name}_vs_none") in ("", None):
        return "-"
    point, lo, hi = (float(r[k]) for k in (f"{name}_vs_none", f"{name}_low", f"{name}_high"))
    return f"{point:.1%} [{lo:.1%}, {hi:.1%}]"


def savings(root: Path, run: str, test_set: str = "ic") -> list[str]:
    """Per arm of a streams run (its compare.csv): runs that reached the threshold, the never-learns rate,
    median steps, and the paired savings over none by the package's three estimators (primary first)."""
    lines = [
        f"| arm ({test_set}) | reached | never learns [95% CI] | median steps [95% CI] | median per-seed saving "
        "| ratio of medians | ratio of means |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [r for r in read_csv(Path(root) / run / "compare.csv") if r["test_set"] == test_set]
    if not rows:
        raise KeyError(f"{run}/compare.csv has no rows for test set {test_set}")
    for r in sorted(rows, key=lambda r: (r["arm"] != "none", r["arm"])):
        never = f"{float(r['never_rate']):.0%} [{float(r['never_low']):.0%}, {float(r['never_high']):.0%}]"
        median = (
            f"{float(r['median_steps']):,.0f} [{float(r['median_ci_low']):,.0f}, {float(r['median_ci_high']):,.0f}]"
        )
        cells = " | ".join(_pct(r, name) for name in ESTIMATORS)
        lines.append(f"| {r['arm']} | {r['n_reached']}/{r['n_seeds']} | {never} | {median} | {cells} |")
    return lines


def groups(root: Path, run: str, size: str = "8", test_set: str = "ic") -> list[str]:
    """Seed groups of a streams run (consecutive blocks of ``size`` seeds, e.g. the groups trained on
    different machines): the baseline's median steps and V's median per-seed saving per group, and
    Kruskal-Wallis tests of whether either differs between the groups."""
    import numpy as np
    from scipy.stats import kruskal

    from amicl.common.io import read_json
    from amicl.common.stats import paired_savings

    members = read_csv(Path(root) / run / "members.csv")
    cap = float(read_json(Path(root) / run / "config.json")["run"]["train"]["steps"])

    def steps(arm: str) -> dict[int, float]:
        col = f"steps_{test_set}"
        return {int(r["seed"]): float(r[col]) if r[col] not in ("", "None") else np.inf for r in members
                if r["arm"] == arm}  # fmt: skip

    none, v = steps("none"), steps("V")
    seeds = sorted(none)
    blocks = [seeds[i : i + int(size)] for i in range(0, len(seeds), int(size))]
    lines = [f"| seeds | none: median steps ({test_set}) | V: median steps | V's median per-seed saving [95% CI] |",
             "|---|---|---|---|"]  # fmt: skip
    base_groups, saving_groups = [], []
    for block in blocks:
        b, a = np.array([none[s] for s in block]), np.array([v[s] for s in block])
        sv = paired_savings(b, a, cap=cap)
        saving = f"{sv['median_saving']:.1%} [{sv['median_saving_low']:.1%}, {sv['median_saving_high']:.1%}]"
        lines.append(f"| {block[0]}-{block[-1]} | {np.median(b):,.0f} | {np.median(a):,.0f} | {saving} |")
        base_groups.append(np.minimum(b, cap))
        saving_groups.append(1 - np.minimum(a, cap) / np.minimum(b, cap))
    p_base, p_saving = kruskal(*base_groups).pvalue, kruskal(*saving_groups).pvalue
    lines += ["", f"Kruskal-Wallis across the groups: none's steps p = {p_base:.3f}; V's per-seed saving "
              f"p = {p_saving:.3f}."]  # fmt: skip
    return lines


INTERVENTION_COLUMNS = (  # (column, intervention label), in the order a reader asks them
    ("clean", "clean"),
    ("layer 1 zeroed", "zero:attn0"),
    ("layer 2 zeroed", "zero:attn1"),
    ("stream term zeroed", "zero:stream"),
    ("binding w = 2/3 (a = 2)", "binding:w=0.667"),
    ("binding w = 1", "binding:w=1"),
    ("AMICL a = 2, beta = 10", "amicl:a=2,beta=10"),
)


def interventions(root: Path, test_set: str, *runs: str) -> list[str]:
    """The main interventions of ``amicl transformer intervene`` runs, one row per arm (mean over its seeds;
    accuracy on ``test_set``), and the best cell of the AMICL transplant grid (a selection: best of the grid;
    the first of equal cells, with how many tie)."""
    import numpy as np

    head = " | ".join(c for c, _ in INTERVENTION_COLUMNS)
    rule = "|---|---|---|" + "---|" * (len(INTERVENTION_COLUMNS) + 1)
    lines = [f"| run | arm | seeds | {head} | best AMICL cell of the grid |", rule]
    for run in runs:
        rows = [r for r in read_csv(Path(root) / run / "interventions.csv") if r["set"] == test_set]
        for arm in dict.fromkeys(r["arm"] for r in rows):
            mine = [r for r in rows if r["arm"] == arm]
            acc = {}
            for r in mine:
                acc.setdefault(r["intervention"], []).append(float(r["accuracy"]))
            mean = {k: float(np.mean(v)) for k, v in acc.items()}
            cells = " | ".join(f"{mean[label]:.3f}" if label in mean else "-" for _, label in INTERVENTION_COLUMNS)
            grid = {k: v for k, v in mean.items() if k.startswith("amicl:")}
            best = max(grid, key=grid.get) if grid else None
            ties = sum(v == grid[best] for v in grid.values()) if best else 0
            tied = f", {ties} of {len(grid)} cells tie" if ties > 1 else ""
            best_cell = f"{grid[best]:.3f} ({best.removeprefix('amicl:')}{tied})" if best else "-"
            n = len({r["seed"] for r in mine})
            lines.append(f"| {Path(run).name} | {arm} | {n} | {cells} | {best_cell} |")
    return lines


PATCH_ROLES = ("query-class labels", "query-class items", "other labels", "other items", "query", "all")


def patch_lines(rows: list[dict]) -> list[str]:
    """Activation patching rows (``patching.csv``) as a table: per run, arm and patched point, the share of
    the answer's logit difference each role's layer-1 output moves, mean over seeds (with its bootstrap
    interval where there are several)."""
    from amicl.common.stats import mean_ci

    lines = ["| run | arm | patched | " + " | ".join(PATCH_ROLES) + " |", "|---|---|---|" + "---|" * len(PATCH_ROLES)]
    keys = dict.fromkeys((r.get("run", ""), r["arm"], r["point"]) for r in rows)
    for run, arm, point in keys:
        cells = []
        for role in PATCH_ROLES:
            v = [
                float(r["effect"])
                for r in rows
                if (r.get("run", ""), r["arm"], r["point"], r["role"]) == (run, arm, point, role)
            ]
            m, lo, hi = mean_ci(v)
            cells.append(f"{m:.2f} [{lo:.2f}, {hi:.2f}]" if len(v) > 1 else f"{m:.2f}")
        lines.append(f"| {run} | {arm} | {point} | " + " | ".join(cells) + " |")
    return lines


def patching(root: Path, *runs: str) -> list[str]:
    """The activation patching of ``amicl transformer intervene`` runs (their patching.csv), one table."""
    rows = [{**r, "run": Path(run).name} for run in runs for r in read_csv(Path(root) / run / "patching.csv")]
    return patch_lines(rows)


def paired_steps(root: Path, free_members: str, *histories: str) -> list[str]:
    """Steps to 0.95 on ic of none and V per seed in runs given as history files (e.g. the finished groups
    of a clamped run), beside the same seeds' steps in a free run's members.csv, with V's saving in each."""
    from transformers_mini.toy.run import steps_to_threshold

    free = {(r["arm"], int(r["seed"])): r["steps_ic"] for r in read_csv(Path(root) / free_members)}
    lines = ["| seed | none, clamped | V, clamped | V's saving, clamped | none, free | V, free | V's saving, free |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip

    def cells(none, v) -> list[str]:
        if none in ("", None) or v in ("", None):
            return [f"{none or '-'}", f"{v or '-'}", "-"]
        return [f"{int(none):,}", f"{int(v):,}", f"{1 - int(v) / int(none):.1%}"]

    for h in histories:
        rows = read_csv(Path(root) / h)
        for seed in dict.fromkeys(int(r["seed"]) for r in rows):
            clamped = [steps_to_threshold(rows, arm, seed, "ic", 0.95) for arm in ("none", "V")]
            row = cells(*clamped) + cells(free.get(("none", seed)), free.get(("V", seed)))
            lines.append(f"| {seed} | " + " | ".join(row) + " |")
    return lines

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


def interventions_over_seeds(root: Path, test_set: str, *runs: str) -> list[str]:
    """``amicl transformer intervene`` runs pooled (e.g. the groups of one ``compare`` run), one row per
    intervention but the AMICL grid (only a = 2, beta = 10; the figure draws the grid): each arm's mean
    accuracy on ``test_set`` over its seeds with the 95% bootstrap interval, V minus none paired by seed,
    and how many seeds answer at least as well as their own clean model, and within 0.05 of it."""
    from amicl.common.stats import mean_ci

    rows = [r for run in runs for r in read_csv(Path(root) / run / "interventions.csv") if r["set"] == test_set]
    if not rows:
        raise ValueError(f"no {test_set} rows in {', '.join(runs)}")
    acc = {(r["arm"], int(r["seed"]), r["intervention"]): float(r["accuracy"]) for r in rows}
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    seeds = {a: sorted({s for b, s, _ in acc if b == a}) for a in arms}
    paired = sorted(set(seeds.get("none", [])) & set(seeds.get("V", [])))
    labels = [k for k in dict.fromkeys(r["intervention"] for r in rows) if not k.startswith("amicl:")]
    labels.append("amicl:a=2,beta=10")

    def cell(v) -> str:
        m, lo, hi = mean_ci(v)
        return f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if len(v) > 1 else f"{m:.3f}"

    head = " | ".join(f"{a} ({len(seeds[a])} seed{'s' if len(seeds[a]) > 1 else ''})" for a in arms)
    diff = " V - none, paired |" if paired else ""
    lines = [f"| intervention | {head} |{diff} seeds at or above their own clean accuracy | seeds within 0.05 of it |",
             "|---|" + "---|" * (len(arms) + 2 + bool(paired))]  # fmt: skip

    def count(label, near) -> str:  # seeds of each arm at or above their own clean accuracy, less near
        ok = {a: sum(acc[(a, s, label)] >= acc[(a, s, "clean")] - near for s in seeds[a]) for a in arms}
        return ", ".join(f"{a} {ok[a]}/{len(seeds[a])}" for a in arms)

    for label in labels:
        cells = [cell([acc[(a, s, label)] for s in seeds[a]]) for a in arms]
        if paired:
            cells.append(cell([acc[("V", s, label)] - acc[("none", s, label)] for s in paired]))
        own = ["-", "-"] if label == "clean" else [count(label, 0.0), count(label, 0.05)]
        lines.append(f"| {label} | " + " | ".join(cells + own) + " |")
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


def patching_over_seeds(root: Path, label: str, *runs: str) -> list[str]:
    """The activation patching of several ``intervene`` runs pooled as one (e.g. the seed groups of one
    ``compare`` run), named ``label``: one row per arm and patched point, mean over all their seeds."""
    return patch_lines([{**r, "run": label} for run in runs for r in read_csv(Path(root) / run / "patching.csv")])


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

    pairs = []  # (none clamped, V clamped, none free, V free) per seed where all four reached
    for h in histories:
        rows = read_csv(Path(root) / h)
        for seed in dict.fromkeys(int(r["seed"]) for r in rows):
            clamped = [steps_to_threshold(rows, arm, seed, "ic", 0.95) for arm in ("none", "V")]
            row = cells(*clamped) + cells(free.get(("none", seed)), free.get(("V", seed)))
            lines.append(f"| {seed} | " + " | ".join(row) + " |")
            steps = [*clamped, free.get(("none", seed)), free.get(("V", seed))]
            if all(x not in ("", None) for x in steps):
                pairs.append([int(x) for x in steps])
    return lines + _paired_summary(pairs)


def _paired_summary(pairs: list[list[int]]) -> list[str]:
    """Under the per-seed table: the median per-seed saving with its bootstrap 95% interval, of V over none
    (clamped, free) and of the clamp over free training (none, V), over the seeds where all four reached
    (from 4 seeds on: with fewer, a bootstrap interval is only the range)."""
    if len(pairs) < 4:
        return []
    import numpy as np

    from amicl.common.stats import ESTIMATORS, bootstrap_ci

    s = np.array(pairs, dtype=float).T  # none clamped, V clamped, none free, V free
    stat = ESTIMATORS["median_saving"][0]

    def saving(base, arm) -> str:
        lo, hi, _ = bootstrap_ci((base, arm), stat)
        return f"{stat(base, arm):.1%} [{lo:.1%}, {hi:.1%}]"

    head = "| V over none, clamped | V over none, free | the clamp, none | the clamp, V |"
    row = f"| {saving(s[0], s[1])} | {saving(s[2], s[3])} | {saving(s[2], s[0])} | {saving(s[3], s[1])} |"
    return ["", f"Median per-seed saving [95% bootstrap interval] over the {len(pairs)} seeds:", "", head,
            "|---|---|---|---|", row]  # fmt: skip


# -- the mechanisms over training (probes.csv, mechanisms.csv) -----------------------------------------


LABELS = {  # probes whose figure panel title is missing or too short for a table row
    "takeoff": "take-off",
    "a_fit": "a fitted in x_{t-1}'s own basis",
    "amicl_corr_a2": "layer 2 logits vs AMICL scores (a = 2), r",
    "amicl_corr_gain": "layer 2 logits vs AMICL scores (the fitted gain a), r",
    "k_comp": "K-composition (layer-2 keys read layer 1's output)",
    "q_comp": "Q-composition",
    "v_comp": "V-composition",
}


def _label(column: str) -> str:
    """A mechanisms.csv column (``start_KEY``, ``mid_KEY``, ``takeoff``) or a probe name, in words."""
    from transformers_mini.toy import probe_specs

    when, _, key = column.partition("_") if column.startswith(("start_", "mid_")) else ("", "", column)
    name = LABELS.get(key) or probe_specs.panels().get(key) or key
    return f"{name}: {'midpoint' if when == 'mid' else when}" if when else name


def _spread(v, signed: bool = False, fmt: str = ",.0f") -> str:
    """median [min, max] of ``v``; ``signed`` writes + before positive values."""
    import numpy as np

    def f(x):
        s = f"{x:{fmt}}"
        return ("+" + s if x > 0 else s) if signed else s

    return f"{f(np.median(v))} [{f(min(v))}, {f(max(v))}]"


def _complete(root: Path, run: str) -> list[dict]:
    return [r for r in read_csv(Path(root) / run / "mechanisms.csv") if r["complete"] == "True"]


def onsets(root: Path, run: str, probes: str = "amicl_top1_a2,prev_token,induction,beta_eff") -> list[str]:
    """Per arm of a streams run: the take-off and each probe's start / midpoint, in steps (median [min,
    max] over the members probed from step 0 that reached the threshold; midpoint: median)."""
    import numpy as np

    rows, keys = _complete(root, run), probes.split(",")
    head = ["arm", "n", "take-off"] + [f"{_label(k)}: start / midpoint" for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        cells = [str(len(mine)), _spread([float(r["takeoff"]) for r in mine])]
        for k in keys:
            mid = np.median([float(r[f"mid_{k}"]) for r in mine])
            cells.append(_spread([float(r[f"start_{k}"]) for r in mine]) + f" / {mid:,.0f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def onset_pairs(root: Path, run: str, columns: str = "takeoff,start_prev_token,start_induction,mid_induction",
                base: str = "none") -> list[str]:  # fmt: skip
    """Each onset of each arm minus that of ``base`` on the same seed, in steps: median [min, max] over the
    seeds, and on how many seeds the arm was earlier / tied / later."""

    def cell(d):
        return (
            f"{_spread(d, signed=True)}; {sum(x < 0 for x in d)} / {sum(x == 0 for x in d)} / {sum(x > 0 for x in d)}"
        )

    return _paired(_complete(root, run), columns.split(","), base, cell)


def probes_at(root: Path, run: str, step: str, probes: str = "prev_token,induction,amicl_corr_a2,k90",
              base: str = "none") -> list[str]:  # fmt: skip
    """Each probe of each arm minus ``base``'s on the same seed at one evaluated step: median [min, max]
    over the seeds, and on how many seeds the arm's value is higher."""
    rows = [r for r in read_csv(Path(root) / run / "probes.csv") if int(r["step"]) == int(step)]

    def cell(d):
        return f"{_spread(d, signed=True, fmt='.3f')}; {sum(x > 0 for x in d)}/{len(d)}"

    return _paired(rows, probes.split(","), base, cell)


def _paired(rows: list[dict], keys: list[str], base: str, cell) -> list[str]:
    """A table of each arm's values minus ``base``'s on the same seed, one ``cell(differences)`` per key."""
    ref = {r["seed"]: r for r in rows if r["arm"] == base}
    lines = ["| arm | " + " | ".join(_label(k) for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for arm in dict.fromkeys(r["arm"] for r in rows if r["arm"] != base):
        pairs = [(r, ref[r["seed"]]) for r in rows if r["arm"] == arm and r["seed"] in ref]
        cells = [cell([float(a[k]) - float(b[k]) for a, b in pairs]) for k in keys]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def final_probes(root: Path, run: str, probes: str = "prev_token,a_gain,a_fit,amicl_top1_a2,amicl_corr_a2,"
                 "amicl_corr_gain,induction,beta_eff,k90,k_comp,q_comp,v_comp") -> list[str]:  # fmt: skip
    """Each probe at every member's last evaluation (a run stopped when reached: its first at the
    threshold), per arm the median over seeds with the bootstrap 95% interval of the median."""
    import numpy as np

    from amicl.common.stats import bootstrap_ci

    last: dict = {}
    for r in read_csv(Path(root) / run / "probes.csv"):
        key = (r["arm"], r["seed"])
        if key not in last or int(r["step"]) > int(last[key]["step"]):
            last[key] = r
    arms = list(dict.fromkeys(a for a, _ in last))
    lines = ["| probe | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for k in probes.split(","):
        cells = []
        for arm in arms:
            v = np.array([float(r[k]) for (a, _), r in last.items() if a == arm])
            lo, hi = bootstrap_ci((v,), np.median)[:2] if len(v) > 1 else (v[0], v[0])
            cells.append(f"{np.median(v):.3f} [{lo:.3f}, {hi:.3f}]")
        lines.append(f"| {_label(k)} | " + " | ".join(cells) + " |")
    return lines


def _firsts(hist: list[dict], arm: str, step: int, level: float = 0.95) -> str:
    """Each seed's first evaluated step with ic >= ``level`` up to ``step`` (">step" when none)."""
    from transformers_mini.toy.run import steps_to_threshold

    upto = [r for r in hist if int(r["step"]) <= step]
    firsts = [steps_to_threshold(upto, arm, int(s), "ic", level) for s in dict.fromkeys(r["seed"] for r in upto)]
    return ", ".join(f"{f:,}" if f else f">{step:,}" for f in firsts)


def phase_grid(root: Path, run: str, step: str = "") -> list[str]:
    """The phase grid at one training step (default: the grid's own budget): per (B, epsilon) cell the AMICL
    memory's ic accuracy, each arm's ic and in-weights (iw) accuracy, mean [min, max] over the seeds (from
    each cell's history), and the accuracy of copying a context label (B/N). Past the budget (cells
    continued with --resume), only the cells that reached ``step``, with each seed's first step at 0.95 on
    ic (">step" when not within it)."""
    import numpy as np

    from amicl.common.io import read_json

    folder = Path(root) / run
    cfg = read_json(folder / "config.json")
    budget, n = cfg["run"]["train"]["steps"], cfg["run"]["task"]["N"]
    step = int(step or budget)
    arms = list(cfg["run"]["arms"])
    memory: dict = {}
    for r in read_csv(folder / "phase.csv"):
        if r["arm"].startswith("amicl-memory"):
            memory.setdefault(r["cell"], []).append(float(r["ic"]))
    head = ["B", "epsilon", "AMICL memory", *arms, *(f"{a}: iw" for a in arms), "copying a context label (B/N)"]
    if step > budget:
        head.append("steps to 0.95 on ic, " + " / ".join(f"{a} (seeds)" for a in arms))
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]

    def mean_range(v):
        return f"{np.mean(v):.2f} [{min(v):.2f}, {max(v):.2f}]"

    for b in cfg["grid"]["B"]:
        for eps in cfg["grid"]["epsilon"]:
            cell = f"B{b}_eps{eps:g}"
            hist = read_csv(folder / "cells" / cell / "history.csv")
            at = [r for r in hist if int(r["step"]) == step]
            if not at:
                continue
            acc = {a: [float(r["ic"]) for r in at if r["arm"] == a] for a in arms}
            iw = {a: [float(r["iw"]) for r in at if r["arm"] == a] for a in arms}
            cells = [str(b), f"{eps:g}", f"{np.mean(memory[cell]):.2f}"]
            cells += [mean_range(acc[a]) for a in arms] + [mean_range(iw[a]) for a in arms] + [f"{b / n:g}"]
            if step > budget:
                cells.append(" / ".join(_firsts(hist, a, step) for a in arms))
            lines.append("| " + " | ".join(cells) + " |")
    return lines

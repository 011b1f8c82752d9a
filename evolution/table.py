"""The NAMM results table, torch-free: each policy's normalised score per task with percentile-bootstrap
95% intervals, means over trained and held-out tasks, and NAMM's paired margin over every policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amicl.common.io import read_csv, read_json
from amicl.common.runs import expect_run
from amicl.common.stats import percentile_interval, resample_indices


def read_cells(eval_dirs: list[Path]) -> tuple[dict, dict]:
    """(policy, budget) -> task -> (scores, full-cache scores) per prompt, and -> cache fractions."""
    cells, fraction = {}, {}
    for d in eval_dirs:
        d = expect_run(d, "namm-eval", "EVALS")
        if not (d / "prompt_scores.csv").exists():
            raise ValueError(f"{d} has no prompt_scores.csv (made before evals wrote it); re-run that eval")
        policy = read_json(d / "config.json")["eval"]["policy"]
        for r in read_csv(d / "eval.csv"):
            fraction.setdefault((policy, r["budget"]), []).append(float(r["cache_fraction"]))
        for r in read_csv(d / "prompt_scores.csv"):
            s, f = cells.setdefault((policy, r["budget"]), {}).setdefault(r["task"], ([], []))
            s.append(float(r["score"]))
            f.append(float(r["full_score"]))
    return cells, fraction


def bootstrap_rows(cells: dict, fraction: dict, trained: set[str], against: str, n_boot: int, seed: int):
    """One row per (policy, budget): (point, low, high) per task and task group, and where every eval
    ran on the same prompts, the paired difference of ``against``'s group means from each row's.
    Returns (rows, tasks)."""
    tasks = sorted({t for v in cells.values() for t in v}, key=lambda t: (t not in trained, t))
    fulls = {t: {tuple(v[t][1]) for v in cells.values() if t in v} for t in tasks}
    paired = all(len(f) == 1 for f in fulls.values())
    rng = np.random.default_rng(seed)
    # Bootstrap indices per (task, prompt count): paired evals resample the same prompts together.
    idx = {(t, n): resample_indices(n, n_boot, rng) for t in tasks for n in sorted({len(f) for f in fulls[t]})}
    groups = (("trained", [t for t in tasks if t in trained]), ("held_out", [t for t in tasks if t not in trained]))
    boots, rows = {}, []
    for key, per_task in cells.items():
        row, b = {"policy": key[0], "budget": key[1], "cache_fraction": float(np.mean(fraction[key]))}, {}
        for t in tasks:
            if t not in per_task:
                continue
            s, f = (np.asarray(x) for x in per_task[t])
            i = idx[t, len(s)]
            b[t] = s[i].mean(1) / f[i].mean(1)
            row[t] = (s.mean() / f.mean(), *percentile_interval(b[t]))
        for group, members in groups:
            members = [t for t in members if t in b]
            if members:
                b[group] = np.mean([b[t] for t in members], axis=0)
                row[group] = (float(np.mean([row[t][0] for t in members])), *percentile_interval(b[group]))
        boots[key] = b
        rows.append(row)
    refs = [(k, r) for k, r in zip(cells, rows) if k[0] == against]
    if paired and len(refs) == 1:
        ((ref_key, ref_row),) = refs
        for key, row in zip(cells, rows):
            for group in ("trained", "held_out"):
                if group in row and group in ref_row and key != ref_key:
                    d = boots[ref_key][group] - boots[key][group]
                    row[f"{against}_minus_this_{group}"] = (
                        ref_row[group][0] - row[group][0],
                        *percentile_interval(d),
                    )
    return rows, tasks


def _interval(v) -> str:
    return f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]" if isinstance(v, tuple) else ""


def _budget_words(b: str) -> str:
    return "own (score < 0)" if b == "None" else f"{b} per layer" if b.isdigit() else f"per layer {b}"


def markdown(rows: list[dict], tasks: list[str], against: str) -> str:
    margins = [
        c for c in (f"{against}_minus_this_trained", f"{against}_minus_this_held_out") if any(c in r for r in rows)
    ]
    cols = tasks + ["trained", "held_out"] + margins
    md = [
        "| policy | budget | cache kept | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
        "|---" * (len(cols) + 3) + "|",
    ]
    md += [
        f"| {r['policy']} | {_budget_words(r['budget'])} | {r['cache_fraction']:.3f} | "
        + " | ".join(_interval(r.get(c)) for c in cols)
        + " |"
        for r in sorted(rows, key=lambda r: (r["policy"] != against, r["policy"], r["cache_fraction"]))
    ]
    return "\n".join(md) + "\n"


def trained_tasks(eval_dirs: list[Path]) -> set[str]:
    """The tasks the evaluated NAMM was evolved on (its evolve run's stages, where its folder is still
    there; else the default stages): the others count as held out."""
    from evolution.config import EvolveConfig

    evolved = [read_json(Path(d) / "config.json")["eval"].get("namm") for d in eval_dirs]
    evolved = [Path(e) for e in evolved if e and (Path(e) / "config.json").exists()]
    stages = read_json(evolved[0] / "config.json")["evolve"]["stages"] if evolved else EvolveConfig().stages
    return {t for stage in stages for t in stage}


def expand(root: Path, evals) -> list[Path]:
    """Eval folders relative to ``root``; a pattern such as results/namm/eval/match_* expands in sorted
    order, as a shell does, leaving out a folder a process is still writing (as the results index does)."""
    from amicl.common.runs import writer_pid

    def matches(e):
        return [p for p in sorted(Path(root).glob(e)) if writer_pid(p) is None]

    dirs = [p for e in evals for p in (matches(e) if any(c in e for c in "*?[") else [Path(root) / e])]
    if not dirs:
        raise ValueError(f"no eval folders match {' '.join(evals)}")
    return dirs


def table_lines(root: Path, *evals: str) -> list[str]:
    """``amicl namm table EVALS``'s markdown, recomputed from the eval folders (see ``expand``)."""
    dirs = expand(root, evals)
    return summary_table(dirs, trained_tasks(dirs))[1].rstrip("\n").split("\n")


def group_rows(dirs: list[Path]) -> list[dict]:
    """The rows of ``summary_table`` (same bootstrap, so the same numbers as the eval set's table)."""
    cells, fraction = read_cells(dirs)
    return bootstrap_rows(cells, fraction, trained_tasks(dirs), "namm", 2000, 0)[0]


def _named_sets(root: Path, sets) -> list[tuple[str, list[dict]]]:
    """Eval sets given as ``NAME=EVALS,EVALS...`` ("_" in NAME reads as a space): each name with the rows
    of its ``amicl namm table``."""
    named = []
    for spec in sets:
        name, _, evals = spec.partition("=")
        named.append((name.replace("_", " "), group_rows(expand(root, evals.split(",")))))
    return named


def budgets_lines(root: Path, *sets: str) -> list[str]:
    """Every policy but NAMM at each budget: its mean normalised score over the trained and over the
    held-out tasks with 95% intervals, for one or more eval sets side by side (``NAME=EVALS,EVALS...`` as
    in ``_named_sets``, e.g. one set per base model; each set's numbers are those of its ``amicl namm
    table``). Policies in order of their mean score over the first set's cells."""
    named = [(name, {(r["policy"], f"{r['cache_fraction']:.0%}"): r for r in rows if r["policy"] != "namm"})
             for name, rows in _named_sets(root, sets)]  # fmt: skip
    first = named[0][1]
    score = {p: np.mean([r[g][0] for (q, _), r in first.items() if q == p for g in GROUPS if g in r]) for p, _ in first}
    head = [f"{n}: {g.replace('_', ' ')}" for n, _ in named for g in GROUPS]
    md = ["| policy | cache | " + " | ".join(head) + " |", "|---" * (len(head) + 2) + "|"]
    for policy in sorted(score, key=lambda p: -score[p]):
        for i, cache in enumerate(sorted({c for p, c in first if p == policy}, key=lambda c: float(c[:-1]))):
            cells = [_interval(rows.get((policy, cache), {}).get(g)) for _, rows in named for g in GROUPS]
            md.append(f"| {policy if i == 0 else ''} | {cache} | " + " | ".join(cells) + " |")
    return md


def own_budget_lines(root: Path, *evals: str) -> list[str]:
    """One row per NAMM eval folder, at the budget its NAMM chose: base model, cache kept, and the mean
    normalised score over the trained and the held-out tasks with 95% intervals (as in its table)."""
    md = ["| NAMM eval | base | cache kept | trained | held out |", "|---|---|---|---|---|"]
    for d in expand(root, evals):
        (row,) = [r for r in group_rows([d]) if r["policy"] == "namm"]
        base = Path(read_json(d / "config.json")["eval"]["base"]).name
        cells = " | ".join(_interval(row.get(g)) for g in GROUPS)
        md.append(f"| `{d.relative_to(root).as_posix()}` | {base} | {row['cache_fraction']:.3f} | {cells} |")
    return md


def margins_lines(root: Path, *sets: str) -> list[str]:
    """For each eval set (``NAME=EVALS,EVALS...`` as in ``_named_sets``: NAMM's eval with the policies
    matched to it): NAMM's mean normalised score over the trained and the held-out tasks, and NAMM minus
    each other policy (paired over the same prompts), with 95% intervals; the numbers of each set's
    ``amicl namm table``."""
    head = ["set", "policy", "cache kept", "trained", "held out", "NAMM minus this: trained", "held out"]
    md = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, rows in _named_sets(root, sets):
        rows = sorted(rows, key=lambda r: (r["policy"] != "namm", r["policy"]))
        for i, r in enumerate(rows):
            cells = [_interval(r.get(k)) for k in (*GROUPS, *(f"namm_minus_this_{g}" for g in GROUPS))]
            md.append(
                f"| {name if i == 0 else ''} | {r['policy']} | {r['cache_fraction']:.3f} | " + " | ".join(cells) + " |"
            )
    return md


GROUPS = ("trained", "held_out")


def summary_table(
    eval_dirs: list[Path], trained: set[str], against: str = "namm", n_boot: int = 2000, seed: int = 0
) -> tuple[list[dict], str]:
    """Normalised score per task with percentile-bootstrap 95% intervals (prompts resampled, the
    policy's and the full cache's scores together), means over trained and held-out tasks, and where
    every eval ran on the same prompts, the paired difference of each mean from policy ``against``.
    Returns flat rows (for table.csv; intervals as "low,high") and the markdown table."""
    cells, fraction = read_cells(eval_dirs)
    rows, tasks = bootstrap_rows(cells, fraction, trained, against, n_boot, seed)
    return flatten(rows), markdown(rows, tasks, against)


def flatten(rows: list[dict]) -> list[dict]:
    """CSV rows: each (point, low, high) as its point, plus a ``_ci`` column "low,high"."""
    return [
        {k: (v[0] if isinstance(v, tuple) else v) for k, v in r.items()}
        | {f"{k}_ci": f"{v[1]:.4f},{v[2]:.4f}" for k, v in r.items() if isinstance(v, tuple)}
        for r in rows
    ]


def base_difference(
    evals_a: list[Path], evals_b: list[Path], trained: set[str], n_boot: int = 2000, seed: int = 0
) -> list[dict]:
    """How much more of its full-cache score base B keeps than base A under the same policy and budget:
    per (policy, budget) present in both, B's normalised group score minus A's, with a percentile-
    bootstrap 95% interval that resamples prompt indices jointly for the two bases (their evals draw the
    same prompts). ValueError when the two sets share no (policy, budget) or a task's prompt counts differ.
    Rows: policy, budget, cache fraction on each base, and per group (point, low, high) of A, B and B - A."""
    (cells_a, frac_a), (cells_b, frac_b) = read_cells(evals_a), read_cells(evals_b)
    keys = [k for k in cells_a if k in cells_b]
    if not keys:
        raise ValueError("the two sets of evals share no (policy, budget); run the same policies and budgets")
    rng = np.random.default_rng(seed)
    tasks = sorted({t for k in keys for t in cells_a[k] if t in cells_b[k]}, key=lambda t: (t not in trained, t))
    idx = {}
    for t in tasks:
        n = {len(c[t][0]) for k in keys for c in (cells_a[k], cells_b[k]) if t in c}
        if len(n) != 1:
            raise ValueError(f"{t}: the evals hold different numbers of prompts ({sorted(n)}); use the same --prompts")
        m = n.pop()
        idx[t] = resample_indices(m, n_boot, rng)
    groups = (("trained", [t for t in tasks if t in trained]), ("held_out", [t for t in tasks if t not in trained]))
    rows = []
    for key in keys:
        row = {"policy": key[0], "budget": key[1]}
        row["cache_a"], row["cache_b"] = float(np.mean(frac_a[key])), float(np.mean(frac_b[key]))
        boot, point = {}, {}
        for side, cells in (("a", cells_a), ("b", cells_b)):
            for group, members in groups:
                members = [t for t in members if t in cells[key]]
                if not members:
                    continue
                s = [np.asarray(cells[key][t][0]) for t in members]
                f = [np.asarray(cells[key][t][1]) for t in members]
                point[side, group] = float(np.mean([x.mean() / y.mean() for x, y in zip(s, f)]))
                boot[side, group] = np.mean(
                    [x[idx[t]].mean(1) / y[idx[t]].mean(1) for t, x, y in zip(members, s, f)], 0
                )
        for group, _ in groups:
            if ("a", group) in point and ("b", group) in point:
                for side in ("a", "b"):
                    row[f"{side}_{group}"] = (point[side, group], *percentile_interval(boot[side, group]))
                d = boot["b", group] - boot["a", group]
                row[f"b_minus_a_{group}"] = (point["b", group] - point["a", group], *percentile_interval(d))
        rows.append(row)
    return rows


def base_difference_markdown(rows: list[dict], name_a: str, name_b: str) -> str:
    names = {"a": name_a, "b": name_b, "b_minus_a": f"{name_b} - {name_a}"}
    cols = [f"{s}_{g}" for g in ("trained", "held_out") for s in names]
    head = [f"{names[s]}, {g.replace('_', ' ')}" for g in ("trained", "held_out") for s in names]
    md = [
        f"| policy | budget | cache kept ({name_a} / {name_b}) | " + " | ".join(head) + " |",
        "|---" * (len(cols) + 3) + "|",
    ]
    for r in sorted(rows, key=lambda r: (r["policy"], r["cache_a"])):
        md.append(
            f"| {r['policy']} | {_budget_words(r['budget'])} | {r['cache_a']:.3f} / {r['cache_b']:.3f} | "
            + " | ".join(_interval(r.get(c)) for c in cols)
            + " |"
        )
    return "\n".join(md) + "\n"


def bases_lines(root: Path, csv: str, group: str = "held_out") -> list[str]:
    """From ``amicl namm compare-bases``' bases.csv: base B minus base A per policy and budget (columns: the
    share of the cache kept) on one task group, with the paired bootstrap 95% interval."""
    rows = read_csv(Path(root) / csv)
    caches = sorted({float(r["cache_a"]) for r in rows})
    md = ["| policy | " + " | ".join(f"{c:.0%} of the cache" for c in caches) + " |", "|---" * (len(caches) + 1) + "|"]
    for policy in dict.fromkeys(r["policy"] for r in rows):
        cells = []
        for c in caches:
            r = next((r for r in rows if r["policy"] == policy and float(r["cache_a"]) == c), None)
            if r is None:
                cells.append("")
                continue
            lo, hi = (float(x) for x in r[f"b_minus_a_{group}_ci"].split(","))
            cells.append(f"{float(r[f'b_minus_a_{group}']):+.2f} [{lo:+.2f}, {hi:+.2f}]")
        md.append(f"| {policy} | " + " | ".join(cells) + " |")
    return md


def per_task_lines(root: Path, *folders: str) -> list[str]:
    """One row per folder holding a NAMM's eval.csv (an evolve run's copy, or an eval): the evolution's best
    dev fitness and its generation where its config records them, the mean cache kept, and per task the
    normalised score at the share of the cache kept ("1.01 at 44%")."""
    dirs = expand(root, folders)
    tasks = list(dict.fromkeys(r["task"] for d in dirs for r in read_csv(d / "eval.csv")))
    md = ["| run | best dev fitness (generation) | cache kept (mean) | " + " | ".join(tasks) + " |",
          "|---" * (len(tasks) + 3) + "|"]  # fmt: skip
    for d in dirs:
        cfg = read_json(d / "config.json")
        rows = {r["task"]: r for r in read_csv(d / "eval.csv")}
        dev = f"{cfg['best_dev']:.2f} ({cfg['best_generation']})" if cfg.get("best_dev") is not None else ""
        cache = np.mean([float(r["cache_fraction"]) for r in rows.values()])
        cells = [f"{float(rows[t]['normalised']):.2f} at {float(rows[t]['cache_fraction']):.0%}" if t in rows else ""
                 for t in tasks]  # fmt: skip
        md.append(f"| `{d.relative_to(root).as_posix()}` | {dev} | {cache:.3f} | " + " | ".join(cells) + " |")
    return md


def dev_history_lines(root: Path, run: str) -> list[str]:
    """An evolve run's dev evaluations (history.csv): at each generation where the CMA-ES mean was scored
    on the dev prompts, the stage, that dev fitness and the mean's cache fraction."""
    rows = [r for r in read_csv(Path(root) / run / "history.csv") if r.get("dev_mean_fitness") not in ("", None)]
    if not rows:
        raise ValueError(f"{run}: no dev evaluations in history.csv")
    md = ["| generation | " + " | ".join(r["generation"] for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
    md.append("| stage | " + " | ".join(r["stage"] for r in rows) + " |")
    md.append(
        "| dev fitness of the CMA-ES mean | " + " | ".join(f"{float(r['dev_mean_fitness']):.2f}" for r in rows) + " |"
    )
    md.append("| dev cache fraction | " + " | ".join(f"{float(r['dev_mean_cache_fraction']):.2f}" for r in rows) + " |")
    return md


def base_accuracy_lines(root: Path, run: str, step: str) -> list[str]:
    """A namm-base run's accuracy per task and context length at one evaluated step (its history.csv
    columns ``task@length``); tasks outside the default evolution stages are marked held out."""
    from evolution.config import EvolveConfig

    row = next((r for r in read_csv(Path(root) / run / "history.csv") if int(r["step"]) == int(step)), None)
    if row is None:
        raise ValueError(f"{run}: no evaluation at step {step} in history.csv")
    cols = [c for c in row if "@" in c]
    lengths = list(dict.fromkeys(c.split("@")[1] for c in cols))
    trained = {t for stage in EvolveConfig().stages for t in stage}
    md = ["| task | " + " | ".join(f"{int(n):,} tokens" for n in lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    for task in dict.fromkeys(c.split("@")[0] for c in cols):
        name = task if task in trained else f"{task} (held out)"
        md.append(f"| {name} | " + " | ".join(f"{float(row[f'{task}@{n}']):.2f}" for n in lengths) + " |")
    return md


def curves_lines(root: Path, *runs: str) -> list[str]:
    """Training histories side by side (``LABEL=history.csv``, "_" in LABEL reads as a space): at every
    evaluated step, the accuracy of the history's one ``task@length`` column and the training loss."""
    named = [
        (label.replace("_", " "), read_csv(Path(root) / path)) for label, _, path in (r.partition("=") for r in runs)
    ]
    steps = [r["step"] for r in named[0][1]]
    md = ["| step | " + " | ".join(steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for label, rows in named:
        acc = next(c for c in rows[0] if "@" in c)
        by_step = {r["step"]: r for r in rows}
        cells = [
            f"{float(by_step[s][acc]):.2f} ({float(by_step[s]['train_loss']):.2f})" if s in by_step else ""
            for s in steps
        ]
        md.append(f"| {label}: accuracy (loss) | " + " | ".join(cells) + " |")
    return md


def _per_prompt(d: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """task -> (scores, full-cache scores) per prompt of an eval folder at its one budget."""
    cells, _ = read_cells([d])
    if len(cells) != 1:
        raise ValueError(f"{d} holds {len(cells)} budgets; an evolution comparison takes one budget per eval")
    ((_, per_task),) = cells.items()
    return {t: (np.asarray(s), np.asarray(f)) for t, (s, f) in per_task.items()}


def evolution_draws(sets: dict[str, list[dict]], trained: set[str], n_boot: int = 2000, seed: int = 0):
    """The crossed bootstrap (``stats.crossed_indices``) of policies evaluated on the same prompts, each
    given as a list of per-prompt dicts (``_per_prompt``): several evolutions of a NAMM, or one eval of a
    training-free policy. Per draw each list's members are resampled on their own, and each task's
    prompts are resampled, the same prompts for every policy. A policy's normalised score is the mean
    over its members of each task's ratio, averaged over the task group. Returns
    {name: {group: (point, draws)}}."""
    from amicl.common.stats import resample_indices

    first = next(iter(sets.values()))[0]
    tasks = sorted(first)
    for p in (p for members in sets.values() for p in members):
        if sorted(p) != tasks or any(not np.array_equal(p[t][1], first[t][1]) for t in tasks):
            raise ValueError("the evals do not share their tasks and prompts (full-cache scores differ)")
    rng = np.random.default_rng(seed)
    rows = {name: resample_indices(len(members), n_boot, rng) for name, members in sets.items()}
    ratio = {name: {} for name in sets}
    for t in tasks:
        full = first[t][1]
        cols = resample_indices(len(full), n_boot, rng)
        fb = full[cols].mean(1)
        for name, members in sets.items():
            each = np.stack([p[t][0] for p in members])  # (members, prompts)
            per_member = np.stack([each[:, c].mean(1) for c in cols]) / fb[:, None]  # (n_boot, members)
            draws = per_member[np.arange(n_boot)[:, None], rows[name]].mean(1)
            ratio[name][t] = (float(each.mean(1).mean() / full.mean()), draws)
    out = {}
    for name, per_task in ratio.items():
        out[name] = {}
        for group in GROUPS:
            members = [t for t in tasks if (t in trained) == (group == "trained")]
            if members:
                out[name][group] = (
                    float(np.mean([per_task[t][0] for t in members])),
                    np.mean([per_task[t][1] for t in members], axis=0),
                )
    return out


def _cell(point: float, draws) -> str:
    lo, hi = percentile_interval(draws)
    return f"{point:.2f} [{lo:.2f}, {hi:.2f}]"


def evolutions_lines(root: Path, namm: str, *others: str) -> list[str]:
    """NAMMs of several evolutions at one budget (``namm``: their eval folders, a pattern) against every
    other policy's eval at that budget on the same prompts: the mean over evolutions and each evolution's
    own score, NAMM minus each policy, crossed-bootstrap 95% intervals (evolutions and prompts
    resampled), then NAMM's share of the oracle's gain over Recency and the verdict against KeyDiff on
    the held-out tasks (interval above 0: ahead; below: behind; else not distinguishable)."""
    namm_dirs = expand(root, [namm])
    trained = trained_tasks(namm_dirs)
    evos = [_per_prompt(d) for d in namm_dirs]
    named = {}
    for d in expand(root, others):
        named[read_json(d / "config.json")["eval"]["policy"]] = _per_prompt(d)
    draws = evolution_draws({"namm": evos, **{p: [v] for p, v in named.items()}}, trained)
    groups = [g for g in GROUPS if g in draws["namm"]]
    cell = _cell

    head = [g.replace("_", " ") for g in groups] + [f"NAMM minus this: {g.replace('_', ' ')}" for g in groups]
    md = ["| policy | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    md.append(f"| NAMM, mean of {len(evos)} evolution{'s' * (len(evos) != 1)} | " + " | ".join(cell(*draws["namm"][g]) for g in groups)
              + " |" + " |" * len(groups))  # fmt: skip
    for d, evo in zip(namm_dirs, evos):
        one = evolution_draws({"one": [evo]}, trained)["one"]
        md.append(f"| evolution `{d.name}` | " + " | ".join(cell(*one[g]) for g in groups) + " |" + " |" * len(groups))
    order = sorted(named, key=lambda p: -np.mean([draws[p][g][0] for g in groups]))
    for p in order:
        margins = [cell(draws["namm"][g][0] - draws[p][g][0], draws["namm"][g][1] - draws[p][g][1]) for g in groups]
        md.append(f"| {p} | " + " | ".join(cell(*draws[p][g]) for g in groups) + " | " + " | ".join(margins) + " |")
    if "held_out" in groups:
        md.append("")
        if {"oracle", "recency"} <= set(named):
            (n, nb), (o, ob), (r, rb) = (draws[k]["held_out"] for k in ("namm", "oracle", "recency"))
            share = (nb - rb) / np.where(ob - rb == 0, np.nan, ob - rb)
            lo, hi = percentile_interval(share[np.isfinite(share)])
            md.append(f"NAMM's share of the oracle's gain over Recency, held out: {(n - r) / (o - r):.2f} "
                      f"[{lo:.2f}, {hi:.2f}].")  # fmt: skip
        if "keydiff" in named:
            lo, hi = percentile_interval(draws["namm"]["held_out"][1] - draws["keydiff"]["held_out"][1])
            verdict = "ahead of" if lo > 0 else "behind" if hi < 0 else "not distinguishable from"
            md.append(f"Held out, NAMM is {verdict} KeyDiff at this budget.")
    return md


def variants_lines(root: Path, *sets: str) -> list[str]:
    """Two or more ways of evolving a NAMM (``NAME=PATTERN``: each variant's eval folders, one per
    evolution, at one budget, on the same prompts): each variant's mean over its evolutions and each
    variant minus the first, crossed-bootstrap 95% intervals (each variant's evolutions resampled on
    their own, the prompts shared)."""
    named = {}
    for spec in sets:
        name, _, pattern = spec.partition("=")
        named[name.replace("_", " ")] = expand(root, [pattern])
    trained = trained_tasks(next(iter(named.values())))
    draws = evolution_draws({n: [_per_prompt(d) for d in dirs] for n, dirs in named.items()}, trained)
    first = next(iter(named))
    groups = [g for g in GROUPS if g in draws[first]]
    head = [g.replace("_", " ") for g in groups] + [f"minus {first}: {g.replace('_', ' ')}" for g in groups]
    md = ["| variant | evolutions | " + " | ".join(head) + " |", "|---" * (len(head) + 2) + "|"]
    for n, dirs in named.items():
        cells = [_cell(*draws[n][g]) for g in groups]
        cells += ["" if n == first else _cell(draws[n][g][0] - draws[first][g][0], draws[n][g][1] - draws[first][g][1])
                  for g in groups]  # fmt: skip
        md.append(f"| {n} | {len(dirs)} | " + " | ".join(cells) + " |")
    return md

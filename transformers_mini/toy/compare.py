"""Comparison of stream arms: steps to ICL with bootstrap intervals, paired speedups over ``none``,
and the AMICL memory scored on the very same test sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amicl.common.io import atomic_write_bytes, read_csv, read_json, write_csv, write_json
from transformers_mini.toy.run import Run, load_history, resumable_part, seed_streams, summarise_members


def arm_statistics(steps: dict[str, np.ndarray], cap: float, base: str = "none", seed: int = 0) -> list[dict]:
    """steps: arm -> (S,) steps to threshold per seed (inf = never by ``cap``), seeds aligned across arms.

    Per arm: the median with its bootstrap interval over seeds, and the never-learns rate at ``cap``.
    Against ``base``: every paired estimator of ``amicl.common.stats`` (the median of per-seed savings
    first, then the ratio of medians and of means), seeds resampled jointly for both arms.
    """
    from amicl.common.stats import ESTIMATORS, bootstrap_ci, never_learns, paired_savings

    rows = []
    for arm, x in steps.items():
        x = np.asarray(x, dtype=float)
        never = never_learns(np.isfinite(x) & (x <= cap))
        lo, hi = (bootstrap_ci((x,), np.median, seed=seed)[:2]) if len(x) > 1 else (x[0], x[0])
        row = {"arm": arm, "n_seeds": len(x), "n_reached": len(x) - never["never"], "median_steps": float(np.median(x)),
               "median_ci_low": lo, "median_ci_high": hi, "never_rate": never["rate"],
               "never_low": never["rate_low"], "never_high": never["rate_high"]}  # fmt: skip
        if base in steps and arm != base and len(x) > 1:
            saved = paired_savings(steps[base], x, cap=cap, seed=seed)
            for name in ESTIMATORS:
                row.update({f"{name}_vs_{base}": saved[name], f"{name}_low": saved[f"{name}_low"],
                            f"{name}_high": saved[f"{name}_high"]})  # fmt: skip
        rows.append(row)
    return rows


def memory_on_test_sets(run: Run, a: float = 2.0) -> list[dict]:
    """The AMICL memory (dot, argmax, one step) on each seed's very test sequences."""
    from amicl.memory.hopfield import MemoryConfig, retrieve
    from amicl.task import ICLTask, episodes_from_batch

    rows = []
    for seed in run.seeds:
        s_task, _, s_test = seed_streams(seed)
        task = ICLTask.from_seed(run.task, s_task)
        sets = task.test_sets(run.train.eval_size, np.random.default_rng(s_test))
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3,)))
        row = {"arm": f"amicl-memory (a={a:g})", "seed": seed}
        for name, batch in sets.items():
            ep = episodes_from_batch(batch, task, rng)
            row[f"final_{name}"] = retrieve(ep, MemoryConfig(a=a)).accuracy(ep.target)
        rows.append(row)
    return rows


def join_runs(out: Path, parts: list[Path], claim: bool = True) -> Run:
    """One results folder (config.json, history.csv) holding the members of several runs made on the
    same task and training settings, analysed as one paired comparison: runs of other arms on the same
    seeds (none,V + K,Q), or of the same arms on other seeds (seeds 0-7 + 8-23), or both. Pairing holds
    across runs because a member's init, task and batches depend on its seed only. The members must
    fill the grid arms x seeds; a member present in more than one part is taken from the first.
    ``claim=False``: the caller already holds ``out`` (a grouped compare)."""
    from contextlib import nullcontext

    from amicl.common.runs import claim_run_folder

    if len(parts) < 2:
        raise ValueError("join needs at least two runs")
    resolved = [Path(p).resolve() for p in parts]
    if len(set(resolved)) != len(resolved):
        raise ValueError("join was given the same run twice")

    def pairing(run: Run) -> dict:  # what must agree: all but the step budget, early stop and checkpoint interval
        d = resumable_part(run.to_dict())
        d["train"].pop("checkpoint_every")
        return {k: d[k] for k in ("task", "train")}

    loaded = [load_history(p, "PARTS") for p in parts]
    first = pairing(loaded[0][0])
    for p, (run, _) in zip(parts[1:], loaded[1:]):
        mine = pairing(run)
        for key in ("task", "train"):
            if mine[key] != first[key]:
                raise ValueError(
                    f"{p} differs from {parts[0]} in its {key}; only runs on the same task and "
                    "training settings pair up"
                )
    arms, seeds, history, probes, taken = {}, [], [], [], set()
    for part, (run, hist) in zip(parts, loaded):
        for a, cfg in run.arms.items():
            if arms.setdefault(a, cfg) != cfg:
                raise ValueError(f"arm {a} has different model settings in two of the runs")
        seeds += [s for s in run.seeds if s not in seeds]
        new = {(a, s) for a, s in run.members if (a, s) not in taken}
        taken |= new
        history += [r for r in hist if (r["arm"], int(r["seed"])) in new]
        if (Path(part) / "probes.csv").exists():
            probes += [r for r in read_csv(Path(part) / "probes.csv") if (r["arm"], int(r["seed"])) in new]
    missing = [(a, s) for a in arms for s in seeds if (a, s) not in taken]
    if missing:
        raise ValueError(
            f"the runs do not cover every arm on every seed (missing arm {missing[0][0]} on seed "
            f"{missing[0][1]}, {len(missing)} in all); only a full arms x seeds grid pairs up"
        )
    base = loaded[0][0]
    joined = Run(arms, sorted(seeds), base.task, base.train)
    with claim_run_folder(out, "streams-join") if claim else nullcontext():
        write_csv(Path(out) / "history.csv", history)
        if probes:
            write_csv(Path(out) / "probes.csv", probes)
        write_json(
            Path(out) / "config.json",
            {
                "kind": "streams-join",
                "run": joined.to_dict(),
                "joined_from": [
                    {
                        "path": str(p),
                        "arms": list(run.arms),
                        "seeds": run.seeds,
                        "step": read_json(Path(p) / "config.json").get("step"),
                    }
                    for p, (run, _) in zip(parts, loaded)
                ],
            },
        )
    return joined


def _saving(row: dict, name: str, base: str = "none") -> str:
    """One estimator's saving over ``base`` with its interval, or '-' for the base itself."""
    if f"{name}_vs_{base}" not in row:
        return "-"
    return f"{row[f'{name}_vs_{base}']:+.1%} [{row[f'{name}_low']:+.1%}, {row[f'{name}_high']:+.1%}]"


def censored_times(members: list[dict], arm: str, test_set: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(times, reached, seeds) of ``arm`` on ``test_set``: the step that reached the threshold, or the
    last evaluated step for a run that never did (right-censored). ``members`` may come from
    ``summarise_members`` (None: never reached) or from members.csv (empty or "None")."""
    rows = [r for r in members if r["arm"] == arm]
    reached = np.array([r[f"steps_{test_set}"] not in (None, "", "None") for r in rows])
    times = np.array([r[f"steps_{test_set}"] if ok else r["last_step"] for r, ok in zip(rows, reached)], dtype=float)
    return times, reached, [int(r["seed"]) for r in rows]


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def survival_section(members: list[dict], arms: list[str], base: str = "none") -> tuple[list[str], list[dict]]:
    """Markdown lines and survival.csv rows: Kaplan-Meier medians, log-rank tests, and per seed which arm
    reached the threshold first (a paired sign test that needs no model of censoring)."""
    from amicl.common.stats import km_median, paired_sign_test, stratified_logrank

    lines, rows = (
        [
            "",
            "Censored view (Kaplan-Meier; a run that never reached the threshold is censored at its "
            "last evaluated step, not dropped):",
            "",
            "| test set | arm | reached | KM median | vs none: log-rank p, stratified by seed "
            "| seeds first: arm / none / tie |",
            "|---|---|---|---|---|---|",
        ],
        [],
    )
    for test_set in ("ic", "ic2"):
        t0, e0, seeds0 = censored_times(members, base, test_set) if base in arms else (None, None, None)
        for arm in arms:
            t, e, seeds = censored_times(members, arm, test_set)
            row = {
                "test_set": test_set,
                "arm": arm,
                "n_seeds": len(t),
                "n_reached": int(e.sum()),
                "km_median": km_median(t, e),
            }
            cmp = "- | -"
            if t0 is not None and arm != base:
                if seeds != seeds0:
                    raise ValueError(f"arm {arm} and {base} are not on the same seeds")
                in_arm = np.r_[np.ones(len(t), bool), np.zeros(len(t0), bool)]
                row["logrank_chi2"], row["logrank_p"] = stratified_logrank(
                    np.r_[t, t0], np.r_[e, e0], in_arm, np.r_[seeds, seeds0]
                )
                # +1 where this arm was first: it reached earlier, or reached while the other never did
                mine, theirs = np.where(e, t, np.inf), np.where(e0, t0, np.inf)
                first = (mine < theirs).astype(int) - (mine > theirs)  # both never reached: a tie (0)
                row["first_arm"], row["first_base"], row["sign_p"] = paired_sign_test(first)
                row["ties"] = len(first) - row["first_arm"] - row["first_base"]
                cmp = (
                    f"{_p(row['logrank_p'])} | {row['first_arm']} / {row['first_base']} / {row['ties']} "
                    f"(sign test p {_p(row['sign_p'])})"
                )
            median = f"{row['km_median']:.0f}" if np.isfinite(row["km_median"]) else "not reached"
            lines.append(f"| {test_set} | {arm} | {row['n_reached']}/{row['n_seeds']} | {median} | {cmp} |")
            rows.append(row)
    return lines, rows


def paired_seed_table(members: list[dict], arms: list[str], test_set: str = "ic", base: str = "none") -> list[str]:
    """Per seed: steps to the threshold of every arm ('>N': not reached by step N) and each arm's saving."""
    if base not in arms or len(arms) < 2:
        return []
    data = {a: censored_times(members, a, test_set) for a in arms}
    times = {a: dict(zip(seeds, t)) for a, (t, _, seeds) in data.items()}
    cols = {a: dict(zip(seeds, e)) for a, (_, e, seeds) in data.items()}
    others = [a for a in arms if a != base]
    lines = [
        "",
        f"Per seed, steps to the threshold on {test_set} ('>N': not reached by step N):",
        "",
        "| seed | " + " | ".join(arms) + " | " + " | ".join(f"{a} saved" for a in others) + " |",
        "|---" * (1 + len(arms) + len(others)) + "|",
    ]
    for seed in sorted(times[base]):
        cell = {a: (f"{times[a][seed]:.0f}" if cols[a][seed] else f">{times[a][seed]:.0f}") for a in arms}
        saved = [
            f"{1 - times[a][seed] / times[base][seed]:+.1%}" if cols[a][seed] and cols[base][seed] else "censored"
            for a in others
        ]
        lines.append(f"| {seed} | " + " | ".join(cell[a] for a in arms) + " | " + " | ".join(saved) + " |")
    return lines


COVARIATES = ("init_b1", "init_b2", "init_b3", "init_z3_norm", "init_z3_active", "init_attn_entropy_l1")


def covariate_section(members: list[dict], arms: list[str], base: str = "none", test_set: str = "ic") -> list[str]:
    """Does the initial state predict when ICL appears, and does a stream help slow starters more?
    Spearman's rho of the baseline's steps to the threshold (a censored run ranks last) and of each
    arm's paired saving with every covariate; and the median saving among seeds whose baseline was
    slower or faster than the median baseline seed."""
    from scipy.stats import spearmanr

    if base not in arms or not all(k in members[0] for k in COVARIATES) or len({r["seed"] for r in members}) < 4:
        return []
    t0, e0, seeds = censored_times(members, base, test_set)
    t0 = np.where(e0, t0, np.inf)
    cov = {int(r["seed"]): r for r in members if r["arm"] == base}
    others = [a for a in arms if a != base]
    saving = {}
    for a in others:
        t, e, s = censored_times(members, a, test_set)
        if s != seeds:
            raise ValueError(f"arm {a} and {base} are not on the same seeds")
        with np.errstate(invalid="ignore"):
            saving[a] = np.where(e & e0, 1 - t / np.where(e0, t0, 1), np.nan)
    lines = [
        "",
        f"Initial state against steps to the threshold on {test_set} (Spearman's rho, p; {len(seeds)} seeds):",
        "",
        "| covariate | " + base + " steps | " + " | ".join(f"{a} saving" for a in others) + " |",
        "|---" * (2 + len(others)) + "|",
    ]
    for k in COVARIATES:
        x = np.array([float(cov[seed][k]) for seed in seeds])
        cells = [spearmanr(x, t0)]
        for a in others:
            ok = np.isfinite(saving[a])
            cells.append(spearmanr(x[ok], saving[a][ok]) if ok.sum() >= 4 else None)
        lines.append(
            f"| {k} | " + " | ".join("-" if c is None else f"{c.statistic:+.2f} ({c.pvalue:.2f})" for c in cells) + " |"
        )
    slow = t0 > np.median(t0)
    for a in others:
        ok = np.isfinite(saving[a])
        parts = [
            f"{name} starters {np.median(saving[a][ok & m]):+.1%} (n={int((ok & m).sum())})"
            for name, m in (("slow", slow), ("fast", ~slow))
            if (ok & m).any()
        ]
        lines.append(f"\nMedian saving of {a}, seeds split at the median {base} run: " + ", ".join(parts) + ".")
    return lines


def with_covariates(run: Run, members: list[dict]) -> list[dict]:
    """members with every seed's initial-state covariates (``initial_state``) added to its rows."""
    from transformers_mini.toy.initial_state import initial_covariates

    cov = {seed: initial_covariates(run, seed) for seed in run.seeds}
    return [{**r, **cov[int(r["seed"])]} if r["arm"] in run.arms else r for r in members]


def analyse(out: Path, paper_claim: float = 0.24) -> str:
    """Write members.csv, compare.csv, survival.csv and compare.md into ``out``; returns the markdown."""
    out = Path(out)
    run, history = load_history(out)
    members = summarise_members(history, run.train.threshold)
    members = with_covariates(run, members) + memory_on_test_sets(run)
    write_csv(out / "members.csv", members)
    arms = list(run.arms)
    lines = [
        f"Steps until accuracy first reaches {run.train.threshold} (evaluated every {run.train.eval_every} steps; "
        f"{len(run.seeds)} paired seeds; the cap is {run.train.steps:,} steps, and a run that never reaches the "
        f"threshold by then never learns: it enters the savings at the cap, so its saving is a bound). "
        f"Paper claim for V vs none: {paper_claim:.0%} fewer steps.",
        "",
        "Fewer steps than none, three estimators of the same paired data (95% bootstrap intervals over seeds): "
        "the median of per-seed savings 1 - arm/none (primary), 1 - median(arm)/median(none) and "
        "1 - mean(arm)/mean(none).",
        "",
    ]
    table = []
    for test_set in ("ic", "ic2"):
        steps = {
            a: np.array(
                [
                    np.inf if r[f"steps_{test_set}"] is None else r[f"steps_{test_set}"]
                    for r in members
                    if r["arm"] == a
                ],
                dtype=float,
            )
            for a in arms
        }
        for row in arm_statistics(steps, cap=run.train.steps):
            table.append({"test_set": test_set, **row})
    acc = {}
    for r in members:
        acc.setdefault(r["arm"], []).append(r)
    lines.append(
        "| test set | arm | reached | never learns [95% CI] | median steps [95% CI] | median saving "
        "| ratio of medians | ratio of means |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in table:
        savings = " | ".join(_saving(r, name) for name in ("median_saving", "ratio_of_medians", "ratio_of_means"))
        lines.append(
            f"| {r['test_set']} | {r['arm']} | {r['n_reached']}/{r['n_seeds']} | {r['never_rate']:.0%} "
            f"[{r['never_low']:.0%}, {r['never_high']:.0%}] | {r['median_steps']:.0f} "
            f"[{r['median_ci_low']:.0f}, {r['median_ci_high']:.0f}] | {savings} |"
        )
    sets = [k for k in ("test", "ic", "ic2", "iw") if all(f"final_{k}" in r for r in members)]
    lines += ["", "| arm | " + " | ".join(f"final {k}" for k in sets) + " |", "|---" * (len(sets) + 1) + "|"]
    for arm, rows in acc.items():
        cells = [f"{np.mean([r[f'final_{k}'] for r in rows]):.3f}" for k in sets]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    survival, survival_rows = survival_section(members, arms)
    lines += survival + paired_seed_table(members, arms) + covariate_section(members, arms)
    if (out / "probes.csv").exists():
        from transformers_mini.toy.mechanisms import final_probe_section, mechanism_section, onsets

        probes = read_csv(out / "probes.csv")
        mech = onsets(probes, history)
        write_csv(out / "mechanisms.csv", mech)
        lines += mechanism_section(mech, arms) + final_probe_section(probes, arms)
    md = "\n".join(lines) + "\n"
    write_csv(out / "survival.csv", survival_rows)
    write_csv(out / "compare.csv", table)
    atomic_write_bytes(out / "compare.md", md.encode())
    return md

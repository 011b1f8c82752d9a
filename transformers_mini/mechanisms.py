"""When each mechanism appears relative to the ICL take-off, from probes.csv and history.csv (torch-free).

A mechanism's onset in one member is the first evaluated step at which its probe reaches a level:
half the attention mass on the previous token (``prev_token`` >= 0.5), half the query's layer-2 mass
on the matching labels (``induction`` >= 0.5), layer 2 picking AMICL's key (at the binding weight
layer 1 shows, ``a_gain``) on half the sequences (``amicl_top1_gain`` >= 0.5). The take-off is the
first step at which ic accuracy reaches 0.5, far above chance (1/L) and before the 0.95 that defines
"ICL reached". ``lead`` = take-off - onset: positive when the mechanism came first. A member whose
probe never reaches the level is censored (reported, not dropped).
"""

from __future__ import annotations

import numpy as np

ONSETS = {"prev_token": 0.5, "induction": 0.5, "amicl_top1_gain": 0.5}
TAKEOFF = 0.5


def first_step(rows: list[dict], key: str, level: float) -> int | None:
    """First step (rows in step order) at which ``key`` >= ``level``; None if never."""
    for r in rows:
        if r.get(key) not in (None, "") and float(r[key]) >= level:  # empty: a probe added after this row
            return int(r["step"])
    return None


def onsets(probes: list[dict], history: list[dict]) -> list[dict]:
    """Per (arm, seed): the onset of every mechanism of ``ONSETS``, the take-off and each lead."""
    out = []
    for arm, seed in dict.fromkeys((r["arm"], int(r["seed"])) for r in probes):
        mine = sorted((r for r in probes if r["arm"] == arm and int(r["seed"]) == seed), key=lambda r: int(r["step"]))
        hist = sorted((r for r in history if r["arm"] == arm and int(r["seed"]) == seed), key=lambda r: int(r["step"]))
        row = {"arm": arm, "seed": seed, "first_probe_step": int(mine[0]["step"]), "last_step": int(mine[-1]["step"])}
        row["takeoff"] = first_step(hist, "ic", TAKEOFF)
        for key, level in ONSETS.items():
            row[f"onset_{key}"] = first_step(mine, key, level)
            # already there when the probes began mid-run: the onset is at or before that step
            row[f"onset_{key}_at_first_probe"] = row[f"onset_{key}"] == row["first_probe_step"] > 0
            both = row[f"onset_{key}"] is not None and row["takeoff"] is not None
            row[f"lead_{key}"] = row["takeoff"] - row[f"onset_{key}"] if both else None
        out.append(row)
    return out


def mechanism_section(rows: list[dict], arms: list[str]) -> list[str]:
    """Markdown: per arm, the median onset of each mechanism and its lead over the take-off."""
    lines = [
        "",
        f"Mechanisms and the take-off (ic accuracy >= {TAKEOFF}); onset = first evaluation with "
        + ", ".join(f"{k} >= {v}" for k, v in ONSETS.items())
        + "; lead = take-off - onset (median [min, max] over the members where both happened; "
        "'n' = members with an onset / all). Probes start at the step the run first recorded them.",
        "",
        "| arm | take-off | " + " | ".join(f"{k}: onset (n) | {k}: lead" for k in ONSETS) + " |",
        "|---" * (2 + 2 * len(ONSETS)) + "|",
    ]

    def spread(v: list) -> str:
        v = [x for x in v if x is not None]
        return f"{np.median(v):.0f} [{min(v):.0f}, {max(v):.0f}]" if v else "-"

    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        if not mine:
            continue
        cells = [spread([r["takeoff"] for r in mine])]
        for key in ONSETS:
            on = [r[f"onset_{key}"] for r in mine]
            n = sum(x is not None for x in on)
            cells += [f"{spread(on)} ({n}/{len(mine)})", spread([r[f"lead_{key}"] for r in mine])]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


FINAL = (
    "prev_token",
    "a_fit",
    "a_gain",
    "induction",
    "amicl_corr_gain",
    "amicl_top1_gain",
    "amicl_top1_a2",
    "beta_eff",
    "k90",
)


def final_probe_section(probes: list[dict], arms: list[str]) -> list[str]:
    """Markdown: each arm's probes at every member's last evaluation, median [min, max] over seeds."""
    lines = [
        "",
        "Probes at each member's last evaluation, median [min, max] over seeds:",
        "",
        "| arm | " + " | ".join(FINAL) + " |",
        "|---" * (1 + len(FINAL)) + "|",
    ]
    for arm in arms:
        last = {}
        for r in probes:
            if r["arm"] == arm and int(r["step"]) >= int(last.get(int(r["seed"]), {"step": -1})["step"]):
                last[int(r["seed"])] = r
        if last:
            cells = []
            for k in FINAL:
                v = np.array([float(r[k]) for r in last.values() if r.get(k) not in (None, "")])
                cells.append(f"{np.median(v):.2f} [{v.min():.2f}, {v.max():.2f}]" if len(v) else "-")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines

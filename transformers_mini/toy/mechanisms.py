"""When each mechanism appears relative to the ICL take-off, from probes.csv and history.csv (torch-free).

The probes reach very different levels (layer 1's mass on t-1 ends near 0.5, the effective inverse
temperature near 3.5), so a mechanism's onset in one member is measured on its own scale: the first
evaluated step at which the probe has covered a share (``RISE``: 10% for the start, 50% for the
midpoint) of its change from step 0 to the member's last evaluation. The take-off is the first step at
which ic accuracy reaches 0.5, far above chance (1/L) and the 0.25 plateau of copying any label in
context, and before the 0.95 that defines "ICL reached". ``lead`` = take-off - onset: positive when the
mechanism moved first. Only members probed from step 0 that reached the threshold have onsets (their
probes rose to a trained value); the others are counted in 'n', not dropped silently.
"""

from __future__ import annotations

import numpy as np

from transformers_mini.toy import probe_specs

RISE = {"start": 0.1, "mid": 0.5}
TAKEOFF = 0.5


def first_step(rows: list[dict], key: str, level: float) -> int | None:
    """First step (rows in step order) at which ``key`` >= ``level``; None if never."""
    for r in rows:
        if r.get(key) not in (None, "") and float(r[key]) >= level:  # empty: a probe added after this row
            return int(r["step"])
    return None


def rise_step(rows: list[dict], key: str, share: float) -> int | None:
    """First step (rows in step order, the first at step 0) at which ``key`` has covered ``share`` of its
    change from the first row to the last; None if the probe is missing or did not change."""
    v = [float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows]
    if not rows or np.isnan(v[0]) or np.isnan(v[-1]) or v[-1] == v[0]:
        return None
    for r, x in zip(rows, v):
        if (x - v[0]) / (v[-1] - v[0]) >= share - 1e-9:  # float rounding of an exact share
            return int(r["step"])
    return None


def onsets(probes: list[dict], history: list[dict], threshold: float = 0.95) -> list[dict]:
    """Per (arm, seed): the take-off, and for a member probed from step 0 whose ic reached ``threshold``,
    the start and midpoint of every probe of ``probe_specs.onset_names()`` and their leads over the take-off."""
    out = []
    for arm, seed in dict.fromkeys((r["arm"], int(r["seed"])) for r in probes):
        mine = sorted((r for r in probes if r["arm"] == arm and int(r["seed"]) == seed), key=lambda r: int(r["step"]))
        hist = sorted((r for r in history if r["arm"] == arm and int(r["seed"]) == seed), key=lambda r: int(r["step"]))
        row = {"arm": arm, "seed": seed, "first_probe_step": int(mine[0]["step"]), "last_step": int(mine[-1]["step"])}
        row["takeoff"] = first_step(hist, "ic", TAKEOFF)
        row["complete"] = row["first_probe_step"] == 0 and first_step(hist, "ic", threshold) is not None
        for key in probe_specs.onset_names():
            for name, share in RISE.items():
                on = rise_step(mine, key, share) if row["complete"] else None
                row[f"{name}_{key}"] = on
                both = on is not None and row["takeoff"] is not None
                row[f"lead_{name}_{key}"] = row["takeoff"] - on if both else None
        out.append(row)
    return out


def mechanism_section(rows: list[dict], arms: list[str]) -> list[str]:
    """Markdown: per arm, the median start and midpoint of each probe's rise and their lead over the
    take-off, over the members probed from step 0 that reached the threshold."""
    lines = [
        "",
        f"Mechanisms and the take-off (first ic accuracy >= {TAKEOFF}): start / midpoint = first evaluation "
        "at which a probe covered " + " / ".join(f"{v:.0%}" for v in RISE.values()) + " of its change from "
        "step 0 to the member's last evaluation; lead = take-off - start (median [min, max]; positive: the "
        "probe moved first). 'n' = members probed from step 0 that reached the threshold / all members.",
        "",
        "| arm | n | take-off | "
        + " | ".join(f"{k}: start | {k}: midpoint | {k}: lead" for k in probe_specs.onset_names())
        + " |",
        "|---" * (3 + 3 * len(probe_specs.onset_names())) + "|",
    ]

    def spread(v: list) -> str:
        v = [x for x in v if x is not None]
        return f"{np.median(v):.0f} [{min(v):.0f}, {max(v):.0f}]" if v else "-"

    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        done = [r for r in mine if r["complete"]]
        if not mine:
            continue
        cells = [f"{len(done)}/{len(mine)}", spread([r["takeoff"] for r in done])]
        for key in probe_specs.onset_names():
            cells += [spread([r[f"start_{key}"] for r in done]), spread([r[f"mid_{key}"] for r in done])]
            cells.append(spread([r[f"lead_start_{key}"] for r in done]))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def final_probe_section(probes: list[dict], arms: list[str]) -> list[str]:
    """Markdown: each arm's probes at every member's last evaluation, median [min, max] over seeds."""
    lines = [
        "",
        "Probes at each member's last evaluation, median [min, max] over seeds:",
        "",
        "| arm | " + " | ".join(probe_specs.final_names()) + " |",
        "|---" * (1 + len(probe_specs.final_names())) + "|",
    ]
    for arm in arms:
        last = {}
        for r in probes:
            if r["arm"] == arm and int(r["step"]) >= int(last.get(int(r["seed"]), {"step": -1})["step"]):
                last[int(r["seed"])] = r
        if last:
            cells = []
            for k in probe_specs.final_names():
                v = np.array([float(r[k]) for r in last.values() if r.get(k) not in (None, "")])
                cells.append(f"{np.median(v):.2f} [{v.min():.2f}, {v.max():.2f}]" if len(v) else "-")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines

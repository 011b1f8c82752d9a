"""The toy's probes, registered once: every table, figure and onset analysis iterates over ``PROBES``.

A probe is described by its name (a column of probes.csv), a panel title (drawn in the probe figure
when set), whether its onset is measured against the ICL take-off, and whether it is in the table of
last evaluations. The built-in probes are computed together by ``probes.probe_model`` (they share the
forward pass); a probe registered with ``compute`` is computed from that pass's context (``attn1``,
``attn2``: (E, S, T, T) attention of layers 1 and 2; ``z``: (E, S, T) layer 2's logits at the query;
``x``: (E, S, T, d) inputs; ``classes``; ``model``) and returns one value per member, (E,). So a new
probe is one ``register`` call. Torch-free: the tables and figures read this without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Probe:
    name: str
    panel: str = ""  # title of its panel in the probe figure; not drawn when empty
    onset: bool = False  # start, midpoint and lead against the take-off (mechanisms.onsets)
    final: bool = False  # a column of the table at each member's last evaluation
    compute: Callable | None = None  # context -> (E,) values; None for the built-ins of probe_model


PROBES: list[Probe] = [
    Probe("prev_token", "layer 1: mass on t-1", onset=True, final=True),
    Probe("a_fit", final=True),
    Probe("a_fit_r2"),
    Probe("a_gain", "layer 1: binding weight a (gain)", final=True),
    Probe("induction", "layer 2: mass on matching labels", onset=True, final=True),
    Probe("amicl_corr"),
    Probe("amicl_top1"),
    Probe("amicl_corr_gain", "layer 2 logits vs AMICL scores (r)", final=True),
    Probe("amicl_top1_gain", final=True),
    Probe("amicl_corr_a2"),
    Probe("amicl_top1_a2", "layer 2 picks AMICL's key (a = 2)", onset=True, final=True),
    Probe("beta_eff", "effective inverse temperature", onset=True, final=True),
    Probe("k90", "layer 2: keys holding 90%", final=True),
    Probe("q_comp"),
    Probe("k_comp"),
    Probe("v_comp"),
]


def register(probe: Probe) -> Probe:
    """Add a probe (with its ``compute``) to every table, figure and onset analysis."""
    if any(p.name == probe.name for p in PROBES):
        raise ValueError(f"a probe named {probe.name!r} is registered already")
    if probe.compute is None:
        raise ValueError(f"probe {probe.name!r} needs a compute function (the built-ins live in probe_model)")
    PROBES.append(probe)
    return probe


def names() -> tuple[str, ...]:
    return tuple(p.name for p in PROBES)


def onset_names() -> tuple[str, ...]:
    return tuple(p.name for p in PROBES if p.onset)


def final_names() -> tuple[str, ...]:
    return tuple(p.name for p in PROBES if p.final)


def panels() -> dict[str, str]:
    """The probe figure's panels: ic accuracy first, then every probe with a panel title."""
    return {"ic": "ic accuracy", **{p.name: p.panel for p in PROBES if p.panel}}

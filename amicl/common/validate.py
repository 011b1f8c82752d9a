"""Input checks shared by every room: one-line ``ValueError`` messages naming the parameter.

The CLI turns these messages into ``click.BadParameter`` (exit code 2), so they must read well alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Iterable


class RunStopped(RuntimeError):
    """A long run stopped on purpose (e.g. a diverging loss); the CLI prints it in one line, exit 1."""


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` if it is not an integer in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not _is_integral(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name} must be in {_range(lo, hi)}, got {value}")
    return value


def check_float(
    name: str,
    value,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Return ``value`` as a finite float, or raise ``ValueError`` if it is outside the interval."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        raise ValueError(f"{name} must be in {_range(lo, hi, lo_open, hi_open)}, got {value}")
    return value


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def _is_integral(value) -> bool:
    try:
        return float(value).is_integer() and not isinstance(value, str)
    except (TypeError, ValueError):
        return False


def _range(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


class Config:
    """Base of the package's frozen config dataclasses: ``to_dict`` (for config.json and checkpoints) and
    ``from_dict`` (refusing unknown fields) written once, so a config states only its fields and checks.
    A config whose fields need converting for JSON overrides ``to_dict``."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return config_from_dict(cls, d)


def config_from_dict(cls, d: dict):
    """Build the frozen config ``cls`` from a dict (e.g. config.json), refusing unknown fields."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**d)

"""Result files: atomic writes of config.json, CSV, .npz, .npy, figures and torch checkpoints, with run
metadata, and reads that turn a damaged file into one clear ``DamagedFile`` error.

Every write goes to a temporary file in the target folder and is moved into place with
``os.replace``, so a killed run never leaves a half-written result (DESIGN.md, "Results"). torch is
imported inside the torch helpers only: this module stays torch-free.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np


class WriteFailed(ValueError):
    """A result that could not be written (no space, no permission, a file where a folder should be);
    the file it would have replaced is untouched."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``; returns the path. A write that
    fails (a full disk, a read-only folder) raises ``WriteFailed`` naming the path and leaves the old
    file in place."""
    path = Path(path)
    try:
        return _write(path, data)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise WriteFailed(f"cannot write {path}: {why}; the previous file there, if any, is intact") from None


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give results the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


class DamagedFile(ValueError):
    """A result or checkpoint file that exists but cannot be read (truncated, empty, foreign bytes)."""

    def __init__(self, path, exc: BaseException | None = None, hint: str = ""):
        why = f" ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'no detail'})" if exc else ""
        hint = hint or "restore it from a copy, or start the run again in a new --out"
        super().__init__(f"{path} is damaged or truncated{why}; {hint}")


def read_json(path) -> dict:
    """The JSON object in ``path``; ``DamagedFile`` if it does not parse (``FileNotFoundError`` if absent)."""
    with open(path) as f:
        try:
            obj = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DamagedFile(path, exc) from None
    if not isinstance(obj, dict):
        raise DamagedFile(path, hint="it does not hold a JSON object")
    return obj


def write_csv(path, rows: list[dict]) -> Path:
    """Tidy CSV, one row per dict; columns in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_bytes(path, buf.getvalue().encode())


def read_csv(path, columns: tuple[str, ...] = ()) -> list[dict]:
    """The rows of a CSV this package wrote (rectangular, UTF-8). ``DamagedFile`` for a file that is not
    such a table (binary bytes, a row cut short or too long) or that lacks one of ``columns``;
    ``FileNotFoundError`` if absent."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DamagedFile(path, exc) from None
    for i, row in enumerate(rows):
        if None in row or None in row.values():
            raise DamagedFile(path, hint=f"row {i + 2} has {'more' if None in row else 'fewer'} fields than the header")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DamagedFile(path, hint=f"it has no {missing[0]!r} column")
    return rows


def write_npz(path, **arrays) -> Path:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def write_npy(path, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, array)
    return atomic_write_bytes(path, buf.getvalue())


def save_figure(fig, out, name: str, formats=("png", "pdf")) -> list[Path]:
    """``out/name.<fmt>`` for every format, each written atomically; returns the paths."""
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight")
        paths.append(atomic_write_bytes(Path(out) / f"{name}.{fmt}", buf.getvalue()))
    return paths


DIGEST = "content_sha256"  # the key under which a checkpoint dict carries the digest of its own content


def content_digest(obj) -> str:
    """sha256 of a checkpoint's content: every tensor's and array's dtype, shape and bytes, and every other
    leaf's repr, in order. torch.load does not check its archive's CRCs, so a changed byte in a weight
    would otherwise load silently."""
    import torch

    h = hashlib.sha256()

    def walk(x, key: str) -> None:
        h.update(key.encode())
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().contiguous()
            h.update(f"{x.dtype}{tuple(x.shape)}".encode())
            h.update(x.view(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, np.ndarray):
            h.update(f"{x.dtype}{x.shape}".encode() + np.ascontiguousarray(x).tobytes())
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{key}/{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{key}[{i}]")
        else:
            h.update(repr(x).encode())

    walk(obj, "")
    return h.hexdigest()


def save_torch(path, obj) -> Path:
    """``torch.save`` through ``atomic_write_bytes``; a dict carries the digest of its content (``DIGEST``)."""
    import torch

    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != DIGEST}
        obj[DIGEST] = content_digest(obj)
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_torch(path, map_location=None):
    """``torch.load`` of a checkpoint this package wrote; a damaged file (unreadable, or whose content no
    longer matches its digest) raises ``DamagedFile``. The digest is checked and removed."""
    import torch

    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated zip, random bytes, empty file: all unpickling/zip errors
        raise DamagedFile(path, exc) from None
    if isinstance(obj, dict) and DIGEST in obj:
        digest = obj.pop(DIGEST)
        if content_digest(obj) != digest:
            raise DamagedFile(path, hint="its content no longer matches the digest written with it (a changed byte)")
    return obj


def save_pickle(path, obj) -> Path:
    """``pickle.dumps`` through ``atomic_write_bytes``."""
    import pickle

    return atomic_write_bytes(path, pickle.dumps(obj))


def load_pickle(path):
    """A pickle this package wrote; a damaged file raises ``DamagedFile``."""
    import pickle

    with open(path, "rb") as f:
        try:
            return pickle.load(f)
        except Exception as exc:
            raise DamagedFile(path, exc) from None


# Taken at import, i.e. when this process started: runs that rewrite config.json at every checkpoint
# must not report their last checkpoint as their start.
_PROCESS_STARTED = time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_metadata() -> dict:
    """Versions, git SHA, host and this process's start time, stored in every config.json."""
    versions = {}
    for pkg in ("amicl", "numpy", "scipy", "numba", "torch", "cma", "click"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_sha": _git_sha(),
        "started": _PROCESS_STARTED,
        "argv": sys.argv,
    }


SESSION_KEYS = ("argv", "git_sha", "started", "version")


def write_run_config(path, fields: dict) -> Path:
    """Write a run's config.json: ``fields`` and this process's ``run_metadata()``, plus ``sessions``, the
    command, commit, start time and amicl version of every process that has worked on the run, oldest first (a resumed
    run keeps those of the config.json already at ``path``; one from before sessions were recorded counts
    as one session)."""
    meta = run_metadata()
    mine = session_of(meta)
    sessions = []
    if Path(path).exists():
        try:
            old = read_json(path)
        except DamagedFile:
            old = {}
        sessions = old.get("sessions") or ([session_of(old)] if "argv" in old else [])
    if not sessions or sessions[-1] != mine:
        sessions = [*sessions, mine]
    return write_json(path, {**fields, **meta, "sessions": sessions})


def session_of(meta: dict) -> dict:
    """The session record (command, commit, start, amicl version) of a ``run_metadata()`` dict."""
    return {**{k: meta.get(k) for k in SESSION_KEYS[:3]}, "version": (meta.get("versions") or {}).get("amicl")}


@functools.cache
def _git_sha() -> str | None:
    """The commit checked out when this process first asked: read once, so that a commit made while a run
    trains does not split the run's one session into several in its config.json."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")

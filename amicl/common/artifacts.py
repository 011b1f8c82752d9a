"""Small trained artifacts shipped with the package, loadable by name: ``--base builtin:namm-base``.

Each artifact is a run folder (config.json naming its kind, plus the files its loader reads) under
``amicl/artifacts/NAME/``. ``amicl/artifacts/manifest.json`` lists, per artifact, every file's bytes and
sha256, the command and the commit that made it; a file that does not match is refused in one line.
``amicl artifacts add`` copies a finished run in and records it; ``amicl artifacts list`` shows them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from amicl.common.io import DamagedFile, read_json, session_of, write_json

PREFIX = "builtin:"
ROOT = Path(__file__).resolve().parents[1] / "artifacts"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(root: Path | None = None) -> dict:
    """name -> entry of every artifact shipped in this release."""
    path = (root or ROOT) / "manifest.json"
    return read_json(path)["artifacts"] if path.exists() else {}


def pending(root: Path | None = None) -> dict:
    """name -> entry of artifacts recorded but not shipped in this release, each with ``why``."""
    path = (root or ROOT) / "manifest.json"
    return read_json(path).get("pending", {}) if path.exists() else {}


def _write_manifest(root: Path, entries: dict, waiting: dict) -> None:
    write_json(root / "manifest.json", {"artifacts": entries, **({"pending": waiting} if waiting else {})})


def resolve(spec, root: Path | None = None) -> Path:
    """``builtin:NAME`` as the checked folder of that artifact; any other path as given."""
    text = str(spec)
    if not text.startswith(PREFIX):
        return Path(spec)
    name, root = text[len(PREFIX) :], root or ROOT
    entries = manifest(root)
    if name in pending(root):
        raise ValueError(f"builtin:{name} is not shipped in this release: {pending(root)[name]['why']}")
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none are installed"
        raise ValueError(f"no built-in artifact {name!r}; available: {known}")
    folder = root / name
    for file, info in entries[name]["files"].items():
        path = folder / file
        if not path.exists() or sha256(path) != info["sha256"]:
            raise DamagedFile(path, hint=f"it does not match the manifest of built-in artifact {name}: reinstall amicl")
    return folder


RESUME_ONLY = ("opt", "rng", "engine")  # checkpoint entries only a resumed run reads (optimiser, RNG, CMA-ES)


def ship(src: Path, dst: Path) -> None:
    """Copy one file of a run into an artifact; a torch or pickle checkpoint goes without the state only
    resuming reads (an artifact is read, never trained on): two thirds of an Adam-trained model's bytes,
    nearly all of an evolution's, whose CMA-ES state holds a covariance matrix."""
    from amicl.common.io import load_pickle, load_torch, save_pickle, save_torch

    load, save = {".pt": (load_torch, save_torch), ".pkl": (load_pickle, save_pickle)}.get(src.suffix, (None, None))
    if load is None:
        shutil.copyfile(src, dst)
        return
    state = load(src)
    if isinstance(state, dict):
        state = {k: v for k, v in state.items() if k not in RESUME_ONLY}
    save(dst, state)


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_name(name: str) -> str:
    """An artifact name: a plain word of letters, digits, '-' and '_' (at most 64), so a folder of its own."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"artifact names are plain words (letters, digits, '-', '_'; at most 64), got {name!r}")
    return name


def relative_command(argv: list[str]) -> str | None:
    """A run's command as a user would retype it: ``amicl`` for the executable and every absolute path
    relative to the run's own ``--out`` folder (so no machine's paths are recorded)."""
    if not argv:
        return None
    args = list(argv[1:])
    out = args[args.index("--out") + 1] if "--out" in args[:-1] else None
    if out is not None:
        args = [os.path.relpath(a, out) if os.path.isabs(a) else a for a in args]
    return " ".join(["amicl", *args])


def add(name: str, run: Path, files: list[str], root: Path | None = None) -> dict:
    """Copy ``files`` of the finished run folder ``run`` into the new artifact ``name`` and record them.

    Refuses (``ValueError``) a name that is not a plain word or that is taken (built-in artifacts are
    never overwritten), and a file that is not a plain file name inside ``run``.
    """
    run, root = Path(run), root or ROOT
    check_name(name)
    entries = manifest(root)
    if name in entries or ((root / name).exists() and name not in pending(root)):
        raise ValueError(f"builtin:{name} already exists; artifacts are never overwritten, choose another name")
    files = list(dict.fromkeys(["config.json", *files]))
    for f in files:
        if Path(f).name != f or f.startswith("."):
            raise ValueError(f"--files names files inside the run folder, got {f!r}")
    missing = [f for f in files if not (run / f).is_file()]
    if missing:
        raise ValueError(f"{run} has no {missing[0]}")
    cfg = read_json(run / "config.json")
    entry = {
        "kind": cfg.get("kind"),
        "command": relative_command(cfg.get("argv", [])),
        "commit": cfg.get("git_sha"),
        "version": (cfg.get("versions") or {}).get("amicl"),
        "sessions": [  # every command that worked on the run (a resumed run has several), oldest first
            {"command": relative_command(s.get("argv") or []), "commit": s.get("git_sha"), "version": s.get("version")}
            for s in cfg.get("sessions") or [session_of(cfg)]
        ],
        "files": {},
    }
    folder = root / name
    folder.mkdir(parents=True, exist_ok=name in pending(root))
    for f in files:
        ship(run / f, folder / f)
        entry["files"][f] = {"bytes": (folder / f).stat().st_size, "sha256": sha256(folder / f)}
    entries[name] = entry
    waiting = pending(root)
    waiting.pop(name, None)  # a pending artifact becomes a shipped one
    _write_manifest(root, entries, waiting)
    return entry

"""Small trained artifacts shipped with the package, loadable by name: ``--base builtin:namm-base``.

Each artifact is a run folder (config.json naming its kind, plus the files its loader reads) under
``amicl/artifacts/NAME/``. ``amicl/artifacts/manifest.json`` lists, per artifact, every file's bytes and
sha256, the command and the commit that made it; a file that does not match is refused in one line.
``amicl artifacts add`` copies a finished run in and records it; ``amicl artifacts list`` shows them.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from amicl.common.io import DamagedFile, read_json, write_json

PREFIX = "builtin:"
ROOT = Path(__file__).resolve().parents[1] / "artifacts"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(root: Path | None = None) -> dict:
    path = (root or ROOT) / "manifest.json"
    return read_json(path)["artifacts"] if path.exists() else {}


def resolve(spec, root: Path | None = None) -> Path:
    """``builtin:NAME`` as the checked folder of that artifact; any other path as given."""
    text = str(spec)
    if not text.startswith(PREFIX):
        return Path(spec)
    name, root = text[len(PREFIX) :], root or ROOT
    entries = manifest(root)
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


def add(name: str, run: Path, files: list[str], root: Path | None = None) -> dict:
    """Copy ``files`` of the finished run folder ``run`` into the artifact ``name`` and record them."""
    run, root = Path(run), root or ROOT
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"artifact names are plain words, got {name!r}")
    if "config.json" not in files:
        files = ["config.json", *files]
    missing = [f for f in files if not (run / f).is_file()]
    if missing:
        raise ValueError(f"{run} has no {missing[0]}")
    cfg = read_json(run / "config.json")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    entry = {
        "kind": cfg.get("kind"),
        "command": " ".join(cfg.get("argv", [])) or None,
        "commit": cfg.get("git_sha"),
        "files": {},
    }
    for f in files:
        ship(run / f, folder / f)
        entry["files"][f] = {"bytes": (folder / f).stat().st_size, "sha256": sha256(folder / f)}
    entries = manifest(root)
    entries[name] = entry
    write_json(root / "manifest.json", {"artifacts": entries})
    return entry

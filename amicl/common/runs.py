"""Run folders: what kind of run a folder holds, who is writing it, and the loop every long run shares.

Every run folder's config.json names its ``kind`` (one of ``KINDS``). A command that writes a run
claims its folder first (``claim_run_folder``): the folder must be creatable and writable, must not
hold a run of another kind, must not be written by another live process (an exclusive ``flock`` on
``.lock``, which the kernel drops when its process dies, so a killed run's lock is never stale), and
must hold a run of the same kind only when resuming. Claiming also removes the temporary files a
killed atomic write can leave behind. A command that reads a run checks its kind (``expect_run``)
and names what it expected. Every refusal is a ``RunFolderError``: one line, exit code 2 at the CLI.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from amicl.common.io import read_json

# kind -> what it is, for messages and the README
KINDS = {
    "memory-run": "one setting of the AMICL memory (amicl memory run --out)",
    "memory-sweep": "a sweep of the AMICL memory (amicl memory sweep)",
    "memory-matrices": "score matrices of one episode (amicl memory matrices)",
    "amicl-reproduction": "the AMICL notebook reproduction (amicl reproduce amicl)",
    "streams": "a residual-stream training run (amicl transformer train|compare)",
    "streams-join": "stream runs joined into one comparison (amicl transformer join)",
    "streams-eval": "a trained streams run measured again (amicl transformer evaluate)",
    "streams-interventions": "ablations and AMICL transplants on a trained streams run (amicl transformer intervene)",
    "report": "every experiment and the report of amicl reproduce all",
    "theory-phase": "theory vs network over a grid of task parameters (amicl transformer phase)",
    "lm": "a language model trained on stories (amicl lm train)",
    "lm-ioi": "an IOI evaluation of language models (amicl lm ioi)",
    "lm-world": "a description of the story world a language model trains on (amicl lm world)",
    "lm-dose": "IOI of language models against the IOI rate of their stories (amicl lm dose)",
    "lm-isoloss": "tokens each arm needs to reach the same validation loss (amicl lm isoloss)",
    "lm-heads": "IOI effect of mean-ablating each head and stream term of language models (amicl lm heads)",
    "namm-base": "a NAMM base model (amicl namm train-base)",
    "namm-evolve": "a NAMM evolution (amicl namm evolve)",
    "namm-eval": "a memory-policy evaluation (amicl namm eval)",
}
LOCK = ".lock"


class RunFolderError(ValueError):
    """A folder that cannot be used as asked: wrong kind, busy, not writable, or missing its run."""


def _legacy_kind(cfg: dict) -> str | None:
    """The kind of a config.json written before folders named it (committed results)."""
    if "joined_from" in cfg:
        return "streams-join"
    for key, kind in (
        ("run", "streams"),
        ("base", "namm-base"),
        ("evolve", "namm-evolve"),
        ("eval", "namm-eval"),
        ("spec", "memory-sweep"),
        ("matrices", "memory-matrices"),
    ):
        if key in cfg:
            return kind
    return None


def run_kind(folder) -> str | None:
    """The kind recorded in ``folder/config.json``; None when there is no config.json."""
    path = Path(folder) / "config.json"
    if not path.exists():
        return None
    cfg = read_json(path)
    return cfg.get("kind") or _legacy_kind(cfg)


def writer_pid(folder) -> int | None:
    """The pid of a live process holding ``folder``'s lock, else None (no lock, or its holder died)."""
    path = Path(folder) / LOCK
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = path.read_text().strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)  # closing drops the probe's shared lock too
    return None


def expect_run(folder, kinds: str | tuple[str, ...], option: str) -> Path:
    """``folder`` as a finished or checkpointed run of one of ``kinds``, or a one-line ``RunFolderError``."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    folder = Path(folder)
    want = " or ".join(kinds)
    if not folder.is_dir():
        raise RunFolderError(f"{option}: {folder} is not a folder; expected a {want} run")
    kind = run_kind(folder)
    if kind is None:
        raise RunFolderError(f"{option}: {folder} holds no run (no config.json); expected a {want} run")
    if kind not in kinds:
        raise RunFolderError(f"{option}: {folder} holds a {kind} run; expected a {want} run")
    pid = writer_pid(folder)
    if pid is not None and pid != os.getpid():
        raise RunFolderError(f"{option}: {folder} is being written by process {pid}; wait for it to finish")
    return folder


def expect_runs(folders, kinds: str | tuple[str, ...], option: str) -> list[Path]:
    """``expect_run`` for each of several runs a reader combines, refusing one given twice (its rows would
    count twice and its intervals come out too narrow)."""
    runs = [expect_run(f, kinds, option) for f in folders]
    seen: dict[Path, Path] = {}
    for run in runs:
        if run.resolve() in seen:
            raise RunFolderError(f"{option}: {run} is given twice (as {seen[run.resolve()]}); give each run once")
        seen[run.resolve()] = run
    return runs


class RunFolder:
    """A claimed run folder: holds the exclusive lock until ``release()`` (or the process ends)."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd
        self.resume = False  # set on claiming: a checkpoint is there and --resume asked to continue it

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock; the lock file may stay, it means nothing unlocked
            self._fd = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim_run_folder(out, kind: str, resume: bool = False, marker: str = "config.json") -> RunFolder:
    """Make ``out`` this process's run folder of ``kind`` before any work is done.

    ``marker`` is the file a resumable run needs (its checkpoint). Refuses (``RunFolderError``): a path
    that cannot be created or written; a folder another live process writes; a run of another kind; a
    checkpointed run of this kind unless ``resume``; a non-empty folder that holds no run. A run of this
    kind stopped before its first checkpoint holds no work: a rerun starts it afresh, with or without
    ``resume`` (``RunFolder.resume`` says whether there is a checkpoint to continue). Removes stray
    ``.*.tmp`` files of killed atomic writes.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunFolderError(f"--out {out}: cannot create or write there ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = (out / LOCK).read_text().strip() or "?"
        raise RunFolderError(
            f"--out {out} is being written by process {pid}; wait for it or choose another --out"
        ) from None
    folder = RunFolder(out, fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        folder.resume = _check_contents(out, kind, resume, marker)
    except BaseException:
        folder.release()
        raise
    for stray in out.glob(".*.tmp"):  # we hold the lock: no live writer owns these
        stray.unlink(missing_ok=True)
    return folder


def _check_contents(out: Path, kind: str, resume: bool, marker: str) -> bool:
    """Refuse what ``claim_run_folder`` refuses; True when there is a checkpoint to resume."""
    existing = run_kind(out)
    if existing is not None and existing != kind:
        raise RunFolderError(f"--out {out} holds a {existing} run, not a {kind} run; choose another --out")
    has_marker = (out / marker).exists()
    if marker != "config.json" and existing == kind and not has_marker:
        return False  # stopped before its first checkpoint: nothing to lose, start afresh
    if resume and not has_marker:
        raise RunFolderError(f"--resume: no {marker} in {out}")
    if not resume and (existing is not None or has_marker):
        hint = (
            "pass --resume to continue it or choose another --out"
            if marker != "config.json"
            else "choose another --out (or delete it)"
        )
        raise RunFolderError(f"--out {out} already holds a {existing or kind} run; {hint}")
    if existing is None and not has_marker and any(not p.name.startswith(".") for p in out.iterdir()):
        raise RunFolderError(f"--out {out} is not empty and holds no run; choose a new or empty folder")
    return resume


def drive(
    step: Callable[[], dict | None],
    done: Callable[[], bool],
    *,
    total: int,
    initial: int = 0,
    desc: str = "",
    save: Callable[[], None] | None = None,
    progress: bool | None = None,
) -> None:
    """The loop every long run shares: ``step()`` until ``done()``, with a progress bar on stderr.

    ``step`` returns None or a dict with optional keys ``postfix`` (shown on the bar), ``save`` (call
    ``save()`` now: a checkpoint) and ``stop`` (leave the loop early). The bar shows only on a terminal
    unless ``progress`` says otherwise.
    """
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=total, initial=initial, desc=desc, disable=not show, file=sys.stderr) as bar:
        while not done():
            report = step() or {}
            bar.update()
            if report.get("postfix"):
                bar.set_postfix(report["postfix"])
            if report.get("save") and save is not None:
                save()
            if report.get("stop"):
                break


def train_with_evals(
    trainer, steps: int, eval_every: int, evaluate, *, desc: str, save=None, progress=None, postfix=None
):
    """``drive`` for trainers with ``train_step()``, ``step``, ``saved_step`` and ``history``: every
    ``eval_every`` steps (and at the last) a history row of the mean training loss since the last one and
    ``evaluate()``'s dict, then a checkpoint (``save``). ``postfix(row)`` is shown on the bar.

    ``train_step`` may return its loss as a device tensor: the losses are read once per evaluation, so a
    step never waits for the device. A non-finite one stops the run there, before anything is saved
    (``RunStopped``, naming the step; the last checkpoint is kept)."""
    from amicl.common.validate import RunStopped

    losses: list = []

    def step() -> dict | None:
        losses.append(trainer.train_step())
        if trainer.step % eval_every and trainer.step != steps:
            return None
        values = [float(v) for v in losses]
        if not np.isfinite(values).all():
            at = trainer.step - len(values) + 1 + int(np.argmin(np.isfinite(values)))
            saved = getattr(trainer, "saved_step", None)
            kept = "no checkpoint was written" if saved is None else f"the checkpoint of step {saved} is kept"
            raise RunStopped(f"non-finite loss at step {at}; {kept}")
        row = evaluate()
        trainer.history.append({"step": trainer.step, "train_loss": float(np.mean(values)), **row})
        losses.clear()
        return {"postfix": postfix(row) if postfix else None, "save": True}

    drive(
        step, lambda: trainer.step >= steps, total=steps, initial=trainer.step, desc=desc, save=save, progress=progress
    )
    return trainer.history

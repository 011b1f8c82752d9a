"""Runs and parameter sweeps of the AMICL memory, spread over a ``concurrent.futures.Executor``.

A run scores one ``RunSpec`` (memory config + data config) on ``trials`` episodes; a sweep scores the
Cartesian product of a grid of field values. Trials are cut into fixed chunks, each seeded from
``SeedSequence(seed, spawn_key=...)``, so results depend on the seed only, never on how many workers
ran them. Every grid point draws from the same streams (common random numbers): a sweep over a memory
parameter (a, beta, similarity, ...) scores every value on the very same episodes.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from amicl.common.io import read_json, run_metadata, write_csv, write_json, write_npz
from amicl.common.stats import binomial_ci
from amicl.common.validate import check_choice, check_int
from amicl.memory.hopfield import MemoryConfig, retrieve
from amicl.task import TEST_SETS, EpisodeConfig, ICLTask, TaskConfig, episodes_from_batch, sample_episodes

DATA_KINDS = {"episodes": EpisodeConfig, "reddy": TaskConfig}
CHUNK = 250  # trials per task: fixed so that results never depend on the executor
ENGINES = ("stream", "materialise")
# Trials per task of the stream engine: large, since each task is one parallel kernel launch; any
# value gives the same results (episode e is drawn from its own stream).
STREAM_CHUNK = 20_000


@dataclass(frozen=True)
class RunSpec:
    """One setting: the memory, the data (notebook ``episodes`` or Reddy's task, scored on one of its
    test sets) and the number of trials."""

    memory: MemoryConfig = MemoryConfig()
    data: EpisodeConfig | TaskConfig = EpisodeConfig()
    test_set: str = "ic"
    trials: int = 1000
    engine: str | None = None  # "stream" (episodes only; the default there) or "materialise"

    def __post_init__(self):
        if not isinstance(self.memory, MemoryConfig):
            raise ValueError("memory must be a MemoryConfig")
        if not isinstance(self.data, (EpisodeConfig, TaskConfig)):
            raise ValueError("data must be an EpisodeConfig or a TaskConfig")
        check_choice("test_set", self.test_set, TEST_SETS)
        object.__setattr__(self, "trials", check_int("trials", self.trials, lo=1))
        if self.kind == "reddy":
            check_choice("test_set", self.test_set, self.data.test_sets)
        if self.engine is None:
            object.__setattr__(self, "engine", "stream" if self.kind == "episodes" else "materialise")
        check_choice("engine", self.engine, ENGINES)
        if self.engine == "stream" and self.kind != "episodes":
            raise ValueError("the stream engine draws notebook episodes only; use engine 'materialise' for reddy")

    @property
    def kind(self) -> str:
        return "episodes" if isinstance(self.data, EpisodeConfig) else "reddy"

    def with_values(self, **values) -> "RunSpec":
        """A copy with fields changed wherever they live (memory, data, or the spec itself)."""
        mem, dat, top = {}, {}, {}
        mem_names = {f.name for f in fields(MemoryConfig)}
        dat_names = {f.name for f in fields(type(self.data))}
        for k, v in values.items():
            if k in mem_names:
                mem[k] = v
            elif k in dat_names:
                dat[k] = v
            elif k in ("test_set", "trials", "engine"):
                top[k] = v
            else:
                raise ValueError(f"unknown parameter {k!r} for {self.kind} runs; known: {sorted(sweepable(self.kind))}")
        return replace(self, memory=replace(self.memory, **mem), data=replace(self.data, **dat), **top)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "memory": self.memory.to_dict(),
            "data": self.data.to_dict(),
            "test_set": self.test_set,
            "trials": self.trials,
            "engine": self.engine,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        kind = check_choice("kind", d["kind"], DATA_KINDS)
        return cls(
            MemoryConfig.from_dict(d["memory"]),
            DATA_KINDS[kind].from_dict(d["data"]),
            d.get("test_set", "ic"),
            d.get("trials", 1000),
            d.get("engine", "materialise"),  # results saved before the stream engine existed
        )


def sweepable(kind: str) -> dict[str, type]:
    """Parameter name -> type for the fields a sweep over ``kind`` data may vary."""
    out = {f.name: type(f.default) for f in fields(MemoryConfig)}
    out.update({f.name: type(f.default) for f in fields(DATA_KINDS[kind])})
    if kind == "reddy":
        out["test_set"] = str
    return out


def parse_grid(kind: str, text: str) -> tuple[str, list]:
    """Parse ``name=values``: ``1,1.5,2`` (a list), ``0:2:101`` (linspace start:stop:num) or
    ``log:-1:3:25`` (logspace of powers of 10)."""
    if "=" not in text:
        raise ValueError(f"grid must look like name=values, got {text!r}")
    name, spec = (s.strip() for s in text.split("=", 1))
    types = sweepable(kind)
    if name not in types:
        raise ValueError(f"cannot sweep {name!r} for {kind} runs; choose from {', '.join(sorted(types))}")
    typ = types[name]
    if not spec:
        raise ValueError(f"no values given for {name}")
    try:
        if spec.startswith("log:"):
            lo, hi, num = spec[4:].split(":")
            values = list(np.logspace(float(lo), float(hi), int(num)))
        elif spec.count(":") == 2:
            lo, hi, num = spec.split(":")
            values = list(np.linspace(float(lo), float(hi), int(num)))
        else:
            values = [v.strip() for v in spec.split(",")]
            if any(not v for v in values):
                raise ValueError("an empty item")
        values = [_cast(typ, v) for v in values]
    except ValueError as exc:
        raise ValueError(f"bad values for {name}: {spec!r} ({exc})") from None
    if not values:
        raise ValueError(f"no values given for {name}")
    return name, values


def _cast(typ: type, v):
    if typ is bool:
        return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
    if typ is int:
        f = float(v)
        if not f.is_integer():
            raise ValueError(f"{v} is not an integer")
        return int(f)
    if typ is float:
        return round(float(v), 12)
    return str(v)


def run_chunk(spec_dict: dict, seed: int, chunk: int, size: int) -> np.ndarray:
    """Score ``size`` trials of chunk number ``chunk``; returns (size,) bool correct (worker task)."""
    spec = RunSpec.from_dict(spec_dict)
    if spec.engine == "stream":  # episodes chunk * STREAM_CHUNK onward of the seed's stream
        from amicl.memory.streaming import score_stream

        return score_stream(spec.data, spec.memory, size, seed, first=chunk * STREAM_CHUNK)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, chunk)))
    if spec.kind == "episodes":
        episodes = sample_episodes(spec.data, size, rng)
    else:  # mu and lambda fixed per run, as in training; test sequences from the chunk's stream
        task = ICLTask.from_seed(spec.data, np.random.SeedSequence(seed, spawn_key=(0,)))
        episodes = episodes_from_batch(task.test_set(spec.test_set, size, rng), task, rng)
    return retrieve(episodes, spec.memory).correct(episodes.target)


@dataclass
class SweepResult:
    """Correctness of every trial at every grid point. correct: (n_points, trials) bool."""

    spec: RunSpec
    grid: dict[str, list]
    seed: int
    correct: np.ndarray

    @property
    def points(self) -> list[dict]:
        names = list(self.grid)
        return [dict(zip(names, vals)) for vals in itertools.product(*self.grid.values())]

    def rows(self) -> list[dict]:
        """Tidy summary: one row per point with accuracy and its 95% Clopper-Pearson interval."""
        k = self.correct.sum(axis=1)
        n = self.correct.shape[1]
        lo, hi = binomial_ci(k, n)
        return [
            {
                **p,
                "trials": n,
                "correct": int(k[i]),
                "accuracy": float(k[i] / n),
                "ci_low": float(lo[i]),
                "ci_high": float(hi[i]),
            }
            for i, p in enumerate(self.points)
        ]

    def save(self, out: str | Path, kind: str = "memory-sweep") -> Path:
        out = Path(out)
        write_npz(
            out / "results.npz", correct=self.correct, **{f"grid_{k}": np.asarray(v) for k, v in self.grid.items()}
        )
        write_csv(out / "summary.csv", self.rows())
        # config.json last: its presence marks a complete result folder
        # the grid as ordered [name, values] pairs: point order is the product in this order
        grid = [[k, list(v)] for k, v in self.grid.items()]
        write_json(
            out / "config.json",
            {"kind": kind, "spec": self.spec.to_dict(), "grid": grid, "seed": self.seed, **run_metadata()},
        )
        return out

    @classmethod
    def load(cls, out: str | Path) -> "SweepResult":
        out = Path(out)
        cfg = read_json(out / "config.json")
        with np.load(out / "results.npz") as z:
            correct = z["correct"]
        return cls(RunSpec.from_dict(cfg["spec"]), dict(cfg["grid"]), cfg["seed"], correct)


def episode_bytes(spec: RunSpec) -> int:
    """Bytes one episode's float64 tokens take (T x D for episodes; 2N+1 x input_dim for Reddy's task)."""
    if spec.kind == "episodes":
        return spec.data.T * spec.data.D * 8
    return (2 * spec.data.N + 1) * spec.data.input_dim * 8


def available_memory() -> int:
    """Bytes the system can still hand out (MemAvailable), or the physical total where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# Peak memory of one chunk in copies of its tokens, rounded up: tracemalloc measured 3.1 for episodes
# (D=1000, T=20 and D=100, T=1000) and 1.3 for Reddy's task.
CHUNK_COPIES = 4


def check_memory(spec: RunSpec, grid: dict, workers: int = 1) -> int:
    """Refuse, before allocating anything, a setting whose chunks would not fit in memory; returns the
    estimated peak bytes (``workers`` chunks in flight, at the grid's largest T and D)."""
    worst = spec
    for name in ("T", "D", "N"):
        if name in grid:
            worst = worst.with_values(**{name: max(grid[name])})
    if spec.engine == "stream":  # one episode (tokens, means, scratch) per block, 4 blocks per thread
        chunks = 3 * episode_bytes(worst) * 4 * (os.cpu_count() or 1) * max(workers, 1)
    else:
        chunks = CHUNK_COPIES * min(CHUNK, spec.trials) * episode_bytes(worst) * max(workers, 1)
    points = int(np.prod([len(v) for v in grid.values()])) if grid else 1
    # one bool per trial and point, and about 300 bytes of bookkeeping per chunk task
    results = points * spec.trials + points * -(-spec.trials // CHUNK) * 300
    have = available_memory()
    if chunks > have:
        raise ValueError(
            f"this setting needs about {chunks / 2**30:.1f} GiB ({workers} chunk(s) of {CHUNK} episodes of "
            f"{episode_bytes(worst) / 2**20:.1f} MiB, x{CHUNK_COPIES}); {have / 2**30:.1f} GiB are "
            "available: lower D or T"
        )
    if chunks + results > have:
        raise ValueError(
            f"{points} point(s) x {spec.trials} trials need about {results / 2**30:.1f} GiB for the "
            f"results alone; {have / 2**30:.1f} GiB are available: lower --trials"
        )
    return chunks + results


def sweep(spec: RunSpec, grid: dict[str, list], seed: int = 0, executor=None, progress=None) -> SweepResult:
    """Score every point of ``grid`` (name -> values; empty = the single setting ``spec``)."""
    from amicl.common.parallel import run_tasks

    seed = check_int("seed", seed, lo=0)
    for name in grid:
        if name not in sweepable(spec.kind):
            raise ValueError(f"cannot sweep {name!r} for {spec.kind} runs")
    names = list(grid)
    specs = [spec.with_values(**dict(zip(names, vals))) for vals in itertools.product(*grid.values())]
    step = STREAM_CHUNK if spec.engine == "stream" else CHUNK  # stream results do not depend on it
    sizes = [min(step, spec.trials - s) for s in range(0, spec.trials, step)]
    tasks = [(sp.to_dict(), seed, c, size) for sp in specs for c, size in enumerate(sizes)]
    parts = run_tasks(run_chunk, tasks, executor, desc="amicl sweep", progress=progress)
    correct = np.concatenate(parts).reshape(len(specs), spec.trials)
    return SweepResult(spec, {k: list(v) for k, v in grid.items()}, seed, correct)

"""Ask/tell evolution engine over pycma, full or separable CMA-ES, with exact checkpoint/resume.

NAMM (Cetin et al. 2024, sec. 6 of the reference notes) evolves its scorer with CMA-ES: x0 = 0,
sigma0 = 0.065, lambda = 32, mu = lambda/2, maximising fitness. pycma minimises, so the engine tells it
-fitness. Its random numbers come from a local ``numpy.random.Generator`` (pycma's ``randn`` option
with ``seed=nan``), never from NumPy's global state, and the whole engine pickles, so a run resumed
from a checkpoint asks exactly the candidates the uninterrupted run would have asked.

With N = 4,172 parameters, full CMA-ES adapts its covariance at c1 + c_mu ~ 1e-6 per generation, so
over a few hundred generations it is nearly isotropic ES; the separable variant (``CMA_diagonal``)
adapts per-coordinate scales at ~1e-3 and costs O(N) per candidate instead of O(N^2).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np

from amicl.common.validate import Config, check_float, check_int


@dataclass(frozen=True)
class EngineConfig(Config):
    """dim parameters, population ``popsize`` (lambda), ``mu`` parents (0 = lambda // 2), initial step
    ``sigma0``, ``separable`` (diagonal covariance) and the engine's own ``seed``."""

    dim: int
    popsize: int = 32
    mu: int = 0
    sigma0: float = 0.065
    separable: bool = True
    seed: int = 0
    noise_reevals: int = 0  # > 0: pycma's uncertainty handling re-evaluates this many candidates a generation

    def __post_init__(self):
        object.__setattr__(self, "dim", check_int("dim", self.dim, lo=1))
        object.__setattr__(self, "popsize", check_int("popsize", self.popsize, lo=2))
        object.__setattr__(self, "mu", check_int("mu", self.mu, lo=0, hi=self.popsize))
        object.__setattr__(self, "sigma0", check_float("sigma0", self.sigma0, lo=0.0, lo_open=True))
        object.__setattr__(self, "seed", check_int("seed", self.seed, lo=0))
        object.__setattr__(self, "noise_reevals", check_int("noise_reevals", self.noise_reevals, lo=0))
        if not isinstance(self.separable, bool):
            raise ValueError(f"separable must be a bool, got {self.separable!r}")


class _LocalRandn:
    """pycma's ``randn(lam, N)`` drawn from a private Generator (picklable with the engine)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))

    def __call__(self, *shape):
        return self.rng.standard_normal(shape)


class CMAEngine:
    """``ask() -> (popsize, dim)``, ``tell(X, fitness)`` with fitness to *maximise*."""

    def __init__(self, config: EngineConfig, x0: np.ndarray | None = None):
        import cma

        self.config = config
        x0 = np.zeros(config.dim) if x0 is None else np.asarray(x0, dtype=float)
        if x0.shape != (config.dim,):
            raise ValueError(f"x0 must have shape ({config.dim},), got {x0.shape}")
        opts = {
            "popsize": config.popsize,
            "seed": np.nan,  # do not touch numpy's global seed (pycma issue #221)
            "randn": _LocalRandn(config.seed),
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
            "CMA_diagonal": config.separable,
            "tolfun": 0,
            "tolx": 0,
            "tolflatfitness": 10**9,
            "tolstagnation": 10**9,
            "maxiter": np.inf,
        }
        if config.mu:
            opts["CMA_mu"] = config.mu
        self.es = cma.CMAEvolutionStrategy(x0, config.sigma0, opts)
        # UH-CMA-ES (Hansen et al. 2009; pycma's NoiseHandler): re-evaluate a few candidates on fresh noise
        # and raise sigma when their ranks change more than chance allows (one evaluation per candidate)
        self.noise = cma.NoiseHandler(config.dim, maxevals=[1, 1, 1], reevals=config.noise_reevals or None)
        self._asked: np.ndarray | None = None
        self.generation = 0
        self.best_fitness = -np.inf
        self.best_x = x0.copy()

    def ask(self) -> np.ndarray:
        """The next population, (popsize, dim). Asking again before ``tell`` returns the same one."""
        if self._asked is None:
            self._asked = np.asarray(self.es.ask(), dtype=float)
        return self._asked

    def tell(self, X: np.ndarray, fitness, reevaluate=None) -> None:
        """``reevaluate(x) -> fitness`` of one candidate on fresh noise: needed, and only used, with
        ``noise_reevals`` > 0."""
        fitness = np.asarray(fitness, dtype=float)
        if self._asked is None or not np.array_equal(X, self._asked):
            raise ValueError("tell() must receive the population returned by the last ask()")
        if fitness.shape != (len(X),) or not np.isfinite(fitness).all():
            raise ValueError(f"fitness must be {len(X)} finite values, got shape {fitness.shape}")
        if self.config.noise_reevals and reevaluate is None:
            raise ValueError("noise handling needs reevaluate(x), a fresh evaluation of one candidate")
        self.es.tell(list(X), list(-fitness))  # pycma minimises
        if self.config.noise_reevals:
            state = np.random.get_state()  # the handler draws one np.random.rand(); its result is unused here
            try:
                self.es.sigma *= self.noise(list(X), list(-fitness), lambda x: -float(reevaluate(x)), self.es.ask)
            finally:
                np.random.set_state(state)
        i = int(np.argmax(fitness))
        if fitness[i] > self.best_fitness:
            self.best_fitness, self.best_x = float(fitness[i]), X[i].copy()
        self._asked = None
        self.generation += 1

    @property
    def mean(self) -> np.ndarray:
        """The distribution mean (the NAMM code evaluates and releases the mean, not the best)."""
        return np.asarray(self.es.mean, dtype=float).copy()

    @property
    def sigma(self) -> float:
        return float(self.es.sigma)

    def stats(self) -> dict:
        """Per-generation log: sigma, axis ratio, and the spread of per-coordinate std devs."""
        stds = np.asarray(self.es.stds)
        D = np.atleast_1d(np.asarray(self.es.D, dtype=float))
        return {
            "generation": self.generation,
            "sigma": self.sigma,
            "axis_ratio": float(D.max() / D.min()),
            "std_min": float(stds.min()),
            "std_max": float(stds.max()),
            **({"noise_s": float(self.noise.noiseS)} if self.config.noise_reevals else {}),
        }

    def to_bytes(self) -> bytes:
        """The complete engine state (pycma object, its generator, the pending population)."""
        return pickle.dumps(self)

    @staticmethod
    def from_bytes(data: bytes) -> "CMAEngine":
        engine = pickle.loads(data)
        if not isinstance(engine, CMAEngine):
            raise ValueError("not a CMAEngine checkpoint")
        return engine

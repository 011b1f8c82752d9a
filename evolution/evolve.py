"""The NAMM evolution run: incremental stages of CMA-ES over the scorer, checkpointed every generation.

Each generation draws ``prompts_per_task`` fresh prompts per task of the current stage (shared by the
whole population), scores the full cache on them (the normaliser), then every candidate. Every
``dev_every`` generations the CMA-ES *mean* is scored on a fixed dev set and the best mean so far is
kept (the released NAMM, as in the official code). The best is kept per stage: a new stage's first dev
score replaces it, since means over different task sets do not compare. Stages add tasks (1, then 1+2, then 1+2+3) and
continue the same engine. The checkpoint holds the engine, the frozen normalisation statistics, the
prompt generator's state and the history, so a run killed at any moment and resumed continues
exactly as if it had never stopped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amicl.common.io import load_pickle, save_pickle, write_csv, write_npy, write_run_config
from amicl.common.runs import drive
from evolution.config import EvolveConfig
from evolution.engine import CMAEngine, EngineConfig
from evolution.fitness import evaluate_population, gather_norm_stats, reference_scores
from evolution.tasks import sample


class Evolution:
    """State of a run; ``step()`` runs one generation; ``save``/``load`` make it resumable."""

    def __init__(self, config: EvolveConfig, model, executor=None):
        self.config = config
        self.model = model
        self.executor = executor  # where the population is scored (None: in this process)
        self.scorer = config.make_scorer()
        self.engine = CMAEngine(
            EngineConfig(
                self.scorer.n_params,
                config.popsize,
                0,
                config.sigma0,
                config.separable,
                config.seed,
                config.noise_reevals(),
            )
        )
        self.rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1,)))
        dev_rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2,)))
        tasks = sorted({t for s in config.stages for t in s})
        self.dev = {t: sample(t, config.dev_prompts, config.context, dev_rng, config.filler_frac) for t in tasks}
        self.dev_ref = reference_scores(model, self.dev, config.metric, config.n_up, config.batch_rows)
        # first full-cache pass gathers the feature statistics, then they stay frozen
        self.norm = gather_norm_stats(
            model, self.scorer, {tasks[0]: self.dev[tasks[0]]}, config.n_up, config.batch_rows
        )
        self.stage, self.gen_in_stage = 0, 0
        self.history: list[dict] = []
        self.best = {"dev": -np.inf, "params": np.zeros(self.scorer.n_params), "generation": 0, "stage": 0}

    @property
    def done(self) -> bool:
        return self.stage >= len(self.config.stages)

    def step(self) -> dict:
        c = self.config
        tasks = c.stages[self.stage]
        prompts = {t: sample(t, c.prompts_per_task, c.context, self.rng, c.filler_frac) for t in tasks}
        ref = reference_scores(self.model, prompts, c.metric, c.n_up, c.batch_rows)
        X = self.engine.ask()
        fit, per_task, frac = evaluate_population(
            self.model,
            self.scorer,
            X,
            prompts,
            ref,
            c.n_up,
            self.norm,
            c.metric,
            budget=c.budget(),
            batch_rows=c.batch_rows,
            executor=self.executor,
        )
        reevaluate = None
        if c.noise_handling:  # a second draw of fresh prompts: the noise the re-evaluations measure
            again = {t: sample(t, c.prompts_per_task, c.context, self.rng, c.filler_frac) for t in tasks}
            again_ref = reference_scores(self.model, again, c.metric, c.n_up, c.batch_rows)

            def reevaluate(x):
                return evaluate_population(self.model, self.scorer, x[None], again, again_ref, c.n_up, self.norm,
                                           c.metric, budget=c.budget(), batch_rows=c.batch_rows)[0][0]  # fmt: skip

        self.engine.tell(X, fit, reevaluate)
        row = {
            "generation": self.engine.generation,
            "stage": self.stage + 1,
            "fitness_mean": float(fit.mean()),
            "fitness_best": float(fit.max()),
            "cache_fraction_mean": float(frac.mean()),
            "cache_fraction_of_best": float(frac[int(fit.argmax())]),
            **self.engine.stats(),
        }
        if self.engine.generation % c.dev_every == 0:
            row.update(self.dev_eval())
        self.history.append(row)
        self.gen_in_stage += 1
        if self.gen_in_stage >= c.generations[self.stage]:
            self.stage, self.gen_in_stage = self.stage + 1, 0
        return row

    def dev_eval(self) -> dict:
        """Score the CMA-ES mean on the fixed dev prompts of the stage's tasks; keep the best mean."""
        c = self.config
        tasks = c.stages[self.stage]
        dev = {t: self.dev[t] for t in tasks}
        fit, _, frac = evaluate_population(
            self.model,
            self.scorer,
            self.engine.mean[None],
            dev,
            {t: self.dev_ref[t] for t in tasks},
            c.n_up,
            self.norm,
            c.metric,
            budget=c.budget(),
            batch_rows=c.batch_rows,
            executor=self.executor,
        )
        if fit[0] > self.best["dev"] or self.best.get("stage") != self.stage + 1:
            self.best = {
                "dev": float(fit[0]),
                "params": self.engine.mean,
                "generation": self.engine.generation,
                "stage": self.stage + 1,
            }
        return {"dev_mean_fitness": float(fit[0]), "dev_mean_cache_fraction": float(frac[0])}

    def save(self, out: Path) -> None:
        """evolution.pkl is the checkpoint: one atomic file that holds everything, best parameters
        included, written first. history.csv, config.json and best_params.npy derive from it and follow;
        a kill between them leaves them one generation behind until the next save (and an evolve run
        saves once more when it ends). Checkpoint first, so that a folder never holds derived files
        without the checkpoint that resumes them (a kill found that order the other way round)."""
        out = Path(out)
        state = {
            "config": self.config.to_dict(),
            "engine": self.engine.to_bytes(),
            "norm": self.norm.to_dict(),
            "rng": self.rng.bit_generator.state,
            "stage": self.stage,
            "gen_in_stage": self.gen_in_stage,
            "history": self.history,
            "best": self.best,
        }
        save_pickle(out / "evolution.pkl", state)
        write_csv(out / "history.csv", self.history)
        write_run_config(
            out / "config.json",
            {
                "kind": "namm-evolve",
                "evolve": self.config.to_dict(),
                "best_generation": self.best["generation"],
                "best_stage": self.best.get("stage"),
                "best_dev": self.best["dev"],
            },
        )
        write_npy(out / "best_params.npy", self.best["params"])

    def load(self, out: Path) -> None:
        state = load_pickle(Path(out) / "evolution.pkl")
        if EvolveConfig.from_dict(state["config"]) != self.config:  # from_dict fills fields added since
            raise ValueError(f"{out} holds an evolution run with a different configuration")
        from evolution.spectrogram import NormStats

        self.engine = CMAEngine.from_bytes(state["engine"])
        self.norm = NormStats.from_dict(state["norm"])
        self.rng.bit_generator.state = state["rng"]
        self.stage, self.gen_in_stage = state["stage"], state["gen_in_stage"]
        self.history, self.best = state["history"], state["best"]

    def run(self, out: Path | None = None, progress: bool | None = None) -> list[dict]:
        def step() -> dict:
            row = self.step()
            return {
                "postfix": {"fit": f"{row['fitness_mean']:.3f}", "cache": f"{row['cache_fraction_mean']:.2f}"},
                "save": True,
            }

        save = (lambda: self.save(out)) if out is not None else None
        drive(
            step,
            lambda: self.done,
            total=sum(self.config.generations),
            initial=len(self.history),
            desc="evolve",
            save=save,
            progress=progress,
        )
        if save is not None:
            save()  # also rewrites the derived files of a run resumed after its last generation
        return self.history

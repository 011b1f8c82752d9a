import numpy as np
import pytest
import torch

from amicl.common.io import load_torch
from evolution.base import BaseConfig, BaseTrainer, load_base
from evolution.evolve import Evolution, EvolveConfig
from evolution.fitness import evaluate_population, gather_norm_stats, reference_scores
from evolution.scorers import BAM
from evolution.tasks import sample
from transformers_mini.core.config import GPTConfig
from transformers_mini.core.model import GPT

torch.set_num_threads(1)
TINY_GPT = GPTConfig(vocab_size=256, block_size=512, n_layer=2, n_head=4, n_kv_head=2, d_model=32, pos="rotary")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(TINY_GPT).eval()


def test_batched_population_fitness_equals_one_by_one(model):
    rng = np.random.default_rng(0)
    prompts = {t: sample(t, 3, 128, rng) for t in ("kv_retrieval", "variable_tracking")}
    ref = reference_scores(model, prompts, "prob", 32)
    scorer = BAM()
    norm = gather_norm_stats(model, scorer, prompts, 32)
    params = rng.normal(0, 0.3, (4, scorer.n_params))
    fit, per_task, frac = evaluate_population(model, scorer, params, prompts, ref, 32, norm, "prob", batch_rows=5)
    for i in range(4):
        f1, t1, c1 = evaluate_population(model, scorer, params[i], prompts, ref, 32, norm, "prob")
        np.testing.assert_allclose(fit[i], f1[0], rtol=1e-4)
        np.testing.assert_allclose(frac[i], c1[0], rtol=1e-6)
    zero, _, zfrac = evaluate_population(model, scorer, np.zeros((1, scorer.n_params)), prompts, ref, 32, norm, "prob")
    np.testing.assert_allclose(zero, 1.0, rtol=1e-6)  # keep-all == full cache: normalised score exactly 1
    assert zfrac[0] == 1.0


def test_reference_refuses_an_undefined_normaliser(model):
    # an untrained model answers this needle wrongly, so score / full-cache score would divide by 0
    with pytest.raises(ValueError, match="scores 0"):
        reference_scores(model, {"needle": sample("needle", 1, 64, np.random.default_rng(5))}, "accuracy", 32)


CFG = EvolveConfig(
    stages=(("kv_retrieval",), ("kv_retrieval", "needle")),
    generations=(2, 2),
    popsize=4,
    n_up=32,
    context=96,
    prompts_per_task=2,
    dev_prompts=3,
    dev_every=2,
    metric="prob",
    sigma0=0.3,
)


def test_killed_evolution_resumes_exactly(model, tmp_path):
    straight = Evolution(CFG, model)
    straight.run(tmp_path / "a", progress=False)
    first = Evolution(CFG, model)
    first.step()
    first.step()
    first.step()  # into stage 2
    first.save(tmp_path / "b")
    resumed = Evolution(CFG, model)
    resumed.load(tmp_path / "b")
    resumed.run(tmp_path / "b", progress=False)
    assert resumed.history == straight.history
    np.testing.assert_array_equal(resumed.engine.mean, straight.engine.mean)
    assert [r["stage"] for r in straight.history] == [1, 1, 2, 2]
    assert "dev_mean_fitness" in straight.history[1] and (tmp_path / "a" / "best_params.npy").exists()
    # the released mean comes from the last stage (its only dev score, generation 4), whatever stage 1 scored
    assert (
        (straight.best["stage"], straight.best["generation"])
        == (2, 4)
        == (resumed.best["stage"], resumed.best["generation"])
    )
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "best_params.npy"), straight.best["params"])
    other = Evolution(EvolveConfig(**{**CFG.to_dict(), "popsize": 6}), model)
    with pytest.raises(ValueError, match="different configuration"):
        other.load(tmp_path / "b")


def test_noise_handled_evolution_resumes_exactly_and_logs_its_noise_measure(model, tmp_path):
    """--noise-handling re-evaluates ceil(2 + popsize / 20) = 3 candidates a generation on a second prompt
    draw; the run still resumes exactly, and the plain run's prompt stream is not touched by it."""
    cfg = EvolveConfig(**{**CFG.to_dict(), "noise_handling": True})
    assert cfg.noise_reevals() == 3 and CFG.noise_reevals() == 0
    straight = Evolution(cfg, model)
    straight.run(tmp_path / "a", progress=False)
    first = Evolution(cfg, model)
    first.step()
    first.save(tmp_path / "b")
    resumed = Evolution(cfg, model)
    resumed.load(tmp_path / "b")
    resumed.run(tmp_path / "b", progress=False)
    assert resumed.history == straight.history and all("noise_s" in r for r in straight.history)
    np.testing.assert_array_equal(resumed.engine.mean, straight.engine.mean)
    plain = Evolution(CFG, model)
    plain.step()
    assert "noise_s" not in plain.history[0]
    assert plain.history[0]["fitness_mean"] == straight.history[0]["fitness_mean"]  # same first prompts
    with pytest.raises(ValueError, match="noise_handling must be a bool"):
        EvolveConfig(noise_handling="yes")


def test_budget_mode_keeps_the_stated_fraction_whatever_the_parameters(model):
    """In budget mode every member ends with the same cache, round(f * context) tokens per layer, so the
    fitness cannot buy score with cache; in threshold mode the fraction is each member's own."""
    cfg = EvolveConfig(**{**CFG.to_dict(), "budget_fraction": 0.25})
    assert cfg.budget() == 24  # 0.25 of 96 tokens
    run = Evolution(cfg, model)
    row = run.step()
    assert row["cache_fraction_mean"] == pytest.approx(0.25, abs=1 / 96) and row[
        "cache_fraction_of_best"
    ] == pytest.approx(row["cache_fraction_mean"])
    free = Evolution(CFG, model).step()
    assert free["cache_fraction_mean"] != pytest.approx(0.25, abs=1 / 96)


def test_base_training_resumes_exactly(tmp_path):
    cfg = BaseConfig(
        model=TINY_GPT,
        tasks=("kv_retrieval", "needle"),
        min_context=64,
        max_context=128,
        steps=4,
        batch=4,
        eval_every=2,
        eval_size=4,
        curriculum=2,
    )  # the resume crosses the curriculum's step
    straight = BaseTrainer(cfg)
    straight.fit(tmp_path / "a", progress=False)
    BaseTrainer(BaseConfig(**{**cfg.to_dict(), "steps": 2})).fit(tmp_path / "b", progress=False)
    # a checkpoint written before fields with defaults were added (precision, dropout), and before
    # checkpoints carried a digest of their content, still resumes
    state = load_torch(tmp_path / "b" / "base.pt")
    del state["config"]["precision"], state["config"]["model"]["dropout"]
    torch.save(state, tmp_path / "b" / "base.pt")
    with pytest.raises(ValueError, match="different configuration"):
        BaseTrainer(BaseConfig(**{**cfg.to_dict(), "lr": 0.5})).load(tmp_path / "b")
    resumed = BaseTrainer(cfg)
    resumed.load(tmp_path / "b")
    resumed.fit(tmp_path / "b", progress=False)
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    assert straight.history == resumed.history
    frozen = load_base(tmp_path / "a")
    assert not any(p.requires_grad for p in frozen.parameters())


def test_context_curriculum_admits_one_doubling_per_stage():
    cfg = BaseConfig(model=TINY_GPT, min_context=64, max_context=512, curriculum=3, queries=1)
    trainer = BaseTrainer(cfg)
    seen = {}
    for step in range(12):
        trainer.step = step
        seen.setdefault(step // 3, set()).update(trainer.draw_context() for _ in range(40))
    assert seen == {0: {64}, 1: {64, 128}, 2: {64, 128, 256}, 3: {64, 128, 256, 512}}
    trainer = BaseTrainer(BaseConfig(**{**cfg.to_dict(), "curriculum": 0}))
    assert {trainer.draw_context() for _ in range(80)} == {64, 128, 256, 512}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"generations": (1,)}, "one generation count"),
        ({"n_up": 40}, "multiple of 16"),
        ({"popsize": 1}, "popsize"),
        ({"scorer": "tcn"}, "scorer"),
        ({"stages": (("copy",), ("needle",)), "generations": (1, 1)}, "task"),
        ({"budget_fraction": 0.0}, "budget_fraction"),
        ({"budget_fraction": 1.5}, "budget_fraction"),
    ],
)
def test_invalid_evolve_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EvolveConfig(**kwargs)


def test_config_records_the_process_start_not_the_last_checkpoint():
    """A process that writes its metadata 2.5 s after it started still reports its start (to the second)."""
    import subprocess
    import sys
    import time

    launched = time.time()
    code = "import time, amicl.common.io as io; time.sleep(2.5); print(io.run_metadata()['started'])"
    started = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    stamp = time.mktime(time.strptime(started, "%Y-%m-%dT%H:%M:%S%z"))
    assert launched - 1 <= stamp <= launched + 1.2  # written at >= launched + 2.5, so a call-time stamp fails

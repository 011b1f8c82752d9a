import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny import TINY_TOY

from amicl.cli import amicl
from amicl.common.io import read_csv
from amicl.task import TaskConfig
from transformers_mini.core.config import StreamConfig, ToyConfig, TrainConfig
from transformers_mini.core.model import ToyTransformer
from transformers_mini.toy.compare import arm_statistics
from transformers_mini.toy.probes import PROBES
from transformers_mini.toy.run import Run, steps_to_threshold, summarise_members
from transformers_mini.toy.train import Trainer, TrainingDiverged

torch.set_num_threads(1)
TINY = TaskConfig(K=16, L=8, N=2, Nmax=3, D=12)


def tiny_run(steps=6, arms=("none", "V"), seeds=(0, 1), task=TINY, **train):
    cfg = {"steps": steps, "batch": 16, "eval_every": 2, "eval_size": 40, "checkpoint_every": 2, **train}
    return Run(
        {
            a: ToyConfig(
                d_in=task.input_dim,
                n_labels=task.L,
                init_D=task.D,
                stream=StreamConfig(kind=a) if a != "none" else StreamConfig(),
            )
            for a in arms
        },
        list(seeds),
        task,
        TrainConfig(**cfg),
    )


def test_easy_setting_learns_far_above_chance():
    # In-weights only: 8 classes with their own labels, i.i.d. contexts; chance is 1/8.
    task = TaskConfig(K=8, L=8, N=2, Nmax=2, D=16, B=0, p_B=0.0, p_C=0.0)
    run = tiny_run(300, ("none",), (0,), task, batch=64, lr=0.1, eval_every=100, eval_size=1000, checkpoint_every=100)
    trainer = Trainer(run, "cpu")
    trainer.fit(progress=False)
    acc = trainer.history[-1]["iw"]
    assert acc > 1 / 8 + 5 * math.sqrt((1 / 8) * (7 / 8) / 1000)  # five binomial SEs above chance
    assert trainer.history[-1]["train_loss"] < trainer.history[1]["train_loss"]


def test_resume_continues_exactly(tmp_path):
    run = tiny_run(8)
    straight = Trainer(run, "cpu")
    straight.fit(tmp_path / "a", progress=False)

    Trainer(tiny_run(4), "cpu").fit(tmp_path / "b", progress=False)  # the same run, stopped at step 4
    resumed = Trainer(run, "cpu")
    resumed.load(tmp_path / "b" / "checkpoint.pt")
    assert resumed.step == 4
    resumed.fit(tmp_path / "b", progress=False)
    for (n, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), n
    assert straight.history == resumed.history
    assert len(straight.probes) == len(resumed.probes) == 5 * 4  # 5 evaluations x 4 members
    for a, b in zip(straight.probes, resumed.probes):  # float64 probes, equal up to BLAS rounding
        assert (a["step"], a["arm"], a["seed"]) == (b["step"], b["arm"], b["seed"])
        assert [a[k] for k in PROBES] == pytest.approx([b[k] for k in PROBES], rel=1e-9, abs=1e-12)


def test_members_that_reached_the_threshold_retire_and_the_rest_train_on_unchanged(tmp_path):
    """--stop-when-reached stops each member at its first evaluation past the threshold on ic and ic2;
    the others' histories match an unretired run, and a resume after a retirement is exact."""
    runs = lambda steps, threshold, stop: tiny_run(steps, threshold=threshold, stop_when_reached=stop)
    whole = Trainer(runs(8, 0.5, False), "cpu")
    whole.fit(progress=False)
    at2 = [min(r["ic"], r["ic2"]) for r in whole.history if r["step"] == 2]
    threshold = max(at2)  # the best member at step 2 retires there
    assert sorted(at2)[-2] < threshold  # premise (this seed): only one member reaches it at step 2
    retired = Trainer(runs(8, threshold, True), "cpu")
    retired.fit(tmp_path / "a", progress=False)
    first = {m["arm"] + str(m["seed"]): m for m in summarise_members(whole.history, threshold)}
    by = {(r["arm"], r["seed"], r["step"]): r for r in whole.history}
    for m in summarise_members(retired.history, threshold):
        ref = first[m["arm"] + str(m["seed"])]
        done = ref["steps_ic"] is not None and ref["steps_ic2"] is not None
        assert m["last_step"] == (max(ref["steps_ic"], ref["steps_ic2"]) if done else 8)
    assert len(retired.active) < len(retired.run.members)
    for r in retired.history:
        for k in ("ic", "ic2", "test", "iw"):
            assert r[k] == pytest.approx(by[(r["arm"], r["seed"], r["step"])][k], abs=1e-9)

    Trainer(runs(4, threshold, True), "cpu").fit(tmp_path / "b", progress=False)
    resumed = Trainer(runs(8, threshold, True), "cpu")
    resumed.load(tmp_path / "b" / "checkpoint.pt")
    resumed.fit(tmp_path / "b", progress=False)
    assert resumed.history == retired.history and resumed.active == retired.active
    for p, q in zip(retired.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_mechanism_onsets_are_shares_of_each_probes_own_rise():
    from transformers_mini.toy.mechanisms import onsets

    probe = lambda seed, step, prev, ind: {  # noqa: E731
        "arm": "V",
        "seed": seed,
        "step": step,
        "prev_token": prev,
        "induction": ind,
        "beta_eff": "",  # a probe this run did not record: no onset, not an error
    }
    # seed 0 reaches the threshold: prev_token rises 0.1 -> 0.5 (10% at 0.14, 50% at 0.3); induction
    # falls 0.9 -> 0.1 (a rise of the other sign counts the same)
    probes = [probe(0, 0, 0.1, 0.9), probe(0, 200, 0.2, 0.8), probe(0, 400, 0.3, 0.2), probe(0, 600, 0.5, 0.1)]
    probes += [probe(1, 0, 0.1, 0.0), probe(1, 600, 0.2, 0.1)]  # seed 1 never reaches it
    probes += [probe(2, 200, 0.1, 0.0), probe(2, 600, 0.5, 0.1)]  # seed 2 probed only from step 200
    hist = [
        {"arm": "V", "seed": s, "step": t, "ic": a} for s in (0, 1, 2) for t, a in ((0, 0.1), (400, 0.5), (600, 0.96))
    ]
    hist = [dict(h, ic=0.3) if h["seed"] == 1 else h for h in hist]
    m0, m1, m2 = onsets(probes, hist, threshold=0.95)
    assert (m0["takeoff"], m0["start_prev_token"], m0["mid_prev_token"], m0["lead_start_prev_token"]) == (
        400,
        200,
        400,
        200,
    )
    assert (m0["start_induction"], m0["mid_induction"], m0["lead_mid_induction"]) == (200, 400, 0)
    assert m0["start_beta_eff"] is None and m0["complete"]
    assert not m1["complete"] and m1["start_prev_token"] is None and m1["takeoff"] is None  # counted, no onset
    assert not m2["complete"] and m2["mid_prev_token"] is None and m2["takeoff"] == 400


def test_resume_refuses_a_different_run(tmp_path):
    Trainer(tiny_run(2), "cpu").fit(tmp_path, progress=False)
    other = Trainer(tiny_run(2, lr=0.02), "cpu")
    with pytest.raises(ValueError, match="different run"):
        other.load(tmp_path / "checkpoint.pt")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(tiny_run(2), "cpu")
    trainer.fit(tmp_path, progress=False)
    good = (tmp_path / "checkpoint.pt").read_bytes()
    with torch.no_grad():
        trainer.model.readout[1].fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at step 3 .*\('V', 0\)"):
        trainer.train_step()
    assert (tmp_path / "checkpoint.pt").read_bytes() == good


def test_on_a_gpu_a_nan_loss_is_caught_at_the_next_evaluation_before_any_checkpoint(tmp_path):
    trainer = Trainer(tiny_run(4), "cpu")
    trainer.check_every_step = False  # as on a GPU, where checking every step would wait for it
    trainer.fit(tmp_path, progress=False)
    good = (tmp_path / "checkpoint.pt").read_bytes()
    with torch.no_grad():
        trainer.model.readout[1].fill_(float("nan"))
    trainer.train_step()  # not checked here
    with pytest.raises(TrainingDiverged, match=r"between steps 5 and 5 .*\('V', 0\).*step 4 is kept"):
        trainer.record()
    assert (tmp_path / "checkpoint.pt").read_bytes() == good


def test_steps_to_threshold_and_summary():
    hist = [
        {"step": s, "arm": "V", "seed": 0, "ic": a, "ic2": b, "test": 0, "iw": 0}
        for s, a, b in [(0, 0.1, 0.1), (500, 0.96, 0.5), (1000, 0.97, 0.95)]
    ]
    assert steps_to_threshold(hist, "V", 0, "ic", 0.95) == 500
    assert steps_to_threshold(hist, "V", 0, "ic2", 0.99) is None
    row = summarise_members(hist, 0.95)[0]
    assert (row["steps_ic"], row["steps_ic2"], row["final_ic"]) == (500, 1000, 0.97)
    # 1900/2000 logged through float32 is 0.9499999881; it has reached 0.95, 1899/2000 has not
    f32 = lambda k: float(np.float32(k) / np.float32(2000))
    hist = [{"step": s, "arm": "V", "seed": 0, "ic": f32(k)} for s, k in [(500, 1899), (1000, 1900)]]
    assert hist[1]["ic"] < 0.95 and steps_to_threshold(hist, "V", 0, "ic", 0.95) == 1000


def test_evaluation_accuracy_is_an_exact_fraction():
    acc = Trainer(tiny_run()).evaluate()
    n = tiny_run().train.eval_size
    for a in acc.values():
        assert a.dtype == np.float64 and np.allclose(a * n, np.round(a * n), rtol=0, atol=1e-9)


def test_arm_statistics_are_paired_and_censor_at_the_cap():
    base = np.array([1000.0, 2000, 3000, 4000, 5000])
    arms = {"none": base, "V": base * 0.5, "same": base.copy()}
    rows = {r["arm"]: r for r in arm_statistics(arms, cap=10_000)}
    assert rows["none"]["median_steps"] == 3000 and "median_saving_vs_none" not in rows["none"]
    for name in ("median_saving", "ratio_of_medians", "ratio_of_means"):  # paired: no spread at all
        assert rows["V"][f"{name}_vs_none"] == pytest.approx(0.5)
        assert rows["V"][f"{name}_low"] == pytest.approx(0.5) and rows["V"][f"{name}_high"] == pytest.approx(0.5)
        assert rows["same"][f"{name}_low"] == 0 == rows["same"][f"{name}_high"]
    censored = arm_statistics({"none": base, "V": np.full(5, np.inf)}, cap=10_000)[1]
    assert censored["n_reached"] == 0 and censored["median_steps"] == np.inf and censored["never_rate"] == 1.0
    assert censored["median_saving_vs_none"] == pytest.approx(1 - 10_000 / 3000)  # at the cap: a bound


def test_runs_must_fit_the_task():
    with pytest.raises(ValueError, match="do not fit the task"):
        Run({"none": ToyConfig()}, [0], TINY, TrainConfig())
    with pytest.raises(ValueError, match="seeds"):
        tiny_run(seeds=(1, 1))
    with pytest.raises(ValueError, match="device"):
        Trainer(tiny_run(), "tpu")


CLI = [str(a) for a in TINY_TOY]


def test_cli_compare_resume_and_figures(tmp_path):
    out = str(tmp_path / "cmp")
    r = CliRunner().invoke(
        amicl, ["transformer", "compare", "--streams", "none,V,K,Q", "--steps", "4", *CLI, "--out", out]
    )
    assert r.exit_code == 0, r.output
    assert "| ic | V |" in r.stdout and "amicl-memory (a=2)" in r.stdout
    for name in ("config.json", "history.csv", "members.csv", "compare.csv", "compare.md", "checkpoint.pt"):
        assert (tmp_path / "cmp" / name).exists()
    assert "Mechanisms and the take-off" in r.stdout and "| V | " in r.stdout.split("Probes at each member")[1]
    r = CliRunner().invoke(
        amicl, ["transformer", "compare", "--streams", "none,V,K,Q", "--steps", "4", *CLI, "--out", out]
    )
    assert r.exit_code == 2 and "--resume" in r.output
    r = CliRunner().invoke(
        amicl, ["transformer", "compare", "--streams", "none,V,K,Q", "--steps", "6", *CLI, "--out", out, "--resume"]
    )
    assert r.exit_code == 0, r.output
    assert "resuming at step 4" in r.stderr
    r = CliRunner().invoke(amicl, ["figures", "streams", out, "--format", "png"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "cmp" / "figures").iterdir()) == [
        "covariates.png",
        "learning_curves.png",
        "probes.png",
        "steps_to_threshold.png",
        "survival.png",
    ]
    r = CliRunner().invoke(amicl, ["figures", "clamp", f"free={out}", "--seeds", "0", "--out", str(tmp_path / "f"),
                                   "--format", "png"])  # fmt: skip
    assert r.exit_code == 0 and (tmp_path / "f" / "clamp_survival.png").exists(), r.output
    r = CliRunner().invoke(amicl, ["figures", "clamp", out, "--out", str(tmp_path / "f")])
    assert r.exit_code == 2 and "is not LABEL=FOLDER" in r.output
    r = CliRunner().invoke(amicl, ["figures", "clamp", f"a={out}", "--seeds", "9", "--out", str(tmp_path / "f")])
    assert r.exit_code == 2 and "has no members of the seeds given" in r.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--streams", "none,W"], "stream must be one of none, V, K, Q"),
        (["--streams", "V,V"], "twice"),
        (["--lr", "0"], "lr must be"),
        (["--threshold", "1.5"], "threshold"),
        (["--B", "3"], "B must divide N"),
        (["--resume"], "no checkpoint"),
        (["--device", "cuda"], "cuda"),
    ],
)
def test_cli_bad_input(tmp_path, args, needle):
    if args == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = CliRunner().invoke(amicl, ["transformer", "compare", "--steps", "2", *CLI, "--out", str(tmp_path), *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output and len(r.output.strip().splitlines()) == 1


def test_a_learned_weight_arm_trains_apart_and_joins(tmp_path):
    """V:learn cannot share an ensemble with fixed-weight arms, but its run pairs with theirs through join."""
    run = lambda streams, name: CliRunner().invoke(
        amicl, ["transformer", "compare", "--streams", streams, "--steps", "4", *CLI, "--out", str(tmp_path / name)]
    )
    mixed = run("none,V:learn", "mixed")
    assert mixed.exit_code == 2 and "train the others in a run of their own" in mixed.output
    assert not (tmp_path / "mixed").exists()
    cfg = lambda **kw: ToyConfig(d_in=TINY.input_dim, n_labels=TINY.L, init_D=TINY.D, **kw)
    mixed_run = Run(
        {"none": cfg(), "V:learn": cfg(stream=StreamConfig(kind="V", learn=True))}, [0], TINY, TrainConfig()
    )
    with pytest.raises(ValueError, match="one run share"):
        Trainer(mixed_run, "cpu")
    assert run("none,V", "nv").exit_code == 0 and run("V:learn", "learn").exit_code == 0
    r = CliRunner().invoke(
        amicl, ["transformer", "join", str(tmp_path / "nv"), str(tmp_path / "learn"), "--out", str(tmp_path / "j")]
    )
    assert r.exit_code == 0, r.output
    assert "| ic | V:learn |" in r.stdout
    arms = {row["arm"] for row in read_csv(tmp_path / "j" / "members.csv")}
    assert arms == {"none", "V", "V:learn", "amicl-memory (a=2)"}


def test_join_pairs_separate_runs_like_one_run(tmp_path):
    """A member depends on its seed only, so none,V and K,Q trained apart and joined equal one none,V,K,Q run."""
    run = lambda streams, name: CliRunner().invoke(
        amicl, ["transformer", "compare", "--streams", streams, "--steps", "4", *CLI, "--out", str(tmp_path / name)]
    )
    for streams, name in (("none,V", "nv"), ("K,Q", "kq"), ("none,V,K,Q", "all")):
        assert run(streams, name).exit_code == 0
    r = CliRunner().invoke(
        amicl, ["transformer", "join", str(tmp_path / "nv"), str(tmp_path / "kq"), "--out", str(tmp_path / "joined")]
    )
    assert r.exit_code == 0, r.output
    assert "| ic | Q |" in r.stdout
    key = lambda rows: sorted((r["arm"], r["seed"], r["step"]) for r in rows)
    joined, whole = (read_csv(tmp_path / d / "history.csv") for d in ("joined", "all"))
    assert key(joined) == key(whole)
    assert key(read_csv(tmp_path / "joined" / "probes.csv")) == key(read_csv(tmp_path / "all" / "probes.csv"))
    by = {(r["arm"], r["seed"], r["step"]): r for r in whole}
    for r in joined:
        for k in ("test", "ic", "ic2", "iw", "train_loss"):
            if r.get(k):  # step 0 has no training loss
                assert float(r[k]) == pytest.approx(float(by[(r["arm"], r["seed"], r["step"])][k]), abs=1e-5)
    r = CliRunner().invoke(
        amicl,
        [
            "transformer",
            "compare",
            "--streams",
            "K",
            "--steps",
            "4",
            *CLI,
            "--seeds",
            "3",
            "--out",
            str(tmp_path / "k3"),
        ],
    )  # the later --seeds wins
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        amicl, ["transformer", "join", str(tmp_path / "nv"), str(tmp_path / "k3"), "--out", str(tmp_path / "bad")]
    )
    assert r.exit_code != 0 and "seeds" in r.output


def test_censored_runs_count_against_their_arm_not_dropped():
    """Seed 2's V run never reached the threshold: it is censored, so none is first on that seed and V's
    Kaplan-Meier median is not the median of the runs that did reach it."""
    from transformers_mini.toy.compare import paired_seed_table, survival_section

    def member(arm, seed, steps):
        return {"arm": arm, "seed": seed, "steps_ic": steps, "steps_ic2": steps, "last_step": 5000}

    members = [
        member("none", 0, 3000),
        member("V", 0, 2000),
        member("none", 1, 3500),
        member("V", 1, 2500),
        member("none", 2, 4000),
        member("V", 2, None),
        member("none", 3, 4500),
        member("V", 3, None),
    ]
    lines, rows = survival_section(members, ["none", "V"])
    v = next(r for r in rows if r["arm"] == "V" and r["test_set"] == "ic")
    assert (v["n_reached"], v["first_arm"], v["first_base"], v["ties"]) == (2, 2, 2, 0)
    assert v["km_median"] == 2500  # two of four reached by 2,500: survival 0.5; dropping censored runs says 2,250
    none = next(r for r in rows if r["arm"] == "none" and r["test_set"] == "ic")
    assert none["km_median"] == 3500
    table = "\n".join(paired_seed_table(members, ["none", "V"]))
    assert "| 2 | 4000 | >5000 | censored |" in table and "| 0 | 3000 | 2000 | +33.3% |" in table


def test_initial_covariates_read_the_seeds_init():
    from transformers_mini.toy.initial_state import initial_covariates

    task = TaskConfig(K=8, L=8, N=2, Nmax=2, D=16, B=0, p_B=0.0, p_C=0.0)
    run = tiny_run(1, ("none", "V"), (0, 1), task)
    cov = [initial_covariates(run, s, batch=16) for s in (0, 1)]
    model = ToyTransformer([ToyConfig(d_in=task.input_dim, n_labels=task.L, init_D=task.D)] * 2, [0, 1])
    for s in (0, 1):
        assert [cov[s][f"init_b{i}"] for i in (1, 2, 3)] == pytest.approx(model.mlp_b[s].tolist())
        assert 0 <= cov[s]["init_z3_active"] <= 1 and cov[s]["init_z3_norm"] > 0
        assert 0 < cov[s]["init_attn_entropy_l1"] <= np.log(2 * task.N + 1) + 1e-6
    assert cov[0] != cov[1]


def test_ablation_arms_train_side_by_side_and_pair_with_the_baseline(tmp_path):
    """Arms named KIND:options (stop-gradient, another weight) train in one ensemble with none and V."""
    out = tmp_path / "abl"
    r = CliRunner().invoke(
        amicl,
        ["transformer", "compare", "--streams", "none,V,V:detach,V:lam=0.5", "--steps", "2", *CLI, "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())["run"]["arms"]
    assert cfg["V:detach"]["stream"]["detach"] is True and cfg["V:lam=0.5"]["stream"]["lam"] == 0.5
    assert "| ic | V:detach |" in r.stdout and "| ic | V:lam=0.5 |" in r.stdout


def test_covariate_section_ranks_a_censored_baseline_last_and_splits_slow_from_fast():
    from transformers_mini.toy.compare import COVARIATES, covariate_section

    members = []
    for seed, (none, v) in enumerate([(1000, 900), (2000, 1500), (3000, 2000), (None, 2500)]):
        cov = {k: float(seed) for k in COVARIATES}  # every covariate rises with the baseline's steps
        members += [
            {"arm": "none", "seed": seed, "steps_ic": none, "steps_ic2": none, "last_step": 4000, **cov},
            {"arm": "V", "seed": seed, "steps_ic": v, "steps_ic2": v, "last_step": 4000, **cov},
        ]
    text = "\n".join(covariate_section(members, ["none", "V"]))
    assert "| init_b3 | +1.00 (0.00) |" in text  # seed 3 never reached: it ranks last, still monotone
    assert "slow starters +33.3% (n=1), fast starters +17.5% (n=2)" in text  # seed 3's saving is censored


def test_phase_grid_trains_every_cell_resumes_and_draws(tmp_path):
    out = str(tmp_path / "phase")
    args = ["transformer", "phase", "--grid-B", "1,2", "--grid-epsilon", "0.1", "--seeds", "1", "--eval-every", "1"]
    args += ["--eval-size", "20", "--checkpoint-every", "1", "--threads", "1", "--device", "cpu", "--out", out]
    r = CliRunner().invoke(amicl, [*args, "--steps", "2"])
    assert r.exit_code == 0, r.output
    rows = read_csv(tmp_path / "phase" / "phase.csv")
    assert sorted((r["cell"], r["arm"]) for r in rows) == sorted(
        (c, a) for c in ("B1_eps0.1", "B2_eps0.1") for a in ("none", "V", "amicl-memory (a=2)")
    )
    assert "| 2 | 0.1 |" in r.stdout
    r = CliRunner().invoke(amicl, [*args, "--steps", "3", "--resume"])
    assert r.exit_code == 0, r.output
    assert {int(r["steps"]) for r in read_csv(tmp_path / "phase" / "phase.csv") if r["arm"] == "V"} == {3}
    r = CliRunner().invoke(amicl, ["figures", "phase", out, "--format", "png"])
    assert r.exit_code == 0 and (tmp_path / "phase" / "figures" / "phase.png").exists(), r.output
    assert (tmp_path / "phase" / "figures" / "phase_curves.png").exists()
    # read at a smaller budget, the longer run is the 2-step run (no lr schedule): the same table
    r = CliRunner().invoke(amicl, [*args, "--steps", "2", "--resume"])
    assert r.exit_code == 0, r.output
    assert read_csv(tmp_path / "phase" / "phase.csv") == rows
    r = CliRunner().invoke(amicl, [*args[:3], "3", *args[4:], "--steps", "2"])
    assert r.exit_code == 2 and "B must divide N" in r.stderr
    r = CliRunner().invoke(amicl, ["figures", "phase", str(tmp_path / "phase" / "cells" / "B1_eps0.1")])
    assert r.exit_code == 2 and "expected a theory-phase run" in r.stderr


def test_phase_budget_reads_each_member_at_that_step_or_refuses():
    from transformers_mini.toy.phase import budget_history

    history = [{"step": str(s), "arm": a, "seed": "0", "ic": str(s / 10)} for s in (0, 2, 4) for a in ("none", "V")]
    kept = budget_history(history, 2)
    assert [(r["step"], r["arm"]) for r in kept] == [("0", "none"), ("0", "V"), ("2", "none"), ("2", "V")]
    with pytest.raises(ValueError, match="not every member was evaluated at step 3"):
        budget_history(history, 3)
    with pytest.raises(ValueError, match="at step 4"):
        budget_history(history[:-1], 4)  # V's last evaluation is missing


def test_a_learned_stream_weight_is_recorded_in_the_history():
    from transformers_mini.core.config import parse_arm

    arms = {a: ToyConfig(d_in=TINY.input_dim, n_labels=TINY.L, init_D=TINY.D, stream=parse_arm(a, {}))
            for a in ("V:learn", "K:learn")}  # fmt: skip
    train = TrainConfig(steps=6, batch=16, eval_every=2, eval_size=40, checkpoint_every=2, lr=0.5)
    trainer = Trainer(Run(arms, [0], TINY, train), "cpu")
    trainer.fit(progress=False)
    learn = [h for h in trainer.history if h["arm"] == "V:learn"]
    assert learn[0]["stream_lam_l1"] == 1.0 and learn[-1]["stream_lam_l1"] != 1.0
    assert learn[-1]["stream_lam_l1"] == pytest.approx(
        float(trainer.model.stream_lam[0, 1, 2].detach())
    )  # V: the values'
    k = [h for h in trainer.history if h["arm"] == "K:learn"]
    assert k[-1]["stream_lam_l1"] == pytest.approx(
        float(trainer.model.stream_lam[1, 1, 1].detach())
    )  # K: the keys' weight


def test_precisions_tf32_is_fp32_on_a_cpu_and_bf16_trains_close_to_it_and_resumes_exactly(tmp_path):
    """tf32 changes only CUDA matmuls: on a CPU it is fp32 bit for bit. bf16 autocast trains the same run to
    nearly the same losses (bfloat16 keeps 8 mantissa bits) and resumes exactly like fp32."""
    runs = {p: Trainer(tiny_run(4, precision=p), "cpu") for p in ("fp32", "tf32", "bf16")}
    for t in runs.values():
        t.fit(progress=False)
    fp32, tf32, bf16 = (runs[p].history for p in ("fp32", "tf32", "bf16"))
    assert fp32 == tf32
    loss = np.array([[float(h["train_loss"]) for h in hist if h["train_loss"] != ""] for hist in (fp32, bf16)])
    assert not np.array_equal(loss[0], loss[1]) and np.allclose(loss[0], loss[1], rtol=0.02)
    straight = Trainer(tiny_run(8, precision="bf16"), "cpu")
    straight.fit(tmp_path / "a", progress=False)
    Trainer(tiny_run(4, precision="bf16"), "cpu").fit(tmp_path / "b", progress=False)
    resumed = Trainer(tiny_run(8, precision="bf16"), "cpu")
    resumed.load(tmp_path / "b" / "checkpoint.pt")
    resumed.fit(tmp_path / "b", progress=False)
    assert straight.history == resumed.history
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["run"]["train"]["precision"] == "bf16"
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, bf16"):
        TrainConfig(precision="fp16")


def test_compiled_training_matches_eager_to_rounding_and_falls_back_when_compiling_fails(monkeypatch, capsys):
    """--compile changes the arithmetic by rounding only (the losses agree to 1e-5); where compiling fails the
    trainer says so once and runs eager, bit for bit; a compiled run resumes an eager checkpoint."""
    eager = Trainer(tiny_run(4), "cpu")
    eager.fit(progress=False)
    fast = Trainer(tiny_run(4, compile=True), "cpu")
    fast.fit(progress=False)
    for a, b in zip(eager.history, fast.history):
        if a["train_loss"] != "":
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)

    def broken(fn, *args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("no compiler here")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    capsys.readouterr()
    fallback = Trainer(tiny_run(4, compile=True), "cpu")
    fallback.fit(progress=False)
    assert fallback.history == eager.history
    assert capsys.readouterr().err.count("torch.compile of the training step failed (RuntimeError)") == 1
    from transformers_mini.toy.run import resumable_part

    assert resumable_part(tiny_run(compile=True).to_dict()) == resumable_part(tiny_run().to_dict())

"""Interventions on the toy, on models whose answer is known: clamping a layer to the pattern it already
computes changes nothing, zeroing V's stream term gives the baseline, the transplanted patterns equal
their plain definitions; and the command end to end, with one-line refusals."""

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny import TINY_TOY

from amicl.cli import amicl
from amicl.common.io import read_csv
from amicl.task import ICLTask, TaskConfig
from transformers_mini.core.config import StreamConfig, ToyConfig, TrainConfig
from transformers_mini.core.hooks import Hooks
from transformers_mini.core.model import ToyTransformer
from transformers_mini.toy.interventions import (
    Intervention,
    amicl_pattern,
    binding_pattern,
    default_grid,
    hooks_for,
    intervention_accuracy,
)

torch.set_num_threads(1)
TASK = TaskConfig()


@pytest.fixture(scope="module")
def batch():
    b = ICLTask.from_seed(TASK, 0).sample(64, np.random.default_rng(0))
    return torch.from_numpy(b.x), torch.from_numpy(b.y)


def test_patterns_equal_their_plain_definitions():
    T, w = 5, 0.3
    p = binding_pattern(T, w).numpy()
    for t in range(T):
        expect = np.zeros(T)
        expect[t] = 1.0 if t == 0 else 1 - w
        if t:
            expect[t - 1] = w
        assert np.allclose(p[t], expect)
    content = torch.randn(2, 3, 6, 4, generator=torch.Generator().manual_seed(0))
    a, beta = 2.0, 7.0
    got = amicl_pattern(content, a, beta)[:, :, 0].numpy()
    for e in range(2):
        for b in range(3):
            x = content[e, b].double().numpy()
            m = [((a * x[t - 1] if t else 0) + x[t]) / (a + 1) for t in range(5)]  # keys: the context, not the query
            s = np.array([beta * m[t] @ (a * x[5] / (a + 1)) for t in range(5)])
            expect = np.append(np.exp(s - s.max()) / np.exp(s - s.max()).sum(), 0.0)
            assert np.allclose(got[e, b], expect, atol=1e-6)
    with pytest.raises(ValueError, match="w must be in"):
        default_grid(binding_w=(1.5,))


def positional_binding_toy(w: float) -> ToyTransformer:
    """A toy whose layer 1 attends by position alone: mass w on t-1 and 1-w on t (to e^-40)."""
    model = ToyTransformer([ToyConfig()], [0])
    P, C = TASK.n_pos, 40.0
    M = torch.zeros(P, P)
    for i in range(P):
        M[i, i] = C + math.log(1 - w)
        if i:
            M[i, i - 1] = C + math.log(w)
    with torch.no_grad():
        model.qkv[0, 0, 0].zero_()
        model.qkv[0, 0, 1].zero_()
        model.qkv[0, 0, 0, :P, :P] = torch.eye(P)  # q_t = p_t
        model.qkv[0, 0, 1, :P, :P] = M.T  # k_j = M^T p_j, so q_t . k_j = M[t, j]
    return model


def test_clamping_a_layer_to_the_binding_it_computes_changes_nothing(batch):
    x, _ = batch
    model = positional_binding_toy(0.6)
    clean = model(x)
    _, attn = model(x, return_attn=True)
    assert torch.allclose(attn[0], binding_pattern(x.shape[1], 0.6, attn[0].shape[:-2]), atol=1e-6)
    same = model(x, hooks=Hooks(hooks_for(Intervention("binding", w=0.6), x[None], TASK.n_pos)))
    assert torch.allclose(same, clean, atol=1e-4)
    other = model(x, hooks=Hooks(hooks_for(Intervention("binding", w=0.2), x[None], TASK.n_pos)))
    assert not torch.allclose(other, clean, atol=1e-2)


def test_transplanting_amicl_into_a_layer_that_computes_it_changes_nothing(batch):
    """Layer 2's scores at the query set to AMICL's (a model that already retrieves as AMICL does): the
    transplant of softmax(beta * m_t . m_q) leaves its output where it was."""
    x, _ = batch
    model = ToyTransformer([ToyConfig()], [1])
    a, beta = 2.0, 30.0
    target = amicl_pattern(x[None, ..., TASK.n_pos :], a, beta)
    scores = {"blocks.1.attn.hook_attn_scores": lambda s: torch.log(target).expand_as(s).clone()}
    computes_amicl = model(x, hooks=Hooks(scores))
    transplant = hooks_for(Intervention("amicl", a=a, beta=beta), x[None], TASK.n_pos)
    assert torch.allclose(model(x, hooks=Hooks({**scores, **transplant})), computes_amicl, atol=1e-5)
    assert not torch.allclose(model(x), computes_amicl, atol=1e-2)


def test_zeroing_the_stream_term_gives_the_baseline_accuracy(batch):
    x, y = batch
    model = ToyTransformer([ToyConfig(), ToyConfig(stream=StreamConfig(kind="V"))], [3, 3])
    sets = {"ic": (x.expand(2, *x.shape), y.expand(2, *y.shape))}
    grid = [Intervention("clean"), Intervention("zero", "stream"), Intervention("mean", "attn1")]
    acc = intervention_accuracy(model, sets, TASK.n_pos, grid, chunk=24)
    assert acc[("zero:stream", "ic")][1] == acc[("clean", "ic")][0]  # V without its stream is the none member
    assert acc[("zero:stream", "ic")][0] == acc[("clean", "ic")][0]  # the none member has nothing to zero
    base = intervention_accuracy(ToyTransformer([ToyConfig()], [3]), {"ic": (x[None], y[None])}, TASK.n_pos, grid)
    assert ("zero:stream", "ic") not in base and ("mean:attn1", "ic") in base  # no stream point: skipped


def test_the_command_writes_every_intervention_and_refuses_in_one_line(tmp_path):
    run = CliRunner().invoke(amicl, ["transformer", "compare", "--streams", "none,V", *map(str, TINY_TOY), "--steps",
                                     "2", "--out", str(tmp_path / "run")])  # fmt: skip
    assert run.exit_code == 0, run.output
    args = ["transformer", "intervene", str(tmp_path / "run"), "--amicl-a", "2", "--amicl-beta", "10", "--threads", "1"]
    r = CliRunner().invoke(amicl, [*args, "--binding-w", "0.5,1", "--out", str(tmp_path / "iv")])
    assert r.exit_code == 0, r.output
    rows = read_csv(tmp_path / "iv" / "interventions.csv")
    labels = {r["intervention"] for r in rows}
    assert labels == {"clean", "zero:attn0", "mean:attn0", "zero:attn1", "mean:attn1", "zero:stream", "mean:stream",
                      "binding:w=0.5", "binding:w=1", "amicl:a=2,beta=10"}  # fmt: skip
    assert {(r["arm"], r["seed"]) for r in rows} == {("none", "0"), ("V", "0"), ("none", "1"), ("V", "1")}
    assert "| amicl:a=2,beta=10 |" in (tmp_path / "iv" / "interventions.md").read_text()
    patch = read_csv(tmp_path / "iv" / "patching.csv")
    assert len(patch) == 4 * 2 * 6 and "Activation patching" in (tmp_path / "iv" / "interventions.md").read_text()
    fig = CliRunner().invoke(amicl, ["figures", "interventions", str(tmp_path / "iv"), "--out", str(tmp_path / "f"),
                                     "--format", "png"])  # fmt: skip
    assert fig.exit_code == 0 and (tmp_path / "f" / "interventions.png").stat().st_size > 10_000, fig.output
    bad = CliRunner().invoke(amicl, [*args, "--binding-w", "2", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "binding w must be in [0, 1], got 2.0" in bad.stderr
    assert not (tmp_path / "bad").exists()
    wrong = CliRunner().invoke(amicl, ["transformer", "intervene", str(tmp_path / "iv"), "--out", str(tmp_path / "x")])
    assert wrong.exit_code == 2 and "streams" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1


def test_induction_pattern_equals_its_plain_definition():
    from transformers_mini.toy.interventions import induction_pattern

    classes = torch.tensor([[[3, 5, 3, 3], [1, 2, 4, 7]]])  # N = 3 items and the query's class last
    p = induction_pattern(classes, 7)[0, :, 0].numpy()
    assert np.allclose(p[0], [0, 0.5, 0, 0, 0, 0.5, 0])  # labels after items 0 and 2 (class 3)
    assert np.allclose(p[1], [0, 0, 0, 0, 0, 0, 1])  # no item of class 7: the query itself


def clamped_trainer(clamp, w=0.6, steps=4, arms=("none", "V")):
    from transformers_mini.toy.run import Run
    from transformers_mini.toy.train import Trainer

    task = TaskConfig(K=16, L=8, N=2, Nmax=3, D=12)
    arms = {a: ToyConfig(d_in=task.input_dim, n_labels=task.L, init_D=task.D,
                         stream=StreamConfig(kind=a) if a != "none" else StreamConfig()) for a in arms}  # fmt: skip
    train = TrainConfig(steps=steps, batch=16, eval_every=2, eval_size=40, checkpoint_every=2, clamp=clamp, clamp_w=w)
    return Trainer(Run(arms, [0], task, train), "cpu")


def test_clamping_to_the_pattern_a_model_already_has_changes_nothing():
    """Layer 1 built to attend by position to the predecessor alone (w = 1, its softmax saturated, so its
    Q and K get no gradient either way; at w < 1 they would, through the logit difference of t-1 and t):
    training clamped to the binding w = 1 follows the unclamped training."""
    runs = []
    for clamp in ("none", "binding"):
        trainer = clamped_trainer(clamp, w=1.0)
        P, M = trainer.run.task.n_pos, torch.zeros(trainer.run.task.n_pos, trainer.run.task.n_pos)
        for i in range(1, P):
            M[i, i - 1] = 40.0
        with torch.no_grad():
            trainer.model.qkv[:, 0, :2] = 0
            trainer.model.qkv[:, 0, 0, :P, :P] = torch.eye(P)
            trainer.model.qkv[:, 0, 1, :P, :P] = M.T
        trainer.fit(progress=False)
        runs.append(trainer)
    free, clamped = runs
    for a, b in zip(free.history, clamped.history):
        assert all(a[k] == pytest.approx(b[k], abs=1e-4) for k in ("train_loss", "ic", "iw") if a[k] != "")
    assert torch.allclose(free.model.qkv, clamped.model.qkv, atol=1e-5)


def test_a_clamped_pattern_gets_no_gradient_and_is_kept_in_evaluation():
    trainer = clamped_trainer("binding", w=2 / 3)
    before = trainer.model.qkv[:, 0, :2].detach().clone()
    trainer.fit(progress=False)
    decay = (1 - trainer.run.train.weight_decay) ** trainer.run.train.steps
    assert torch.allclose(trainer.model.qkv[:, 0, :2], before * decay)  # layer 1's Q and K: weight decay only
    assert not trainer.probes  # the probes would read the clamped pattern
    free = clamped_trainer("none")
    free.model.load_state_dict(trainer.model.state_dict())
    assert not np.array_equal(free.evaluate()["ic"], trainer.evaluate()["ic"]) or not np.array_equal(
        free.evaluate()["test"], trainer.evaluate()["test"]
    )  # evaluation reads the clamped pattern too
    induction = clamped_trainer("induction")
    induction.fit(progress=False)
    assert np.isfinite([h["train_loss"] for h in induction.history if h["train_loss"] != ""]).all()


def test_the_clamp_options_on_the_command_line(tmp_path):
    base = ["transformer", "compare", "--streams", "none,V", *map(str, TINY_TOY), "--steps", "2"]
    r = CliRunner().invoke(amicl, [*base, "--clamp", "binding", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert '"clamp": "binding"' in (tmp_path / "c" / "config.json").read_text()
    assert not (tmp_path / "c" / "probes.csv").exists()
    bad = CliRunner().invoke(amicl, [*base, "--clamp", "binding", "--clamp-w", "1.5", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "clamp_w" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    other = CliRunner().invoke(amicl, [*base, "--clamp", "induction", "--resume", "--out", str(tmp_path / "c")])
    assert other.exit_code == 2 and len(other.stderr.strip().splitlines()) == 1


def test_activation_patching_known_answers():
    """Patching layer 1's whole residual at every position from the corrupted run gives the corrupted
    answer (share 1); patching nowhere moves nothing; the corruption changes only the query class's labels."""
    from transformers_mini.toy.interventions import corrupt, patching, role_masks

    task = ICLTask.from_seed(TASK, 0)
    b = task.test_set("ic", 64, np.random.default_rng(1))
    x2, y2 = corrupt(b, task.lam, TASK.n_pos, np.random.default_rng(2))
    N = b.labels.shape[1]
    for s in range(64):
        same = np.flatnonzero(b.classes[s, :N] == b.classes[s, N])
        changed = np.flatnonzero((x2[s] != b.x[s]).any(-1))
        assert set(changed) == set(2 * same + 1) and (y2[s] != b.y[s]) == bool(len(same))
        assert y2[s] not in b.labels[s] or not len(same)
    masks = {r: m[None] for r, m in role_masks(b.classes, b.x.shape[1]).items()}
    masks["nowhere"] = np.zeros_like(masks["all"])
    model = ToyTransformer([ToyConfig()], [0])
    t = [torch.from_numpy(v)[None] for v in (b.x, x2, b.y, y2)]
    effects = patching(model, *t, masks)
    assert effects[("blocks.0.hook_resid_post", "all")][0] == 1.0
    assert effects[("blocks.0.hook_resid_post", "nowhere")][0] == 0.0
    assert effects[("blocks.0.hook_attn_out", "nowhere")][0] == 0.0
    assert masks["query-class labels"].sum() == sum((b.classes[s, :N] == b.classes[s, N]).sum() for s in range(64))

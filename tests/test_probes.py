"""Every probe on a hand-built model or attention pattern whose answer is known."""

import math

import numpy as np
import pytest
import torch

from amicl.memory.hopfield import MemoryConfig, retrieve
from amicl.task import ICLTask, TaskConfig, episodes_from_batch
from transformers_mini.core.config import ToyConfig
from transformers_mini.core.model import ToyTransformer
from transformers_mini.toy.probes import (
    PROBES,
    agreement,
    amicl_scores,
    binding_fit,
    binding_gain,
    composition,
    induction_score,
    k_mass,
    previous_token_score,
    probe_model,
)

TASK = TaskConfig(K=64, L=8, N=8, Nmax=8, D=16, B=2, epsilon=0.1)
A_BUILT = 1.5


@pytest.fixture(scope="module")
def probe_batch():
    task = ICLTask.from_seed(TASK, np.random.SeedSequence(0))
    return task, task.test_set("ic", 64, np.random.default_rng(1))


def shift_head_model(a: float = A_BUILT, sharp: float = 40.0) -> ToyTransformer:
    """Layer 1 attends from every position p to p - 1 (positional one-hot dims, logit ``sharp``) and
    writes a x_{t-1}: W_q = sharp I and W_k = the shift e_p -> e_{p+1} on the positional dims, W_v = a I
    on the content dims. Layer 2 is left as drawn."""
    P, d = TASK.n_pos, TASK.input_dim
    model = ToyTransformer([ToyConfig(d_in=d, n_labels=TASK.L, init_D=TASK.D)], [0])
    with torch.no_grad():
        w = model.qkv[0, 0]
        w.zero_()
        w[0, :P, :P] = sharp * torch.eye(P)
        w[1, :P, :P] = torch.diag(torch.ones(P - 1), 1)  # row p -> column p + 1
        w[2, P:, P:] = a * torch.eye(d - P)
    return model


def test_a_previous_token_head_scores_one_and_its_binding_weight_is_recovered(probe_batch):
    _, batch = probe_batch
    model = shift_head_model()
    out = probe_model(model, batch.x, batch.classes, TASK.n_pos)
    assert set(out) == set(PROBES) and all(v.shape == (1,) for v in out.values())
    assert out["prev_token"][0] == pytest.approx(1.0, abs=1e-12)
    assert out["a_fit"][0] == pytest.approx(A_BUILT, abs=1e-9) and out["a_fit_r2"][0] == pytest.approx(1.0, abs=1e-9)
    assert out["a_gain"][0] == pytest.approx(A_BUILT, abs=1e-9)
    uniform = shift_head_model(sharp=0.0)  # attends evenly to all earlier tokens: far from t-1
    assert probe_model(uniform, batch.x, batch.classes, TASK.n_pos)["prev_token"][0] < 0.5


def test_previous_token_score_of_uniform_attention_is_the_mean_of_one_over_t():
    T = 5
    attn = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
    assert previous_token_score(attn.expand(1, 3, T, T))[0] == pytest.approx(np.mean(1 / np.arange(2, T + 1)))


def test_binding_fit_reads_a_mix_built_by_hand():
    """With attention split 0.2 : 0.8 between t and t-1 and W_v = 2 I: h = (1 + 0.4) x_t + 1.6 x_{t-1}."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 7, 6, generator=g)
    attn = torch.zeros(1, 50, 7, 7)
    attn[..., 0, 0] = 1
    idx = torch.arange(1, 7)
    attn[..., idx, idx], attn[..., idx, idx - 1] = 0.2, 0.8
    a, r2 = binding_fit(x, attn, 2 * torch.eye(6)[None], n_pos=2)
    assert a[0] == pytest.approx(1.6 / 1.4) and r2[0] == pytest.approx(1.0)


def test_binding_gain_sees_a_rotated_predecessor_that_the_fit_misses():
    """W_v = 2 R (R a rotation of the content dims) and attention 0.2 : 0.8 on t and t-1: layer 1 writes
    1.6 R x_{t-1}, which x_{t-1}'s own directions do not hold (a_fit ~ 0); the gain is 1.6 / |I + 0.4 R|."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 7, 6, generator=g, dtype=torch.float64)
    x[..., :2] = 0  # two positional dims, left out of the content
    attn = torch.zeros(1, 200, 7, 7, dtype=torch.float64)
    attn[..., 0, 0] = 1
    idx = torch.arange(1, 7)
    attn[..., idx, idx], attn[..., idx, idx - 1] = 0.2, 0.8
    R = torch.zeros(6, 6, dtype=torch.float64)
    R[2:, 2:] = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))[0]
    w = 2 * R
    a_fit, _ = binding_fit(x, attn, w[None], n_pos=2)
    own = (x[:, 1::2][..., 2:] + 0.2 * x[:, 1::2] @ w[:, 2:]).norm(dim=-1) / x[:, 1::2][..., 2:].norm(dim=-1)
    expected = 1.6 / float(own[:, :3].mean())
    assert binding_gain(x, attn, w[None], n_pos=2)[0] == pytest.approx(expected, rel=1e-9)
    assert abs(a_fit[0]) < 0.2


def test_induction_score_counts_the_labels_after_the_query_class(probe_batch):
    _, batch = probe_batch
    S, N = batch.classes.shape[0], TASK.N
    T = 2 * N + 1
    match = batch.classes[:, :N] == batch.classes[:, N:]
    assert match.any(1).all()  # bursty ic sequences: the query's class is in every context
    perfect = torch.zeros(1, S, T, T)
    perfect[0, :, -1, 1 : 2 * N : 2] = torch.from_numpy(match / match.sum(1, keepdims=True))
    uniform = torch.full((1, S, T, T), 1 / T)
    scores = induction_score(torch.cat([perfect, uniform]), batch.classes)
    assert scores[0] == pytest.approx(1.0) and scores[1] == pytest.approx(match.sum(1).mean() / T)


def test_amicl_scores_match_the_memorys_own_retrieval(probe_batch):
    """argmax of amicl_scores is the key the AMICL memory (a = 2, argmax) retrieves, on every sequence."""
    task, batch = probe_batch
    s = amicl_scores(torch.from_numpy(batch.x[:, :, TASK.n_pos :]), 2.0)[0]
    ep = episodes_from_batch(batch, task, np.random.default_rng(0))
    r = retrieve(ep, MemoryConfig(a=2.0))
    real = r.weights[:, : s.shape[1]].sum(1) > 0  # the memory's decoy key (index T) won nowhere else
    assert real.mean() > 0.9 and r.accuracy(ep.target) > 0.9  # premise: the memory solves these sequences
    assert np.array_equal(s.argmax(1).numpy()[real], r.weights[real, : s.shape[1]].argmax(1))


def test_agreement_of_logits_built_from_amicl_scores():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(1, 40, 9, generator=g, dtype=torch.float64)
    z = 3.0 * s + torch.randn(1, 40, 1, generator=g, dtype=torch.float64)  # per-sequence offsets cancel
    corr, top1, slope = agreement(z, s)
    assert corr[0] == pytest.approx(1.0) and top1[0] == 1.0 and slope[0] == pytest.approx(3.0)
    corr, top1, slope = agreement(-z, s)
    assert corr[0] == pytest.approx(-1.0) and top1[0] == 0.0 and slope[0] == pytest.approx(-3.0)


@pytest.mark.parametrize("n, mass, expected", [(1, 0.9, 1), (10, 0.9, 9), (10, 1.0, 10), (7, 0.5, 4)])
def test_k_mass_of_one_hot_and_uniform_rows(n, mass, expected):
    p = torch.zeros(1, 3, 12)
    p[..., :n] = 1 / n
    assert k_mass(p, mass)[0] == expected


def test_composition_scores_of_hand_built_circuits():
    d = 8
    qkv = torch.zeros(2, 2, 3, d, d)
    eye = torch.eye(d)
    qkv[0, 0, 2] = eye  # member 0: W_OV1 = I, W_Q2 = W_K2 = W_OV2 = I: every score 1/sqrt(d)
    qkv[0, 1] = eye
    half = torch.zeros(d, d)
    half[:4, :4] = torch.eye(4)
    qkv[1, 0, 2] = half  # member 1: layer 1 writes the first 4 dims, layer 2 reads only the last 4
    qkv[1, 1] = torch.eye(d) - half
    out = composition(qkv)
    for name in ("q_comp", "k_comp", "v_comp"):
        assert out[name][0] == pytest.approx(1 / math.sqrt(d)) and out[name][1] == 0.0


def test_probes_refuse_what_they_cannot_read():
    with pytest.raises(ValueError, match="two-layer"):
        probe_model(ToyTransformer([ToyConfig(n_layer=3)], [0]), None, None, 17)
    with pytest.raises(ValueError, match="mass"):
        k_mass(torch.ones(1, 1, 3), 0.0)
    with pytest.raises(ValueError, match="does not fit"):
        induction_score(torch.ones(1, 2, 5, 5), np.zeros((2, 4), dtype=int))


def test_one_probe_set_per_member_equals_probing_each_member_alone():
    task = ICLTask.from_seed(TASK, np.random.SeedSequence(0))
    b0, b1 = (task.test_set("ic", 16, np.random.default_rng(i)) for i in (1, 2))
    cfg = ToyConfig(d_in=TASK.input_dim, n_labels=TASK.L, init_D=TASK.D)
    both = probe_model(
        ToyTransformer([cfg, cfg], [3, 4]),
        np.stack([b0.x, b1.x]),
        np.stack([b0.classes, b1.classes]),
        TASK.n_pos,
    )
    for i, (seed, b) in enumerate(((3, b0), (4, b1))):
        alone = probe_model(ToyTransformer([cfg], [seed]), b.x, b.classes, TASK.n_pos)
        for name in PROBES:
            assert both[name][i] == pytest.approx(alone[name][0], rel=1e-5, abs=1e-9), name


def test_a_probe_is_one_registration_computed_tabulated_timed_and_drawn(probe_batch, monkeypatch):
    """Registering a dummy probe (layer 1's mean attention on the first token) puts it in probe_model's
    output, the final-probe table, the onset analysis and its own panel of the figure (a ninth panel
    grows the grid instead of being dropped)."""
    from transformers_mini.toy import mechanisms, probe_specs
    from transformers_mini.toy.figures import plot_probes

    monkeypatch.setattr(probe_specs, "PROBES", list(probe_specs.PROBES))
    first = probe_specs.Probe("first_token", "layer 1: mass on token 0", onset=True, final=True,
                              compute=lambda c: c["attn1"][..., 0].mean((1, 2)).numpy())  # fmt: skip
    probe_specs.register(first)
    with pytest.raises(ValueError, match="registered already"):
        probe_specs.register(first)
    _, batch = probe_batch
    out = probe_model(shift_head_model(), batch.x, batch.classes, TASK.n_pos)
    assert "first_token" in out and out["first_token"].shape == (1,) and 0 <= out["first_token"][0] <= 1
    rows = [{"arm": "none", "seed": 0, "step": s, **{k: float(v[0]) + s for k, v in out.items()}} for s in (0, 10)]
    assert "first_token" in mechanisms.final_probe_section(rows, ["none"])[3]
    history = [{"arm": "none", "seed": 0, "step": s, "ic": ic} for s, ic in ((0, 0.0), (10, 0.99))]
    assert "start_first_token" in mechanisms.onsets(rows, history)[0]
    fig = plot_probes(rows, history, ["none"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert len(titles) == len(probe_specs.panels()) == 9 and "layer 1: mass on token 0" in titles

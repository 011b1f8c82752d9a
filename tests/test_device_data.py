"""The device sampler draws what the NumPy generator draws: the same structures exactly, the same
distributions within sampling error (fixed seeds, bounds of several standard errors), and a generator
state that resumes exactly."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency

from amicl.task import ICLTask, TaskConfig
from transformers_mini.toy.device_data import DeviceSampler

torch.set_num_threads(1)
S = 6000


@pytest.fixture(scope="module", params=[TaskConfig(), TaskConfig(no_repeats=False, alpha=1.0, epsilon=0.5, B=4)])
def pair(request):
    task = ICLTask.from_seed(request.param, 0)
    b = task.sample(S, np.random.default_rng(1))
    x, y, classes = DeviceSampler(task, "cpu", 1).sample(S)
    return task, (b.x, b.y, b.classes), (x.numpy(), y.numpy(), classes.numpy())


def test_every_sequence_has_the_generators_structure(pair):
    task, *draws = pair
    c = task.config
    N, P, K = c.N, c.n_pos, c.K
    for x, y, classes in draws:
        pos = x[..., :P]
        assert (pos.sum(-1) == 1).all() and (np.diff(pos.argmax(-1), axis=1) == 1).all()  # consecutive one-hots
        labels = classes % c.L
        assert (y == labels[:, N]).all()
        assert np.array_equal(x[:, 1 : 2 * N : 2, P:], task.lam[labels[:, :N]])  # label tokens are exact
        bursty = np.array([len(set(r[:N])) == N // c.B and all(list(r[:N]).count(k) == c.B for k in set(r[:N]))
                           and r[N] in r[:N] for r in classes])  # fmt: skip
        novel = (classes >= K).any(1)
        assert bursty[novel].all() and ((classes >= K).all(1) == novel).all()  # novel sequences are bursty
        if c.no_repeats:
            assert all(len(set(r[:N] % c.L)) == N // c.B for r in classes[bursty])
        assert y[bursty].tolist() == [lab for lab, r in zip(y[bursty], labels[bursty]) if lab in r[:N]]


def test_the_mixture_and_the_class_frequencies_agree(pair):
    task, (nx, ny, nc), (tx, ty, tc) = pair
    c = task.config
    for draw in (nc, tc):
        novel = (draw >= c.K).any(1).mean()
        assert abs(novel - c.p_C) < 4 * math.sqrt(c.p_C * (1 - c.p_C) / S)
    # the target's label and the shift: two-sample chi-square, no difference at p < 1e-3
    for a, b, k in ((ny, ty, c.L), (nx[:, 0, : c.n_pos].argmax(-1), tx[:, 0, : c.n_pos].argmax(-1), c.n_pos)):
        table = np.array([np.bincount(a, minlength=k), np.bincount(b, minlength=k)])
        table = table[:, table.sum(0) > 0]
        assert chi2_contingency(table).pvalue > 1e-3
    known = lambda cl: cl[cl < c.K]  # noqa: E731  the training classes shown, Zipf-ranked by alpha
    top = lambda cl: np.mean(known(cl) < c.K // 8)  # noqa: E731
    assert abs(top(nc) - top(tc)) < 0.02


def test_item_noise_has_the_generators_variance(pair):
    task, (nx, _, nc), (tx, _, tc) = pair
    c = task.config
    e = 1 / math.sqrt(1 + c.epsilon**2)
    for x, classes in ((nx, nc), (tx, tc)):
        items, cls = x[:, 0 : 2 * c.N : 2, c.n_pos :], classes[:, : c.N]
        known = cls < c.K
        residual = items[known] - e * task.mu[cls[known]]
        assert residual.var() == pytest.approx(e**2 * c.epsilon**2 / c.D, rel=0.03)
        assert abs(residual.mean()) < 1e-3


def test_seeded_and_resumable():
    task = ICLTask.from_seed(TaskConfig(), 0)
    a, b = DeviceSampler(task, "cpu", 7), DeviceSampler(task, "cpu", 7)
    assert torch.equal(a.sample(64)[0], b.sample(64)[0])
    state = a.state()
    first = a.sample(64)[0]
    a.set_state(state)
    assert torch.equal(a.sample(64)[0], first)
    assert not torch.equal(DeviceSampler(task, "cpu", 8).sample(64)[0], DeviceSampler(task, "cpu", 7).sample(64)[0])


def test_training_on_device_data_resumes_exactly_and_is_another_sample(tmp_path):
    from transformers_mini.core.config import StreamConfig, ToyConfig, TrainConfig
    from transformers_mini.toy.run import Run
    from transformers_mini.toy.train import Trainer

    task = TaskConfig(K=16, L=8, N=2, Nmax=3, D=12)
    streams = {"none": StreamConfig(), "V": StreamConfig(kind="V")}
    arms = {a: ToyConfig(d_in=task.input_dim, n_labels=task.L, init_D=task.D, stream=st) for a, st in streams.items()}

    def trainer(steps, data="device"):
        train = TrainConfig(steps=steps, batch=16, eval_every=2, eval_size=40, checkpoint_every=2, data=data)
        return Trainer(Run(arms, [0, 1], task, train), "cpu")

    straight = trainer(6)
    straight.fit(tmp_path / "a", progress=False)
    trainer(2).fit(tmp_path / "b", progress=False)
    resumed = trainer(6)
    resumed.load(tmp_path / "b" / "checkpoint.pt")
    resumed.fit(tmp_path / "b", progress=False)
    assert resumed.history == straight.history
    assert torch.equal(resumed.model.qkv, straight.model.qkv)
    host = trainer(6, "numpy")
    host.fit(progress=False)
    assert [h["train_loss"] for h in host.history] != [h["train_loss"] for h in straight.history]

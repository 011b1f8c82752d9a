"""Reddy's training sequences drawn by torch on the training device (issue 30: on a GPU the NumPy
generator and the host-to-device copy were 74% of a batched toy step).

``DeviceSampler`` draws what ``amicl.task.ICLTask.sample`` draws, the same distributions step by step
(class frequencies, bursty and novel sequences, labels, item noise, positional shifts), from a
``torch.Generator`` of its own on the device: one generator per seed, so a seed's data do not depend
on which other seeds share its ensemble. The streams differ from NumPy's, so a run on device data is
another sample of the same experiment, not the same numbers; the NumPy generator stays the reference
(the test sets the AMICL memory and the networks are scored on are always NumPy's), and
``tests/test_device_data.py`` checks the two against each other with fixed seeds and bounds.
"""

from __future__ import annotations

import math

import torch

from amicl.task import ICLTask


class DeviceSampler:
    """Training batches of ``task`` drawn on ``device`` from a generator seeded by ``seed`` (an int)."""

    def __init__(self, task: ICLTask, device: str | torch.device, seed: int):
        self.task, self.c = task, task.config
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device).manual_seed(int(seed))
        self.mu = torch.from_numpy(task.mu).to(self.device)
        self.lam = torch.from_numpy(task.lam).to(self.device)
        self.class_p = torch.from_numpy(task.class_p).to(self.device, torch.float32)
        self.log_p = self.class_p.log()

    def state(self) -> torch.Tensor:
        """The generator's state (for a checkpoint); ``set_state`` restores it exactly."""
        return self.gen.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.gen.set_state(state)

    def _rand(self, *shape) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen, device=self.device)

    def sample(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x (size, 2N+1, n_pos+D) float32, y (size,) int64, classes (size, N+1)), as the x, y and classes
        of ``ICLTask.sample(size, rng)`` (novel class j written K + j).
        Every row's classes are drawn under each scheme (i.i.d., bursty, bursty novel) and the row's own
        scheme selected with ``where``: no step waits on the device for a count (no host sync)."""
        c, dev = self.c, self.device
        N, L, K, D = c.N, c.L, c.K, c.D
        novel = self._rand(size) < c.p_C
        bursty = novel | (self._rand(size) < c.p_B)
        classes = torch.multinomial(self.class_p, size * (N + 1), replacement=True, generator=self.gen)
        classes = classes.view(size, N + 1)  # i.i.d. from P: context and target
        if c.B > 0:
            known = self._bursty_classes(size, K, self.log_p)
            fresh = self._bursty_classes(size, c.n_novel, None)
            classes = torch.where(bursty[:, None], torch.where(novel[:, None], fresh, known), classes)
        labels = classes % L
        classes = torch.where(novel[:, None], classes + K, classes)

        novel_mu = torch.randn(c.n_novel, D, generator=self.gen, device=dev) / math.sqrt(D)
        fresh_mu = novel_mu[(classes - K).clamp(min=0, max=c.n_novel - 1)]
        means = torch.where(novel[:, None, None], fresh_mu, self.mu[classes.clamp(max=K - 1)])
        eta = torch.randn(size, N + 1, D, generator=self.gen, device=dev)
        items = (means + (c.epsilon / math.sqrt(D)) * eta) * (1 / math.sqrt(1 + c.epsilon**2))

        P, T = c.n_pos, c.seq_len
        x = torch.zeros(size, T, c.input_dim, device=dev)
        x[:, 0 : 2 * N : 2, P:] = items[:, :N]
        x[:, 1 : 2 * N : 2, P:] = self.lam[labels[:, :N]]
        x[:, 2 * N, P:] = items[:, N]
        shift = torch.randint(0, P - T + 1, (size,), generator=self.gen, device=dev)
        x.scatter_(2, (shift[:, None] + torch.arange(T, device=dev))[:, :, None], 1.0)
        return x, labels[:, N].clone(), classes

    def _bursty_classes(self, n: int, n_pool: int, log_p) -> torch.Tensor:
        """(n, N+1): N/B distinct classes shown B times each in a random order, the target among them."""
        c, dev = self.c, self.device
        m = c.N // c.B
        if c.no_repeats:  # N/B distinct labels, then one class per label, uniform among those sharing it
            n_labels = min(c.L, n_pool)
            lab = torch.argsort(self._rand(n, n_labels), dim=1)[:, :m]
            per_label = (n_pool - lab + c.L - 1) // c.L
            chosen = lab + c.L * torch.floor(self._rand(n, m) * per_label).to(torch.int64)
        else:  # N/B distinct classes without replacement from P (Gumbel top-k; uniform for novel pools)
            u = self._rand(n, n_pool).clamp_min(torch.finfo(torch.float32).tiny)
            score = -torch.log(-torch.log(u)) + (0.0 if log_p is None else log_p)
            chosen = torch.topk(score, m, dim=1).indices
        context = chosen.repeat_interleave(c.B, dim=1)
        context = torch.gather(context, 1, torch.argsort(self._rand(n, c.N), dim=1))
        target = chosen[torch.arange(n, device=dev), torch.randint(0, m, (n,), generator=self.gen, device=dev)]
        return torch.cat([context, target[:, None]], dim=1)

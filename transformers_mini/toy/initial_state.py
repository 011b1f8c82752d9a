"""What a toy model looks like at step 0, per seed: the covariates that may decide when ICL appears.

Seeds differ in take-off time far more than arms do (results/streams), and the official code's seeds
are known to differ in their third MLP layer's scalar bias and activity (docs/reference.md
sec. 5). Recorded per seed, on a fixed batch drawn from the seed's own task
by a stream that training never uses (spawn key 4):

- ``init_b1..b3``: the MLP layers' scalar biases;
- ``init_z3_norm``: mean norm of the third (last) MLP layer's output at the query token;
- ``init_z3_active``: the fraction of its units that are active (> 0);
- ``init_attn_entropy_l1``, ``_l2``: mean entropy (nats) of each layer's attention at the query token.

The init depends on the seed only (not on the stream arm), so one row per seed serves every arm.
"""

from __future__ import annotations

import numpy as np
import torch

from amicl.task import ICLTask
from transformers_mini.core.hooks import run_with_hooks
from transformers_mini.toy.run import Run, seed_streams

PROBE_BATCH = 512


@torch.no_grad()
def initial_covariates(run: Run, seed: int, batch: int = PROBE_BATCH) -> dict:
    """The covariates of ``seed``'s initial model under ``run``'s task (any arm: the init is shared)."""
    from transformers_mini.core.config import StreamConfig
    from transformers_mini.core.model import ToyTransformer

    arm = next(iter(run.arms.values()))
    base = type(arm).from_dict({**arm.to_dict(), "stream": StreamConfig().to_dict()})
    model = ToyTransformer([base], [seed])
    task = ICLTask.from_seed(run.task, seed_streams(seed)[0])
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(4,)))
    x = torch.from_numpy(task.sample(batch, rng).x)[None]
    last = f"mlp.{model.config.mlp_layers - 1}.hook_post"
    (_, attn), acts = run_with_hooks(model, x, cache=[last], return_attn=True)
    z3 = acts[last][0]  # (B, d)
    row = {f"init_b{i + 1}": float(model.mlp_b[0, i]) for i in range(model.mlp_b.shape[1])}
    row["init_z3_norm"] = float(z3.norm(dim=-1).mean())
    row["init_z3_active"] = float((z3 > 0).float().mean())
    for layer, p in enumerate(attn):
        q = p[0, :, -1].clamp_min(1e-30)  # (B, T): the query token's attention
        row[f"init_attn_entropy_l{layer + 1}"] = float(-(q * q.log()).sum(-1).mean())
    return row

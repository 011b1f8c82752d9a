"""Contract tests over every registered plug-in: a policy, scorer, task or stream is tested by being
registered, and the CLI offers exactly the registered names."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from amicl.common.registry import Registry
from evolution.config import POLICIES, SCORERS
from evolution.rollout import rollout
from evolution.tasks import TASKS, sample
from transformers_mini.core.attention import KVCache
from transformers_mini.core.config import STREAMS, GPTConfig, StreamConfig, ToyConfig
from transformers_mini.core.model import GPT, ToyTransformer

torch.set_num_threads(1)


def make_policy(name: str, n_up: int = 32, budget=None):
    """Every registered policy, built the way the CLI builds it (NAMM with all-zero parameters)."""
    cls = POLICIES[name]
    if name == "namm":
        scorer = SCORERS["bam"]()
        return cls(scorer, np.zeros(scorer.n_params), n_up=n_up, budget=budget)
    return cls(n_up, budget)


def cache_with_attention(T=24, H=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    cache = KVCache(1)
    cache.append(0, torch.randn(1, H, T, 4, generator=g), torch.randn(1, H, T, 4, generator=g), torch.arange(T))
    cache.n_seen = T
    return cache, torch.softmax(torch.randn(1, H, 32, T, generator=g), -1)


def test_registry_imports_lazily_and_names_the_choices():
    reg = Registry("thing", {"a": "math:sqrt"})
    assert reg.names == ("a",) and "a" in reg and reg["a"](4.0) == 2.0
    with pytest.raises(ValueError, match=r"unknown thing 'b'; choose from a"):
        reg["b"]


@pytest.mark.parametrize("name", POLICIES.names)
def test_policy_contract_budget_is_kept_per_head(name):
    """With a budget below the cache size, every head keeps at most that many tokens, the newest among them;
    the registry key is the policy's own name."""
    policy = make_policy(name, budget=8)
    assert policy.name == name
    cache, probs = cache_with_attention()
    policy.reset()
    policy.observe(0, probs, cache)  # one full update window: n_up query rows over the 24 cached tokens
    if policy.needs_future:  # an oracle: the full-cache attention of a 24-token prompt's last query
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=32, block_size=64, n_layer=1, n_head=4, n_kv_head=2, d_model=16)).eval()
        policy.prepare(model, torch.randint(0, 32, (1, 24)))
    if policy.needs_queries:  # and the 24 tokens' queries (4 query heads over the 2 KV heads)
        policy.observe_queries(0, torch.randn(1, 4, 24, 4, generator=torch.Generator().manual_seed(2)), cache, None)
    keep = policy.keep(0, cache)
    assert keep.shape == cache.alive[0].shape and keep.dtype == torch.bool
    assert keep[..., -1].all()
    assert (keep.sum(-1) == (24 if name == "full" else 8)).all()


@pytest.mark.parametrize("name", POLICIES.names)
def test_policy_contract_keep_all_equals_no_policy(name):
    """A budget at least the prompt's length (or none, for the policies that may go without) changes nothing."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=32, block_size=256, n_layer=2, n_head=2, d_model=16, pos="rotary")).eval()
    prompt = torch.randint(0, 32, (2, 100))
    plain, _ = rollout(model, prompt, 6)
    budget = None if name in ("full", "namm") else 256
    out, stats = rollout(model, prompt, 6, make_policy(name, budget=budget))
    assert torch.equal(plain, out)
    assert all(f == 1.0 for f in stats.alive_fraction)


@pytest.mark.parametrize("name", SCORERS.names)
def test_scorer_contract_zero_parameters_keep_all_and_batching_is_exact(name):
    scorer = SCORERS[name]()
    g = torch.Generator().manual_seed(1)
    X = torch.randn(3, 2, 9, 25, generator=g)
    valid = torch.rand(3, 2, 9, generator=g) > 0.2
    assert valid.any() and (~valid).any()  # this seed's mask has both kinds of rows
    zero = scorer.score(torch.zeros(3, scorer.n_params), X, valid)
    assert (zero[valid] == 0).all() and torch.isinf(zero[~valid]).all()
    params = torch.randn(3, scorer.n_params, generator=g) * 0.2
    batched = scorer.score(params, X, valid)
    single = torch.cat([scorer.score(params[i : i + 1], X[i : i + 1], valid[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched[valid], single[valid], atol=1e-5, rtol=1e-5)
    assert not torch.equal(batched[valid], zero[valid])


@pytest.mark.parametrize("task", TASKS)
def test_task_contract_exact_length_and_seeded(task):
    a = sample(task, 3, 256, np.random.default_rng(5))
    b = sample(task, 3, 256, np.random.default_rng(5))
    assert a.tokens.shape == (3, 256) and np.array_equal(a.tokens, b.tokens) and np.array_equal(a.answer, b.answer)


@pytest.mark.parametrize("kind", [s for s in STREAMS if s != "none"])
def test_stream_contract_zero_weight_is_the_baseline_and_unit_weight_is_not(kind):
    x = torch.randn(2, 6, 17, 150, generator=torch.Generator().manual_seed(0)).float()
    cfgs = [ToyConfig(), ToyConfig(stream=StreamConfig(kind=kind, lam=0.0)), ToyConfig(stream=StreamConfig(kind=kind))]
    logits = ToyTransformer(cfgs, [3, 3, 3])(x[:1].expand(3, -1, -1, -1))
    assert torch.equal(logits[1], logits[0])
    assert not torch.allclose(logits[2], logits[0])


def _choices(command, option: str) -> tuple:
    return tuple(next(p for p in command.params if p.name == option).type.choices)


def test_cli_choices_are_the_registries():
    from amicl.memory.cli import memory
    from amicl.memory.reference import SEP_CODES, SIM_CODES
    from evolution.cli import eval_cmd, evolve
    from transformers_mini.toy.cli import train_cmd

    assert _choices(eval_cmd, "policy") == POLICIES.names
    assert _choices(evolve, "scorer") == SCORERS.names
    refused = CliRunner().invoke(train_cmd, ["--stream", "Z", "--out", "unused"])  # arm specs: checked by parse_arm
    assert refused.exit_code == 2 and ", ".join(STREAMS) in refused.output
    run = memory.commands["run"]
    assert _choices(run, "similarity") == tuple(SIM_CODES) and _choices(run, "separation") == tuple(SEP_CODES)

"""NAMM over a whole prompt at once (``NAMM.prompt_scores``, how a press that compresses after the prompt
runs it) equals NAMM watching the same prompt in a rollout that evicts nothing; and the evolved NAMM as a
kvpress press on a tiny random Hugging Face Llama (where kvpress installs)."""

import numpy as np
import pytest
import torch

from evolution.config import SCORERS
from evolution.policies import NAMM
from evolution.rollout import rollout
from evolution.spectrogram import NormStats
from transformers_mini.core.attention import KVCache
from transformers_mini.core.config import GPTConfig
from transformers_mini.core.model import GPT

torch.set_num_threads(1)


class Watching(NAMM):
    """NAMM that scores at every update as usual but keeps every token, recording the last scores."""

    def keep(self, layer, cache):
        self.last = getattr(self, "last", {})
        self.last[layer] = self.score(layer, cache).clone()
        return cache.alive[layer]


def random_namm(cls=NAMM, frozen=True):
    """Random BAM parameters and frozen normalisation statistics (as an evolved NAMM has)."""
    scorer = SCORERS["bam"]()
    rng = np.random.default_rng(0)
    params = rng.normal(0, 0.3, scorer.n_params)
    mean = rng.uniform(0, 0.1, 17)
    norm = NormStats.from_dict(
        {"n": 100, "sum": list(100 * mean), "sumsq": list(100 * (mean**2 + 0.01)), "frozen": frozen}
    )
    return cls(scorer, params, n_up=64, norm=norm)


def test_prompt_scores_equal_a_rollout_that_evicts_nothing():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=512, n_layer=2, n_head=4, n_kv_head=2, d_model=32, pos="rotary"))
    model.eval()
    prompt = torch.randint(0, 64, (2, 200))  # three full windows of 64, then 8 tokens
    watcher = random_namm(Watching)
    rollout(model, prompt, 1, watcher)  # updates at 64, 128 and 192 tokens seen, then none in the 8 left
    cache = KVCache(2)
    with torch.no_grad():
        _, attn = model(prompt, cache, return_attn=True)
    namm = random_namm()
    for layer in range(2):
        probs = attn[layer].view(2, 2, 2, 200, 200).mean(2)
        scores = namm.prompt_scores(cache.k[layer], cache.v[layer], probs)
        torch.testing.assert_close(scores[..., :192], watcher.last[layer], rtol=1e-4, atol=1e-5)
        assert torch.isinf(scores[..., 192:]).all() and torch.isfinite(scores[..., :192]).all()
        assert scores[..., :192].std() > 0  # the random NAMM tells tokens apart
    with pytest.raises(ValueError, match="probs must be"):
        namm.prompt_scores(cache.k[0], cache.v[0], probs[..., :10])
    with pytest.raises(ValueError, match="frozen normalisation"):
        random_namm(frozen=False).prompt_scores(cache.k[0], cache.v[0], probs)


def test_namm_press_compresses_a_hugging_face_llama():
    pytest.importorskip("kvpress")
    transformers = pytest.importorskip("transformers")
    from evolution.namm_press import NAMMPress

    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
    cfg = transformers.LlamaConfig(vocab_size=128, num_key_value_heads=2, max_position_embeddings=512, **sizes)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.config._attn_implementation = "eager"
    ids = torch.randint(0, 128, (1, 160), generator=torch.Generator().manual_seed(1))
    press = NAMMPress.from_run("builtin:namm", compression_ratio=0.75)
    seen, score = [], press.score

    def spy(module, hidden_states, keys, values, attentions, kwargs):
        s = score(module, hidden_states, keys, values, attentions, kwargs)
        seen.append((keys, s))
        return s

    object.__setattr__(press, "score", spy)
    cache = transformers.DynamicCache()
    with torch.no_grad(), press(model):
        model(ids, past_key_values=cache)
    for layer, (keys, s) in enumerate(seen):
        kept = cache.layers[layer].keys
        assert kept.shape[2] == 40  # 160 tokens at 4:1
        expected = keys.gather(2, s.topk(40, dim=-1).indices[..., None].expand(-1, -1, -1, keys.shape[-1]))
        assert torch.equal(kept, expected)
        assert torch.isinf(s[..., 128:]).all()  # the 32 tokens after the last full window are kept
    with pytest.raises(ValueError, match="needs a NAMM"):
        NAMMPress(compression_ratio=0.5)

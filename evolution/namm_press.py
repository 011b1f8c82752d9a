"""An evolved NAMM as a kvpress press, for any Hugging Face causal LM kvpress supports (needs
``pip install kvpress``; the model loaded with ``attn_implementation="eager"``, since NAMM reads the
attention each token receives).

kvpress compresses the cache once, after the prompt: the press runs the NAMM over the prompt's attention in
windows of ``n_up`` queries without evicting (``NAMM.prompt_scores``) and keeps the best-scoring share
``1 - compression_ratio`` of every layer and KV head, the NAMM's budget mode. NAMM's features (attention
spectrograms, ages) do not depend on the model's size, so a NAMM evolved on this package's GPT applies to
any model; how well it transfers to one is not measured here.

    from transformers import pipeline
    from evolution.namm_press import NAMMPress

    pipe = pipeline("kv-press-text-generation", model="Qwen/Qwen3-0.6B",
                    model_kwargs={"attn_implementation": "eager"})
    press = NAMMPress.from_run("builtin:namm", compression_ratio=0.75)
    answer = pipe(context, question=question, press=press)["answer"]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from kvpress import ScorerPress


@dataclass
class NAMMPress(ScorerPress):
    """``namm``: an ``evolution.policies.NAMM`` (``from_run`` loads the best mean of an evolve run)."""

    namm: object = None

    def __post_init__(self):
        super().__post_init__()
        if self.namm is None or not hasattr(self.namm, "prompt_scores"):
            raise ValueError("NAMMPress needs a NAMM: NAMMPress.from_run('builtin:namm', compression_ratio=...)")

    @classmethod
    def from_run(cls, run: str = "builtin:namm", compression_ratio: float = 0.5, n_up: int = 64) -> NAMMPress:
        """The NAMM of a namm-evolve run folder or a built-in artifact (``amicl artifacts list``)."""
        from amicl.common.artifacts import resolve
        from evolution.evaluate import load_namm

        return cls(compression_ratio=compression_ratio, namm=load_namm(resolve(run), n_up, None))

    def score(self, module, hidden_states, keys, values, attentions, kwargs) -> torch.Tensor:
        if attentions is None:
            raise ValueError('NAMMPress reads the attention weights: load the model with attn_implementation="eager"')
        B, H_kv, T, _ = keys.shape
        probs = attentions[..., -T:, -T:].reshape(B, H_kv, -1, T, T).mean(2)  # query heads of a KV group averaged
        return self.namm.prompt_scores(keys, values, probs.to(keys.dtype))

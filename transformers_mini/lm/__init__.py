"""The language model: story world and tokenizer, training with the values stream, IOI scoring,
figures and ``amicl lm``."""

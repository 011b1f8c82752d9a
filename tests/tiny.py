"""Command-line arguments of the tiny runs several test modules build (one place, so they stay alike)."""

# a 1-layer, 16-wide base model trained for one step on 64-token prompts
TINY_BASE = ["--layers", 1, "--d-model", 16, "--heads", 2, "--kv-heads", 1, "--steps", 1, "--batch", 2,
             "--min-context", 64, "--max-context", 64, "--threads", 1]  # fmt: skip

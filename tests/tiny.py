"""Command-line arguments of the tiny runs several test modules build (one place, so they stay alike)."""

# a 1-layer, 16-wide base model trained for one step on 64-token prompts
TINY_BASE = ["--layers", 1, "--d-model", 16, "--heads", 2, "--kv-heads", 1, "--steps", 1, "--batch", 2,
             "--min-context", 64, "--max-context", 64, "--queries", 1, "--threads", 1]  # fmt: skip

# the toy's task at K=16 classes, sequences of 2 items, a 2-member (seeds 0, 1) batch of 16, evaluated every 2 steps
TINY_TOY = ["--K", 16, "--L", 8, "--N", 2, "--Nmax", 3, "--D", 12, "--batch", 16, "--eval-every", 2,
            "--checkpoint-every", 2, "--eval-size", 40, "--seeds", 2, "--threads", 1, "--device", "cpu"]  # fmt: skip

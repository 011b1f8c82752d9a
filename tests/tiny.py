"""Command-line arguments and ``reproduce all`` plans of the tiny runs several test modules build (one place, so
they stay alike)."""

# a 1-layer, 16-wide base model trained for one step on 64-token prompts
TINY_BASE = ["--layers", 1, "--d-model", 16, "--heads", 2, "--kv-heads", 1, "--steps", 1, "--batch", 2,
             "--min-context", 64, "--max-context", 64, "--queries", 1, "--threads", 1]  # fmt: skip

# the toy's task at K=16 classes, sequences of 2 items, a 2-member (seeds 0, 1) batch of 16, evaluated every 2 steps
TINY_TOY = ["--K", 16, "--L", 8, "--N", 2, "--Nmax", 3, "--D", 12, "--batch", 16, "--eval-every", 2,
            "--checkpoint-every", 2, "--eval-size", 40, "--seeds", 2, "--threads", 1, "--device", "cpu"]  # fmt: skip


def tiny_plan(scale):
    """Every step of ``reproduce all`` with every size shrunk to seconds (the NAMM artifact's recorded check,
    a minute of evaluation, is left to tests/test_report.py's own test of it)."""
    from amicl.report import build_plan

    train = ["--K", "16", "--L", "8", "--N", "2", "--Nmax", "3", "--D", "12", "--batch", "16", "--eval-every", "2"]
    train += ["--checkpoint-every", "2", "--eval-size", "40", "--threads", "1", "--device", "cpu"]
    steps = build_plan(
        {
            "amicl": {"trials": ("--trials", "40", "--only", "a_K512")},
            "streams": {"args": ("--streams", "none,V", "--seeds", "2", "--steps", "4", *train)},
            "theory": {
                "args": ("--grid-B", "1", "--grid-epsilon", "0.1", "--seeds", "1", "--steps", "2", "--eval-every")
                + ("1", "--eval-size", "20", "--checkpoint-every", "1", "--threads", "1")
            },
            "namm": {
                "base": (*[str(a) for a in TINY_BASE], "--tasks", "needle", "--eval-every", "1"),
                "evolve": ("--stages", "needle", "--generations", "1", "--popsize", "3", "--prompts", "2")
                + ("--dev-prompts", "2", "--dev-every", "1", "--context", "64", "--n-up", "32", "--threads", "1"),
                "eval": ("--tasks", "needle", "--prompts", "4", "--context", "64", "--n-up", "32", "--metric")
                + ("prob", "--threads", "1"),
            },
            "lm": {
                "train": ("--stories", "200", "--steps", "2", "--batch", "4", "--context", "64", "--vocab", "300")
                + ("--eval-every", "1", "--val-batches", "1", "--threads", "1"),
                "seeds": 1,
                "ioi": ("--prompts", "20", "--threads", "1"),
            },
        }
    )
    return [s for s in steps if s.name != "artifacts/namm"]


def kill_plan(scale):
    """Three of the tiny plan's steps (the notebook, the toy pair, one language model): enough for kills to
    land before, inside and between steps, in seconds."""
    return [s for s in tiny_plan(scale) if s.name in ("amicl", "streams/run", "lm/none_seed0")]

"""The evolution room's configs and plug-in registries, torch-free: the CLI reads its defaults and
choices here (and ``amicl namm table`` / ``amicl figures namm`` run) without loading torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from amicl.common.registry import Registry
from amicl.common.validate import Config, check_choice, check_float, check_int
from evolution.tasks import TASKS, VOCAB
from transformers_mini.core.config import PRECISIONS, GPTConfig

# Memory policies: ``POLICIES[name](n_up, budget)`` for the training-free ones; ``namm`` also needs a
# scorer, its parameters and normalisation statistics (``evolution.evaluate.load_namm``).
POLICIES = Registry(
    "policy",
    {
        "full": "evolution.policies:FullCache",
        "recency": "evolution.policies:Recency",
        "h2o": "evolution.policies:H2O",
        "l2": "evolution.policies:L2Norm",
        "random": "evolution.policies:RandomPolicy",
        "namm": "evolution.policies:NAMM",
        "tova": "evolution.presses:TOVA",
        "snapkv": "evolution.presses:SnapKV",
        "pyramidkv": "evolution.presses:PyramidKV",
        "keydiff": "evolution.presses:KeyDiff",
        "expected_attention": "evolution.presses:ExpectedAttention",
        "kvzip": "evolution.presses:KVzip",
        "oracle": "evolution.policies:Oracle",
    },
)
SCORERS = Registry("scorer", {"bam": "evolution.scorers:BAM", "mlp": "evolution.scorers:MLPScorer"})
MASKS = ("backward", "none", "forward")
METRICS = ("accuracy", "prob")


@dataclass(frozen=True)
class BaseConfig(Config):
    """What to train: the model, the task mix and the optimisation (AdamW, warm-up, clipping)."""

    model: GPTConfig = field(
        default_factory=lambda: GPTConfig(
            vocab_size=VOCAB,
            block_size=4096,
            n_layer=4,
            n_head=4,
            n_kv_head=2,
            d_model=128,
            pos="rotary",
            token_shift=True,
        )
    )
    tasks: tuple[str, ...] = TASKS
    min_context: int = 128
    max_context: int = 1024
    filler_frac: float = 0.5
    queries: int = 8
    curriculum: int = 1000
    steps: int = 4000
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 100
    eval_every: int = 250
    eval_size: int = 64
    seed: int = 0
    precision: str = "fp32"  # bf16: the forward pass under bfloat16 autocast (CUDA; weights stay fp32)

    def __post_init__(self):
        check_choice("precision", self.precision, PRECISIONS)
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", GPTConfig.from_dict(self.model))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        for t in self.tasks:
            if t not in TASKS:
                raise ValueError(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
        for name, lo in (
            ("min_context", 32),
            ("max_context", 32),
            ("queries", 1),
            ("curriculum", 0),
            ("steps", 1),
            ("batch", 1),
            ("warmup", 0),
            ("eval_every", 1),
            ("eval_size", 1),
            ("seed", 0),
        ):
            object.__setattr__(self, name, check_int(name, getattr(self, name), lo=lo))
        object.__setattr__(self, "lr", check_float("lr", self.lr, lo=0.0, lo_open=True))
        if self.max_context < self.min_context or self.max_context > self.model.block_size:
            raise ValueError(
                f"need min_context <= max_context <= block_size; got {self.min_context}, "
                f"{self.max_context}, {self.model.block_size}"
            )
        if self.model.vocab_size < VOCAB:
            raise ValueError(f"the tasks need vocab_size >= {VOCAB}")

    @property
    def contexts(self) -> list[int]:
        out, c = [], self.min_context
        while c <= self.max_context:
            out.append(c)
            c *= 2
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "model": self.model.to_dict(), "tasks": list(self.tasks)}


@dataclass(frozen=True)
class EvolveConfig(Config):
    # the tasks the frozen base model (results/namm/base_curriculum) does well enough to be scored on;
    # icl_classification and needle are kept back as held-out tasks, passage_retrieval and multi_hop
    # are near chance for it (a full-cache score of 0 leaves the normalised fitness undefined)
    stages: tuple = (("kv_retrieval",), ("kv_retrieval", "variable_tracking"))
    generations: tuple = (20, 20)
    scorer: str = "bam"
    mask: str = "backward"
    popsize: int = 16
    sigma0: float = 0.065
    separable: bool = True
    n_up: int = 64
    context: int = 1024
    filler_frac: float = 0.5
    # run 2 of results/namm: 8 prompts and a 32-prompt dev set were too noisy to select on
    prompts_per_task: int = 16
    dev_prompts: int = 128
    dev_every: int = 5
    metric: str = "prob"  # smooth, but it rewards confident forgetting over exact match (results/namm)
    batch_rows: int = 16  # rows per batched rollout: fastest measured on 2 CPU cores (bench_evolution)
    seed: int = 0
    # None: NAMM's threshold rule (score < 0 evicts; the cache kept is the evolution's choice). A fraction
    # f: every layer keeps its round(f * context) best-scored tokens, so the fitness cannot trade cache
    # for score and the evolution, its evaluation and every baseline share one budget by construction.
    budget_fraction: float | None = None
    # pycma's uncertainty handling (UH-CMA-ES): each generation re-evaluates ceil(2 + popsize / 20)
    # candidates on a second draw of fresh prompts and raises sigma when the ranks change beyond chance
    noise_handling: bool = False

    def noise_reevals(self) -> int:
        return -(-(40 + self.popsize) // 20) if self.noise_handling else 0  # ceil(2 + popsize / 20)

    def budget(self) -> int | None:
        """The per-layer token budget of the budget mode (None in threshold mode)."""
        return None if self.budget_fraction is None else max(1, round(self.budget_fraction * self.context))

    def __post_init__(self):
        if self.budget_fraction is not None:
            object.__setattr__(
                self, "budget_fraction", check_float("budget_fraction", self.budget_fraction, 0.0, 1.0, lo_open=True)
            )
        object.__setattr__(self, "stages", tuple(tuple(s) for s in self.stages))
        object.__setattr__(self, "generations", tuple(int(g) for g in self.generations))
        if not self.stages or len(self.stages) != len(self.generations):
            raise ValueError("need one generation count per stage")
        for stage in self.stages:
            for t in stage:
                check_choice("task", t, TASKS)
        for g in self.generations:
            check_int("generations", g, lo=1)
        SCORERS.check(self.scorer)
        for name, lo in (
            ("popsize", 2),
            ("n_up", 16),
            ("context", 32),
            ("prompts_per_task", 1),
            ("dev_prompts", 1),
            ("dev_every", 1),
            ("batch_rows", 1),
            ("seed", 0),
        ):
            check_int(name, getattr(self, name), lo=lo)
        if self.n_up % 16:
            raise ValueError(f"n_up must be a multiple of 16, got {self.n_up}")
        check_float("sigma0", self.sigma0, lo=0.0, lo_open=True)
        check_choice("metric", self.metric, METRICS)
        check_choice("mask", self.mask, MASKS)
        if not isinstance(self.noise_handling, bool):
            raise ValueError(f"noise_handling must be a bool, got {self.noise_handling!r}")

    def make_scorer(self):
        """The registered scorer, built with this config's mask where it takes one (BAM)."""
        return SCORERS[self.scorer](mask=self.mask) if self.scorer == "bam" else SCORERS[self.scorer]()


@dataclass(frozen=True)
class EvalConfig(Config):
    """One ``amicl namm eval``: a policy at one or more budgets on fresh prompts of every task, scored
    against the full cache on the same prompts. ``budgets``: token counts per (layer, head), per-layer
    lists, or None (the policy's own budget: full cache, or NAMM's score < 0 rule)."""

    policy: str = "namm"
    budgets: tuple = (None,)
    tasks: tuple = (
        "kv_retrieval",
        "passage_retrieval",
        "variable_tracking",
        "icl_classification",
        "needle",
        "multi_hop",
    )
    prompts: int = 64
    context: int = 1024
    n_up: int = 64
    metric: str = "accuracy"
    seed: int = 1
    batch_rows: int = 32
    window: int = 64  # SnapKV / PyramidKV observation window (kvpress default)
    kernel: int = 5  # SnapKV / PyramidKV pooling width (kvpress default)

    HELP = {
        "window": "Observation window of snapkv and pyramidkv: the last queries whose attention scores the cache.",
        "kernel": "Pooling width of snapkv and pyramidkv over neighbouring tokens (odd).",
    }

    def __post_init__(self):
        POLICIES.check(self.policy)
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "budgets", tuple(self.budgets))
        if not self.tasks:
            raise ValueError("need at least one task")
        for t in self.tasks:
            check_choice("task", t, TASKS)
        for name, lo in (
            ("prompts", 1),
            ("context", 32),
            ("n_up", 16),
            ("seed", 0),
            ("batch_rows", 1),
            ("window", 1),
            ("kernel", 1),
        ):
            object.__setattr__(self, name, check_int(name, getattr(self, name), lo=lo))
        check_choice("metric", self.metric, METRICS)
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (a centred pooling window), got {self.kernel}")
        if not self.budgets:
            raise ValueError("need at least one budget")
        if None in self.budgets and self.policy not in ("full", "namm"):
            raise ValueError(f"policy {self.policy} needs --budget, --budget-fraction or --match")
        for b in self.budgets:
            for v in b if isinstance(b, (list, tuple)) else [b]:
                if v is not None and check_int("budget", v) < 1:
                    raise ValueError(f"budgets must be >= 1 token, got {v}")

    def policy_options(self) -> dict:
        """The options the chosen policy takes (its ``OPTIONS``), read from this config."""
        return {name: getattr(self, name) for name in getattr(POLICIES[self.policy], "OPTIONS", ())}

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "tasks": list(self.tasks),
            "budgets": [list(b) if isinstance(b, tuple) else b for b in self.budgets],
        }

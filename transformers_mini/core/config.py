"""Frozen, validated configs for the compact Transformers and their training (ValueError, not assert)."""

from __future__ import annotations

from dataclasses import dataclass, field

from amicl.common.validate import Config, check_choice, check_float, check_int

# The stream arms, registered once: arm name -> the projections (of q, k, v) to which an earlier layer's
# same projection is added. The toy, the GPT, the LM, the CLI and the contract tests read this mapping, so
# a new arm is one ``register_stream`` call.
STREAMS: dict[str, str] = {"none": "", "V": "v", "K": "k", "Q": "q"}
STREAM_SOURCES = ("previous", "first")
STREAM_MIXES = ("add", "convex")
INITS = ("independent", "official")
CLAMPS = ("none", "binding", "induction")  # what a toy's training holds fixed (TrainConfig.clamp)
DATA_SOURCES = ("numpy", "device")  # who draws the toy's training batches (TrainConfig.data)
POSITIONS = ("learned", "rotary")
PRECISIONS = ("fp32", "tf32", "bf16")  # the forward pass's arithmetic (core.device.precision); weights stay fp32
PRECISION_HELP = (
    "tf32: float32 matmuls on CUDA's TF32 tensor cores (no effect on a CPU); bf16: bfloat16 autocast over fp32 "
    "weights, meant for CUDA (on a CPU it runs, slower, e.g. to test the path)."
)


def register_stream(name: str, projections: str) -> str:
    """Add a stream arm ``name`` that streams ``projections`` (a non-empty subset of "qkv", e.g. "kv")."""
    if name in STREAMS or not name.isidentifier():
        raise ValueError(f"stream arm name {name!r} is taken or not an identifier")
    if not projections or set(projections) - set("qkv") or len(set(projections)) != len(projections):
        raise ValueError(f"stream arm {name!r}: projections must be distinct letters of 'qkv', got {projections!r}")
    STREAMS[name] = "".join(sorted(projections, key="qkv".index))
    return name


@dataclass(frozen=True)
class StreamConfig(Config):
    """A residual attention stream: layer l's projection ``kind`` (V, K or Q) also receives the same
    projection computed by an earlier layer from that layer's own input.

    - ``kind="V", source="previous", mix="add", lam=1`` is the AMICL paper's stream: layer-2 values
      V2 x1 + V1 x0 in the toy, the l-1 -> l chain in its language model.
    - ``source="first", mix="convex", lam=0.5`` is ResFormer / the nanoGPT speedrun: (1-lam) v_l + lam v_1;
      ``learn=True`` makes lam a learnable parameter per layer (initialised at ``lam``).
    - ``detach=True`` keeps the stream's forward value but lets no gradient flow through the added
      term (is the benefit the extra information or the extra gradient path? AMICL paper, open question).
    """

    kind: str = "none"
    source: str = "previous"
    mix: str = "add"
    lam: float = 1.0
    learn: bool = False
    detach: bool = False

    def __post_init__(self):
        check_choice("stream", self.kind, STREAMS)
        check_choice("stream source", self.source, STREAM_SOURCES)
        check_choice("stream mix", self.mix, STREAM_MIXES)
        object.__setattr__(self, "lam", check_float("stream lambda", self.lam))
        for name in ("learn", "detach"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"stream {name} must be a bool, got {getattr(self, name)!r}")


def parse_arm(spec: str, defaults: dict | None = None) -> StreamConfig:
    """An arm of a stream comparison from its name: ``KIND`` or ``KIND:option:...`` with options
    ``lam=F``, ``detach``, ``learn``, ``source=previous|first``, ``mix=add|convex``; e.g. ``V:lam=0.5``,
    ``V:detach``. ``defaults`` (StreamConfig fields) apply to every stream arm unless the name overrides
    them; ``none`` is the baseline and takes no options."""
    kind, *opts = spec.strip().split(":")
    check_choice("stream", kind, STREAMS)
    if kind == "none":
        if opts:
            raise ValueError(f"arm {spec!r}: the baseline 'none' takes no options")
        return StreamConfig()
    fields = {**(defaults or {}), "kind": kind}
    for opt in opts:
        name, _, value = opt.partition("=")
        if name in ("detach", "learn") and not value:
            fields[name] = True
        elif name == "lam" and value:
            try:
                fields["lam"] = float(value)
            except ValueError:
                raise ValueError(f"arm {spec!r}: lam must be a number, got {value!r}") from None
        elif name in ("source", "mix") and value:
            fields[name] = value
        else:
            raise ValueError(f"arm {spec!r}: unknown option {opt!r} (lam=F, detach, learn, source=..., mix=...)")
    return StreamConfig(**fields)


@dataclass(frozen=True)
class ToyConfig(Config):
    """The AMICL / Reddy two-layer ICL model (AMICL code, ``transformer_v2_v_residuals_*.py``).

    One head per layer with d_in x d_in Q, K, V, no 1/sqrt(d) scaling, no LayerNorm, no output
    projection, causal softmax; then ``mlp_layers`` ReLU layers with scalar biases on the last token
    and a bias-free readout to ``n_labels`` logits. Attention weights are drawn from N(0, 1/init_D).
    ``init="official"`` couples the draws as the official code's key reuse does (``model.toy_init``).
    """

    d_in: int = 150
    n_labels: int = 32
    n_layer: int = 2
    mlp_layers: int = 3
    init_D: int = 85
    stream: StreamConfig = field(default_factory=StreamConfig)
    init: str = "independent"

    def __post_init__(self):
        for name, lo in (("d_in", 1), ("n_labels", 2), ("n_layer", 1), ("mlp_layers", 1), ("init_D", 1)):
            object.__setattr__(self, name, check_int(name, getattr(self, name), lo=lo))
        if isinstance(self.stream, dict):
            object.__setattr__(self, "stream", StreamConfig.from_dict(self.stream))
        if self.stream.kind != "none" and self.n_layer < 2:
            raise ValueError("a residual stream needs n_layer >= 2")
        check_choice("init", self.init, INITS)
        if self.init == "official" and (self.mlp_layers < 3 or self.d_in < self.n_labels):
            raise ValueError(
                "init 'official' ties the readout to the third MLP layer: needs mlp_layers >= 3 and d_in >= n_labels"
            )


@dataclass(frozen=True)
class GPTConfig(Config):
    """A GPT-style decoder: pre-LN blocks, MLP, learned or rotary positions, grouped KV heads.

    ``scale=True`` divides attention logits by sqrt(d_head) (the AMICL 8M model does not).
    ``token_shift=True`` adds a learned embedding of the previous token to each token's input (RWKV's
    token shift; a one-step "smeared" input as in Olsson et al. 2022), so that a single attention
    layer can match "the token after k" without first growing a previous-token head.
    """

    vocab_size: int = 64
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 0  # 0: as many as n_head (no grouping)
    d_model: int = 128
    mlp_ratio: int = 4
    pos: str = "learned"
    scale: bool = True
    bias: bool = False
    token_shift: bool = False
    stream: StreamConfig = field(default_factory=StreamConfig)
    dropout: float = 0.0  # on the embeddings, attention probabilities, attention and MLP outputs (training)

    def __post_init__(self):
        object.__setattr__(self, "dropout", check_float("dropout", self.dropout, 0.0, 1.0, hi_open=True))
        for name, lo in (
            ("vocab_size", 2),
            ("block_size", 1),
            ("n_layer", 1),
            ("n_head", 1),
            ("n_kv_head", 0),
            ("d_model", 1),
            ("mlp_ratio", 1),
        ):
            object.__setattr__(self, name, check_int(name, getattr(self, name), lo=lo))
        check_choice("pos", self.pos, POSITIONS)
        if isinstance(self.stream, dict):
            object.__setattr__(self, "stream", StreamConfig.from_dict(self.stream))
        if self.d_model % self.n_head:
            raise ValueError(f"n_head must divide d_model; got d_model={self.d_model}, n_head={self.n_head}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_kv_head must divide n_head; got n_head={self.n_head}, n_kv_head={self.n_kv_head}")
        if self.pos == "rotary" and self.d_head % 2:
            raise ValueError(f"rotary positions need an even d_head, got {self.d_head}")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head


@dataclass(frozen=True)
class TrainConfig(Config):
    """Training of the ICL toy as in the AMICL code: plain SGD, lr 0.01, decoupled multiplicative
    weight decay theta <- (1 - weight_decay) theta - lr grad, online batches of 128, the four test sets
    evaluated every ``eval_every`` steps; ``threshold`` defines steps-to-ICL. ``clamp`` holds one attention
    pattern fixed from step 0, in training and evaluation alike (an intervention during training, as
    Singh et al. 2024's "artificial optogenetics"): ``binding``, layer 1's pattern at AMICL's binding
    (mass ``clamp_w`` on t-1, the rest on t); ``induction``, layer 2's pattern at the query spread evenly
    over the labels that follow an item of the query's class (all on the query itself where none
    does). A clamped run records no probes (they would read the clamped pattern)."""

    steps: int = 75_000
    batch: int = 128
    lr: float = 0.01
    weight_decay: float = 1e-6
    eval_every: int = 500
    eval_size: int = 10_000
    threshold: float = 0.95
    checkpoint_every: int = 5_000
    stop_when_reached: bool = False
    probe_size: int = 256  # ic sequences the mechanistic probes read at every evaluation (0: none)
    clamp: str = "none"  # binding: layer 1's pattern held at AMICL's binding; induction: layer 2's at the query
    clamp_w: float = 2 / 3  # the clamped binding's mass on the predecessor (AMICL's a = 2)
    # numpy: the reference generator on the host; device: the same distributions drawn by torch on the
    # training device (transformers_mini/toy/device_data.py), another sample of the same experiment
    data: str = "numpy"
    precision: str = "fp32"  # the arithmetic of training and evaluation (core.device.precision)
    # torch.compile the training step's forward pass and loss (unclamped runs; eager where compiling fails)
    compile: bool = False

    def __post_init__(self):
        check_choice("clamp", self.clamp, CLAMPS)
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be a bool, got {self.compile!r}")
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("data", self.data, DATA_SOURCES)
        object.__setattr__(self, "clamp_w", check_float("clamp_w", self.clamp_w, 0.0, 1.0))
        for name in ("steps", "batch", "eval_every", "eval_size", "checkpoint_every"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), lo=1))
        object.__setattr__(self, "probe_size", check_int("probe_size", self.probe_size, lo=0))
        object.__setattr__(self, "lr", check_float("lr", self.lr, lo=0.0, lo_open=True))
        object.__setattr__(self, "weight_decay", check_float("weight_decay", self.weight_decay, 0.0, 1.0, hi_open=True))
        object.__setattr__(self, "threshold", check_float("threshold", self.threshold, 0.0, 1.0, lo_open=True))
        if self.checkpoint_every % self.eval_every:
            raise ValueError(
                f"checkpoint_every ({self.checkpoint_every}) must be a multiple of eval_every ({self.eval_every})"
            )

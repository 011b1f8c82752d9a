"""Where a model runs: one choice of device for every room that trains or evaluates with torch."""

from __future__ import annotations

from contextlib import contextmanager

import torch


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda; got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but torch.cuda.is_available() is False")
    return torch.device(device)


@contextmanager
def precision(device: torch.device, name: str):
    """The arithmetic of a forward pass (``PRECISIONS``): fp32; tf32, float32 matmuls and convolutions on
    CUDA's TF32 tensor cores (10-bit mantissa; no effect on a CPU, whose matmuls stay fp32); bf16,
    bfloat16 autocast over fp32 master weights. The TF32 switches are restored on leaving."""
    from transformers_mini.core.config import PRECISIONS

    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = name == "tf32"
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=name == "bf16"):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def compiled(fn, what: str = "the training step"):
    """``torch.compile(fn)``, falling back to ``fn`` for good (one warning on stderr) when compiling or
    running the compiled code fails on this machine (no C compiler, an unsupported device, ...). An error
    of ``fn`` itself is raised again by the eager call."""
    import sys

    state = {"fn": torch.compile(fn)}

    def call(*args, **kwargs):
        if state["fn"] is not fn:
            try:
                return state["fn"](*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - any failure of the compiler: run eager from now on
                print(f"warning: torch.compile of {what} failed ({type(e).__name__}); running eager", file=sys.stderr)
                state["fn"] = fn
        return fn(*args, **kwargs)

    return call

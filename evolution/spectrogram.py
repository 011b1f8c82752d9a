"""NAMM token features: attention spectrograms, EMA over frames, normalisation, age embedding.

Exactly as the official method (Cetin et al. 2024; ``memory_policy/deep_embedding_spectogram.py``,
reference notes sec. 2): for every cached token, the column of attention it received from the last
n_up queries (query heads of a KV group averaged), with the previous window's last n_fft - hop = 16
values prepended; an STFT with n_fft 32, hop 16, periodic Hann window, no centring, giving 17
magnitude bins per frame; an EMA over frames with gamma = 0.99 per query (a = gamma^hop per frame,
a^frames on the old state; frames before a token existed dropped, not renormalised); per-bin
normalisation with statistics gathered on a first full-cache pass and then frozen; an 8-dim
sinusoidal embedding of the token's age.
"""

from __future__ import annotations

import numpy as np
import torch

N_FFT, HOP, N_BINS, GAMMA = 32, 16, 17, 0.99
AGE_DIMS, AGE_MAX_FREQ = 8, 50_000.0


def hann(n_fft: int = N_FFT, dtype=torch.float32, device=None) -> torch.Tensor:
    """Periodic Hann window w[m] = 0.5 - 0.5 cos(2 pi m / n_fft)."""
    m = torch.arange(n_fft, dtype=torch.float64, device=device)
    return (0.5 - 0.5 * torch.cos(2 * torch.pi * m / n_fft)).to(dtype)


def attention_spectrogram(columns, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """STFT magnitudes of attention columns: (..., n) -> (..., frames, n_fft//2 + 1).

    frames = (n - n_fft)//hop + 1; X[f, k] = |sum_m w[m] x[hop f + m] exp(-2 pi i k m / n_fft)|
    (no centring, no normalisation, one-sided).
    """
    x = torch.as_tensor(columns)
    if not torch.is_floating_point(x):
        x = x.float()
    if n_fft < 2 or hop < 1 or hop > n_fft:
        raise ValueError(f"need n_fft >= 2 and 1 <= hop <= n_fft; got n_fft={n_fft}, hop={hop}")
    if x.shape[-1] < n_fft:
        raise ValueError(f"columns need at least n_fft={n_fft} values, got {x.shape[-1]}")
    frames = x.unfold(-1, n_fft, hop)  # (..., F, n_fft)
    return torch.fft.rfft(frames * hann(n_fft, x.dtype, x.device), dim=-1).abs()


def ema_frames(
    spec: torch.Tensor, first_frame: torch.Tensor, old: torch.Tensor | None, gamma: float = GAMMA, hop: int = HOP
) -> torch.Tensor:
    """E <- a^F E_old + sum_f (1 - a) a^(F-1-f) m[f] X[f], a = gamma^hop (reference notes, sec. 2).

    spec: (..., T, F, bins) frames of every token; first_frame: (..., T) index of the first frame in
    which the token existed (m[f] = 1 iff f >= first_frame; 0 for tokens cached before the window);
    old: (..., T, bins) previous EMA state (zeros for new tokens), or None.
    """
    F = spec.shape[-2]
    a = gamma**hop
    f = torch.arange(F, device=spec.device)
    w = (1 - a) * a ** (F - 1 - f).to(spec.dtype)  # (F,)
    m = (f >= first_frame.unsqueeze(-1)).to(spec.dtype)  # (..., T, F)
    new = torch.einsum("...tf,...tfb->...tb", m * w, spec)
    return new if old is None else a**F * old + new


def age_embedding(age: torch.Tensor, dims: int = AGE_DIMS, max_freq: float = AGE_MAX_FREQ) -> torch.Tensor:
    """[sin(r w_0..), cos(r w_0..)] with w_d = max_freq^(-d/(dims/2)); age r >= 0 in tokens."""
    half = dims // 2
    omega = max_freq ** (-torch.arange(half, dtype=torch.float32, device=age.device) / half)
    ang = age.to(torch.float32).unsqueeze(-1) * omega
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class NormStats:
    """Per-bin mean and std pooled over every token of every update while ``frozen`` is False.

    NAMM gathers them on a first full-cache pass, then freezes them; they are saved with the checkpoint.
    """

    def __init__(self, bins: int = N_BINS):
        self.n = 0
        self.sum = np.zeros(bins)
        self.sumsq = np.zeros(bins)
        self.frozen = False

    def update(self, ema: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        if self.frozen:
            return
        x = ema.reshape(-1, ema.shape[-1]) if valid is None else ema[valid]
        x = x.double().cpu().numpy()
        self.n += len(x)
        self.sum += x.sum(0)
        self.sumsq += (x**2).sum(0)

    def freeze(self) -> None:
        if self.n == 0:
            raise ValueError("no statistics gathered: run a full-cache pass before freezing")
        self.frozen = True

    @property
    def mean(self) -> np.ndarray:
        return self.sum / max(self.n, 1)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.sumsq / max(self.n, 1) - self.mean**2, 0.0))

    def normalise(self, ema: torch.Tensor) -> torch.Tensor:
        """z = (E - mu) / max(sigma, 1e-7)."""
        mu = torch.as_tensor(self.mean, dtype=ema.dtype, device=ema.device)
        sd = torch.as_tensor(np.maximum(self.std, 1e-7), dtype=ema.dtype, device=ema.device)
        return (ema - mu) / sd

    def to_dict(self) -> dict:
        return {"n": self.n, "sum": self.sum.tolist(), "sumsq": self.sumsq.tolist(), "frozen": self.frozen}

    @classmethod
    def from_dict(cls, d: dict) -> "NormStats":
        s = cls(len(d["sum"]))
        s.n, s.sum, s.sumsq, s.frozen = d["n"], np.array(d["sum"]), np.array(d["sumsq"]), d["frozen"]
        return s

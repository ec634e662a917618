"""The flow-matching postfilter network v_θ(X_t, Y, t) on compressed STFT features.

Input: X_t and Y as [B, 2, F, N] each (F = n_fft/2+1 = 769 bins, N frames of hop 384),
t as [B] (or a scalar broadcast). Output: v as [B, 2, F, N].

Design for a 2-core CPU: the 4 input channels are patchified early (``patch_f`` bins ×
``patch_t`` frames per patch), processed by ConvNeXt-style blocks with depthwise 2-D
convolutions and per-position channel LayerNorm (no statistics over time), conditioned on t
by FiLM from a Fourier embedding, then un-patchified. Time look-ahead is bounded: only the
first ``lookahead_blocks`` blocks see one future patch.

Next to the patch path's additive output, full-resolution paths reach the output: a 1×1
convolution of [X_t, Y], and real gains on X_t − Y and on Y — per band from t alone, and per
bin from the content (a mask, un-patchified from the same features). The velocity's simplest
part — how much of the prior noise X_t − Y to remove at time t — is a per-bin linear
function whose coefficient depends on t and on the local signal (all of it in a silent bin:
v = −(X_t − Y)/(1 − t)); an additive output through the patch bottleneck (48 channels for
8×2×4 inputs) learns that slowly and leaves audible noise in quiet bins, gains learn it at
once. A per-bin gate adds to those gains what depends non-linearly on the bin's own level:
a small MLP (1×1 convolutions, FiLM on t, a learned per-bin offset) of log |Y|² and
log |X_t − Y|², the local signal-to-prior-noise ratio a Wiener-like shrinkage needs. Gains,
mask and gate start at zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PEAK_TOP_DBFS = 0.0
"""Loudest peak level of the training examples (each example: one level drawn uniformly
from [``train_postfilter.PostfilterTrain.min_peak_dbfs``, this])."""
INPUT_LEVEL = {"peak_dbfs": PEAK_TOP_DBFS, "release_db_per_s": 20.0, "floor_dbfs": -50.0}
"""The card's ``input_level``: the runtime presents input at the top of the training range."""
ENVELOPE = {"bands": 64, "max_gain_db": 24.0, "keep_below_hz": 1500.0}
"""The card's ``envelope``: after the ODE solve each frame gets the codec output's energy in
about 64 ERB-spaced bands, and the codec output's own bins below 1.5 kHz, where the network's
output is further from the clean signal than the codec's (:mod:`flowdec.dsp.envelope`)."""


@dataclass
class PostfilterConfig:
    n_fft: int = 1536
    hop: int = 384
    alpha: float = 0.3
    beta: float = 0.33
    patch_f: int = 8
    patch_t: int = 2
    channels: int = 48
    blocks: int = 6
    kernel_f: int = 5
    kernel_t: int = 3
    lookahead_blocks: int = 3
    mlp_ratio: int = 2
    t_embed: int = 32

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def padded_freq(self) -> int:
        return -(-self.n_freq // self.patch_f) * self.patch_f

    @property
    def lookahead_frames(self) -> int:
        return self.lookahead_blocks * self.patch_t + self.patch_t - 1


class FourierEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000.0), dim // 2)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        a = t[:, None] * self.freqs[None] * 2 * math.pi
        return torch.cat([torch.sin(a), torch.cos(a)], 1)


def channel_norm(h: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMS-normalise over channels at each (f, t) position: no statistics over time.

    One reduction instead of LayerNorm's two: channel reductions in NCHW are strided, and
    slow in onnxruntime on a CPU.
    """
    return h * torch.rsqrt((h * h).mean(1, keepdim=True) + eps)


class Block(nn.Module):
    def __init__(self, c: int, kf: int, kt: int, lookahead: int, ratio: int, emb: int) -> None:
        super().__init__()
        self.pad = (kt - 1 - lookahead, lookahead, kf // 2, kf // 2)  # (t_left, t_right, f, f)
        self.dw = nn.Conv2d(c, c, (kf, kt), groups=c)
        self.film = nn.Linear(emb, 2 * c)
        self.pw1 = nn.Conv2d(c, c * ratio, 1)
        self.pw2 = nn.Conv2d(c * ratio, c, 1)
        self.scale = nn.Parameter(torch.full((1, c, 1, 1), 0.1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.dw(F.pad(x, self.pad))
        h = channel_norm(h)
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, 1)
        h = h * (1 + scale) + shift
        h = self.pw2(F.gelu(self.pw1(h)))
        return x + self.scale * h


class BinGate(nn.Module):
    """Per-bin gains on X_t − Y and Y from log |Y|², log |X_t − Y|² and t (zero at start)."""

    def __init__(self, n_freq: int, hidden: int, emb: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(2, hidden, 1)
        self.bin_bias = nn.Parameter(torch.zeros(1, hidden, n_freq, 1))
        self.film = nn.Linear(emb, 2 * hidden)
        self.out = nn.Conv2d(hidden, 2, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_t: torch.Tensor, y: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        d = x_t - y
        feats = torch.cat([torch.log((y * y).sum(1, keepdim=True) + 1e-6),
                           torch.log((d * d).sum(1, keepdim=True) + 1e-6)], 1)
        h = self.inp(feats) + self.bin_bias[:, :, : x_t.shape[2]]
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, 1)
        return self.out(F.gelu(h * (1 + scale) + shift))


class PostfilterNet(nn.Module):
    def __init__(self, cfg: PostfilterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        pf, pt, c = cfg.patch_f, cfg.patch_t, cfg.channels
        self.embed = nn.Sequential(FourierEmbedding(cfg.t_embed), nn.Linear(cfg.t_embed, 128),
                                   nn.GELU(), nn.Linear(128, 128))
        self.inp = nn.Conv2d(4, c, (pf, pt), stride=(pf, pt))
        self.blocks = nn.ModuleList(
            Block(c, cfg.kernel_f, cfg.kernel_t, 1 if i < cfg.lookahead_blocks else 0,
                  cfg.mlp_ratio, 128)
            for i in range(cfg.blocks)
        )
        self.out = nn.ConvTranspose2d(c, 2, (pf, pt), stride=(pf, pt))
        # a direct full-resolution path so fine detail of X_t, Y reaches the output
        self.skip = nn.Conv2d(4, 2, 1)
        # t-dependent gains per band of patch_f bins on X_t − Y and on Y (zero at start)
        self.band_gain = nn.Linear(128, 2 * (cfg.padded_freq // pf))
        nn.init.zeros_(self.band_gain.weight)
        nn.init.zeros_(self.band_gain.bias)
        # content-dependent per-bin gains on X_t − Y and on Y (zero at start)
        self.mask = nn.ConvTranspose2d(c, 2, (pf, pt), stride=(pf, pt))
        nn.init.zeros_(self.mask.weight)
        nn.init.zeros_(self.mask.bias)
        self.gate = BinGate(cfg.n_freq, 16, 128)

    def forward(self, x_t: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t, y [B, 2, F, N] with N a multiple of patch_t; t [B] → v [B, 2, F, N]."""
        cfg = self.cfg
        n_freq = x_t.shape[2]
        h_in = torch.cat([x_t, y], 1)
        h_in = F.pad(h_in, (0, 0, 0, cfg.padded_freq - n_freq))
        emb = self.embed(t.reshape(-1).expand(x_t.shape[0]))
        h = self.inp(h_in)
        for b in self.blocks:
            h = b(h, emb)
        h = channel_norm(h)
        bands = cfg.padded_freq // cfg.patch_f
        g = self.band_gain(emb).reshape(-1, 2, bands, 1, 1).expand(-1, 2, bands, cfg.patch_f, 1)
        g = g.reshape(-1, 2, cfg.padded_freq, 1)[:, :, :n_freq]
        g = g + self.mask(h)[:, :, :n_freq] + self.gate(x_t, y, emb)
        v = self.out(h)[:, :, :n_freq] + self.skip(h_in)[:, :, :n_freq]
        return v + g[:, :1] * (x_t - y) + g[:, 1:] * y


def stft_features(x: torch.Tensor, cfg: PostfilterConfig) -> torch.Tensor:
    """Φ in torch (same definition as flowdec.dsp.features.analysis): [B, T] → [B, 2, F, N]."""
    win = torch.hann_window(cfg.n_fft, device=x.device)
    s = torch.stft(x, cfg.n_fft, cfg.hop, window=win, center=True, pad_mode="constant",
                   return_complex=True)
    mag = s.abs()
    s = s * (cfg.beta * mag.clamp(min=1e-12) ** (cfg.alpha - 1))
    return torch.stack([s.real, s.imag], 1)


def istft_features(X: torch.Tensor, length: int, cfg: PostfilterConfig) -> torch.Tensor:
    """Φ⁻¹ in torch: [B, 2, F, N] → [B, length]."""
    s = torch.complex(X[:, 0], X[:, 1])
    mag = s.abs()
    s = s * ((mag.clamp(min=1e-12) / cfg.beta) ** (1 / cfg.alpha) / mag.clamp(min=1e-12))
    win = torch.hann_window(cfg.n_fft, device=X.device)
    return torch.istft(s, cfg.n_fft, cfg.hop, window=win, center=True, length=length)

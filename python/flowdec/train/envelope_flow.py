"""Joint flow matching on the codec output's band envelope (issue 18's cheapest design).

The state is the per-frame band level (dB of mean power per bin, :mod:`band_envelope`) in
``bands`` ERB-spaced bands every 8 ms, scaled to 10 dB per unit. The prior is centred on
the codec output's levels ``y`` with a per-band σ: ``x₀ = y + σ(b)·z``; the network
``v_θ(x_t, y, t)`` is trained on ``x_t = (1−t)x₀ + t·x``, target ``x − x₀`` (σ_x = 0), as
the spectral postfilter is (:mod:`train_postfilter`), on a problem about a hundred times
smaller. A sample is a sharp, plausible envelope rather than the conditional mean, which
blurs (a ridge regression of the correction made Zimtohrli worse on 21 of 24 clips). The
fine structure stays the codec output's: the sampled levels become per-band gains on its
STFT (:func:`band_envelope.apply_gains`).

The network is a stack of dilated 1-D convolutions over frames with the bands as channels
(every band sees every other), FiLM on t; it looks ``lookahead`` frames ahead (its first
convolution is centred, the first ``lookahead_blocks`` blocks too, the rest causal: in all
``lookahead_frames``), so a streaming runtime can run it with that much delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import band_envelope as be

DB_PER_UNIT = 10.0
"""Flow coordinates: band level in dB / this."""


@dataclass
class EnvelopeFlowConfig:
    bands: int = 64  # requested ERB bands (band_envelope.edges_for may give fewer)
    channels: int = 192
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)
    kernel: int = 3
    lookahead: int = 1  # frames the first convolution sees ahead (centred kernel 3)
    lookahead_blocks: int = 0  # the first this many blocks are centred, not causal
    t_embed: int = 32
    sigma: list[float] = field(default_factory=list)  # per band, flow units

    @property
    def lookahead_frames(self) -> int:
        half = (self.kernel - 1) // 2
        return self.lookahead + sum(half * d for d in self.dilations[: self.lookahead_blocks])

    @property
    def n_bands(self) -> int:
        return len(be.edges_for(self.bands)) - 1


def to_units(level_db: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    return level_db / DB_PER_UNIT


class _Block(nn.Module):
    def __init__(self, c: int, kernel: int, dilation: int, t_dim: int, centred: bool) -> None:
        super().__init__()
        pad = (kernel - 1) * dilation  # causal: all padding in the past
        self.pad = (pad // 2, pad - pad // 2) if centred else (pad, 0)
        self.conv = nn.Conv1d(c, c, kernel, dilation=dilation)
        self.film = nn.Linear(t_dim, 2 * c)
        self.mix = nn.Conv1d(c, c, 1)
        self.scale = nn.Parameter(torch.zeros(1, c, 1))

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        u = F.layer_norm(h.transpose(1, 2), (h.shape[1],)).transpose(1, 2)
        u = self.conv(F.pad(u, self.pad))
        a, b = self.film(temb)[:, :, None].chunk(2, dim=1)
        u = F.gelu(u * (1 + a) + b)
        return h + self.scale * self.mix(u)


class EnvelopeFlowNet(nn.Module):
    """v_θ(x_t, y, t): x_t, y ``[B, bands, N]`` in flow units, t ``[B]`` → ``[B, bands, N]``."""

    def __init__(self, cfg: EnvelopeFlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        k, c = cfg.n_bands, cfg.channels
        self.t_dim = cfg.t_embed
        self.t_mlp = nn.Sequential(nn.Linear(cfg.t_embed, 4 * cfg.t_embed), nn.GELU(),
                                   nn.Linear(4 * cfg.t_embed, 4 * cfg.t_embed))
        self.inp = nn.Conv1d(3 * k, c, 2 * cfg.lookahead + 1)
        self.blocks = nn.ModuleList(_Block(c, cfg.kernel, d, 4 * cfg.t_embed,
                                           i < cfg.lookahead_blocks)
                                    for i, d in enumerate(cfg.dilations))
        self.out = nn.Conv1d(c, k, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def t_embedding(self, t: torch.Tensor) -> torch.Tensor:
        half = self.t_dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * (math.log(1000.0) / half))
        a = 2 * math.pi * t[:, None] * freqs[None]  # 1 … ~1000 cycles over t in [0, 1]
        return torch.cat([a.sin(), a.cos()], dim=1)

    def forward(self, xt: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(xt.shape[0])
        temb = self.t_mlp(self.t_embedding(t))
        # levels sit around −3 (−30 dB), floor −8: centre and scale to about unit range
        h = torch.cat([(xt + 3.0) / 3.0, (y + 3.0) / 3.0, xt - y], dim=1)
        la = self.cfg.lookahead
        h = self.inp(F.pad(h, (la, la)))
        for blk in self.blocks:
            h = blk(h, temb)
        return self.out(F.gelu(h))


def flow_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor,
              t: torch.Tensor | None = None) -> torch.Tensor:
    """Joint flow-matching loss (mean square over bands and frames) for levels in flow units."""
    if t is None:
        t = torch.rand(x.shape[0], device=x.device)
    x0 = y + sigma[None, :, None] * torch.randn_like(y)
    tt = t[:, None, None]
    v = net((1 - tt) * x0 + tt * x, y, t)
    return ((v - (x - x0)) ** 2).mean()


@torch.no_grad()
def sample(net: nn.Module, y: torch.Tensor, sigma: torch.Tensor, nfe: int = 6,
           solver: str = "midpoint", temperature: float = 1.0,
           gen: torch.Generator | None = None) -> torch.Tensor:
    """Band levels (flow units) sampled given the codec's ``y`` ``[B, bands, N]``: Euler
    (``nfe`` steps) or midpoint (``nfe // 2`` steps) from ``y + temperature·σ·z``."""
    if nfe < 1 or (solver == "midpoint" and nfe < 2):
        raise ValueError(f"nfe {nfe} too small for the {solver} solver")
    z = torch.randn(y.shape, generator=gen, device="cpu" if gen is None else gen.device)
    x = y + temperature * sigma[None, :, None] * z.to(y.device)
    steps = nfe // 2 if solver == "midpoint" else nfe
    h = 1.0 / steps
    for i in range(steps):
        t = torch.full((y.shape[0],), i * h, device=y.device)
        if solver == "midpoint":
            k1 = net(x, y, t)
            x = x + h * net(x + 0.5 * h * k1, y, t + 0.5 * h)
        elif solver == "euler":
            x = x + h * net(x, y, t)
        else:
            raise ValueError(f"unknown solver {solver!r}: euler or midpoint")
    return x


def postfilter_signal(net: nn.Module, y: np.ndarray, sigma: torch.Tensor, nfe: int = 6,
                      solver: str = "midpoint", temperature: float = 1.0, seed: int = 0,
                      max_gain_db: float = 24.0) -> np.ndarray:
    """The codec output ``y`` ``[T]`` with a sampled band envelope: its STFT times per-band,
    per-frame gains (sampled level − its own level, clamped to ± ``max_gain_db``)."""
    bands = net.cfg.bands  # type: ignore[union-attr]
    edges = be.edges_for(bands)
    peak = float(np.abs(y).max()) + 1e-8
    S = be.spectrum(y / peak)
    ly = torch.from_numpy(be.level_db(be.band_power(S, edges)) / DB_PER_UNIT)
    gen = torch.Generator().manual_seed(seed)
    lx = sample(net, ly, sigma, nfe, solver, temperature, gen)
    gain_db = ((lx - ly) * DB_PER_UNIT).numpy()
    out = be.synthesise(be.apply_gains(S, gain_db, edges, max_gain_db), len(y))[0]
    return out * peak


def estimate_sigma(lx: np.ndarray, ly: np.ndarray, low: float = 0.1, high: float = 1.5
                   ) -> np.ndarray:
    """Per-band σ (flow units): RMS over pairs and frames of the level error ``lx − ly``
    ``[pairs, bands, N]``, clipped to [low, high] (1 … 15 dB)."""
    d = (lx.astype(np.float64) - ly) / DB_PER_UNIT
    return np.clip(np.sqrt((d ** 2).mean(axis=(0, 2))), low, high)

"""Reconstruction losses for the codec: multi-resolution mel, long-window log spectrum,
compressed complex spectrum, L1 wave."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import LossConfig


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, fmin: float = 0.0) -> torch.Tensor:
    """Triangular mel filters (HTK mel scale, area-normalised), [n_mels, n_fft//2+1]."""

    def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    fmax = sample_rate / 2
    mels = torch.linspace(
        float(hz_to_mel(torch.tensor(fmin))), float(hz_to_mel(torch.tensor(fmax))), n_mels + 2
    )
    hz = mel_to_hz(mels)
    freqs = torch.linspace(0, fmax, n_fft // 2 + 1)
    lo, ce, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lo) / (ce - lo)
    down = (hi - freqs[None]) / (hi - ce)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    fb = fb * (2.0 / (hi - lo))  # Slaney-style area normalisation
    return fb.float()


def stft_mag(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x, n_fft, n_fft // 4, window=window, center=True, return_complex=True)
    return spec.abs()


class MelDistance(nn.Module):
    """Mean over resolutions of L1 between log10 mel magnitudes (eps 1e-5).

    This is also the "multi-resolution mel distance" quality metric reported by evaluation.
    """

    def __init__(self, windows: tuple[int, ...], bands: tuple[int, ...], sample_rate: int) -> None:
        super().__init__()
        self.windows = windows
        for w, b in zip(windows, bands, strict=True):
            self.register_buffer(f"fb{w}", mel_filterbank(w, b, sample_rate), persistent=False)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        total = y.new_zeros(())
        for w in self.windows:
            fb = getattr(self, f"fb{w}")
            my = torch.einsum("mf,bft->bmt", fb, stft_mag(y, w))
            mx = torch.einsum("mf,bft->bmt", fb, stft_mag(x, w))
            total = total + F.l1_loss(
                torch.log10(my.clamp(min=1e-5)), torch.log10(mx.clamp(min=1e-5))
            )
        return total / len(self.windows)


class LogSpectralDistance(nn.Module):
    """L1 between log magnitudes of long-window STFTs: fine frequency resolution for harmonics."""

    def __init__(self, windows: tuple[int, ...]) -> None:
        super().__init__()
        self.windows = windows

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        total = y.new_zeros(())
        for w in self.windows:
            sy, sx = stft_mag(y, w), stft_mag(x, w)
            total = total + F.l1_loss(torch.log(sy + 1e-5), torch.log(sx + 1e-5))
        return total / max(len(self.windows), 1)


class ComplexSpectralDistance(nn.Module):
    """Mean distance between amplitude-compressed complex STFTs (|X|^0.3 with the phase kept).

    Windows longer than the codec's 1280-sample synthesis window span several of its frames,
    so this sees whether neighbouring frames' phases continue each other (a partial that
    lasts) or not (the partial turns into pulses at the frame rate), which magnitude losses
    cannot; the compression keeps quiet partials from being drowned by loud ones.
    """

    def __init__(self, windows: tuple[int, ...]) -> None:
        super().__init__()
        self.windows = windows

    @staticmethod
    def compressed(x: torch.Tensor, n_fft: int) -> torch.Tensor:
        window = torch.hann_window(n_fft, device=x.device)
        spec = torch.stft(x, n_fft, n_fft // 4, window=window, center=True, return_complex=True)
        return spec * (spec.real.square() + spec.imag.square() + 1e-10) ** ((0.3 - 1.0) / 2)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        total = y.new_zeros(())
        for w in self.windows:
            total = total + (self.compressed(y, w) - self.compressed(x, w)).abs().mean()
        return total / max(len(self.windows), 1)


class CodecLoss(nn.Module):
    def __init__(self, cfg: LossConfig, sample_rate: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel = MelDistance(cfg.mel_windows, cfg.mel_bands, sample_rate)
        self.spec = LogSpectralDistance(cfg.spec_windows)
        self.complex = ComplexSpectralDistance(cfg.complex_windows)

    def forward(
        self, y: torch.Tensor, x: torch.Tensor, commit: torch.Tensor, codebook: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.cfg
        mel = self.mel(y, x)
        spec = self.spec(y, x) if c.spec_windows else y.new_zeros(())
        cplx = self.complex(y, x) if c.complex_windows else y.new_zeros(())
        wave = F.l1_loss(y, x)
        loss = (
            c.mel_weight * mel
            + c.spec_weight * spec
            + c.complex_weight * cplx
            + c.wave_weight * wave
            + c.commit_weight * commit
            + c.codebook_weight * codebook
        )
        parts = {
            "mel": float(mel.detach()),
            "spec": float(spec.detach()),
            "complex": float(cplx.detach()),
            "wave": float(wave.detach()),
            "commit": float(commit.detach()),
        }
        return loss, parts


def si_sdr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB per item ([B, T] → [B])."""
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    a = (est * ref).sum(-1, keepdim=True) / ((ref * ref).sum(-1, keepdim=True) + eps)
    target = a * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))



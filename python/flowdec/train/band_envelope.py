"""Per-frame band levels of a signal and band gains applied to its STFT (numpy).

The codec's audible error is mostly its time-frequency envelope (issue 18's oracle
measurements, ``benchmarks/bench_envelope_oracle.py``): these helpers measure that envelope
— the mean power per bin in ERB-spaced bands (:func:`flowdec.dsp.envelope.band_edges`) of each
STFT frame (n_fft 1536, hop 384 = 8 ms, Hann, uncompressed) — and impose another one on a
signal by per-band, per-frame gains on its STFT. The envelope flow
(:mod:`flowdec.train.envelope_flow`) samples band levels in these units.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..dsp import features
from ..dsp.envelope import band_edges

SAMPLE_RATE = 48000
STFT = features.STFTConfig(n_fft=1536, hop=384, alpha=1.0, beta=1.0)
"""Uncompressed STFT (α = β = 1): 769 bins, 8 ms frames."""
FLOOR_DB = -80.0
"""Level floor (dB of mean power per bin, signal at peak ~1): below the 16-bit noise floor
(about −62 dB per bin), so silence maps to a finite level."""


def edges_for(bands: int) -> np.ndarray:
    """Bin edges of ``bands`` ERB-spaced bands of :data:`STFT` (fewer where bands would be
    under 2 bins wide)."""
    return band_edges(STFT.n_fft, SAMPLE_RATE, bands)


def spectrum(x: npt.ArrayLike) -> np.ndarray:
    """Complex STFT as float32 ``[B, 2, F, N]`` of a signal ``[T]`` or ``[B, T]``."""
    return features.analysis(np.asarray(x, np.float32), STFT)


def synthesise(S: np.ndarray, length: int) -> np.ndarray:
    """Signal ``[B, length]`` from :func:`spectrum`'s layout."""
    return features.synthesis(S, length, STFT)


def band_power(S: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean power per bin in each band and frame: ``[B, bands, N]`` float64."""
    p = S[:, 0].astype(np.float64) ** 2 + S[:, 1].astype(np.float64) ** 2
    return np.add.reduceat(p, edges[:-1], axis=1) / np.diff(edges)[None, :, None]


def level_db(power: np.ndarray) -> np.ndarray:
    """Band levels in dB with the :data:`FLOOR_DB` floor added (float32)."""
    return (10.0 * np.log10(power + 10.0 ** (FLOOR_DB / 10.0))).astype(np.float32)


def pool_frames(power: np.ndarray, frames: int) -> np.ndarray:
    """Power averaged over blocks of ``frames`` frames, held over each block (same shape)."""
    if frames <= 1:
        return power
    n = power.shape[-1]
    pad = -n % frames
    p = np.concatenate([power, np.zeros((*power.shape[:-1], pad))], axis=-1)
    count = np.full(p.shape[-1] // frames, frames)
    count[-1] -= pad  # the last block holds only the frames there are
    blocks = p.reshape(*p.shape[:-1], -1, frames).sum(-1) / count
    return np.repeat(blocks, frames, axis=-1)[..., :n]


def apply_gains(S: np.ndarray, gain_db: np.ndarray, edges: np.ndarray,
                max_gain_db: float = 40.0) -> np.ndarray:
    """S with each band and frame scaled by ``gain_db`` ``[B, bands, N]`` (power dB,
    clamped to ± ``max_gain_db``)."""
    g = 10.0 ** (np.clip(gain_db, -max_gain_db, max_gain_db) / 20.0)
    per_bin = np.repeat(g, np.diff(edges), axis=1).astype(np.float32)
    return S * per_bin[:, None]


def impose(fine: np.ndarray, envelope_from: np.ndarray, bands: int, frames: int = 1,
           max_gain_db: float = 40.0, jitter_db: float = 0.0, seed: int = 0) -> np.ndarray:
    """``fine``'s fine structure under ``envelope_from``'s band envelope (signals ``[T]``,
    same length), the envelope measured in ``bands`` bands and blocks of ``frames`` frames;
    ``jitter_db``: plus independent Gaussian level errors of that many dB (RMS) per band and
    frame (how exact an envelope must be)."""
    e = edges_for(bands)
    F, E = spectrum(fine), spectrum(envelope_from)
    pf = pool_frames(band_power(F, e), frames)
    pe = pool_frames(band_power(E, e), frames)
    tiny = 10.0 ** (FLOOR_DB / 10.0)
    gain = 10.0 * np.log10((pe + tiny) / (pf + tiny))
    if jitter_db > 0:
        gain = gain + np.random.default_rng(seed).normal(0.0, jitter_db, gain.shape)
    return synthesise(apply_gains(F, gain, e, max_gain_db), len(fine))[0]

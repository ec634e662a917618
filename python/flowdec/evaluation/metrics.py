"""Quality metrics for evaluation (numpy/scipy; optional packages for the perceptual ones).

Every function takes mono float arrays ``[samples]`` (reference first, then the coded
signal, same length and rate; ``[channels, samples]`` is downmixed to mono) and returns a
float. Higher is better for SI-SDR, ViSQOL, PESQ and STOI; lower is better for the distances
(mel, log-spectral MSE, Zimtohrli, FAD).

=================  =======  ========================================================
metric             unit     definition
=================  =======  ========================================================
``si_sdr``         dB       scale-invariant SDR (Le Roux et al. 2019), zero-mean
``mel_distance``   log10    mean L1 of log10 mel magnitudes over windows 256..4096
                            (exactly the training loss, ``flowdec.train.losses``)
``lsd_mse``        dB²      mean squared difference of 20·log10 |STFT| (2048 window)
``visqol``         MOS      ViSQOL v3 audio mode at 48 kHz (``visqol-python``)
``pesq_wb``        MOS      PESQ wide-band at 16 kHz (``pesq``), speech only
``stoi``           0..1     STOI at 10 kHz (``pystoi``), speech only
``zimtohrli``      —        Zimtohrli psychoacoustic distance at 48 kHz (``zimtohrli``):
                            0 for identical, ~0.01-0.02 for a 6 kbit/s codec; models
                            what is heard, so unlike SI-SDR it does not punish treble
                            that sounds right but does not match the waveform
``fad``            —        Fréchet distance of aiSFX embeddings (set level, ``aisfx``
                            + torch), see :func:`frechet_distance`
=================  =======  ========================================================

Optional packages that are missing are reported by :func:`availability` (e.g.
``{"visqol": "not installed (pip install visqol-python)"}``) and never raise.

Example:
    >>> import numpy as np
    >>> x = np.sin(np.arange(48000) * 0.05)
    >>> round(si_sdr(x, x + 0.01 * np.cos(np.arange(48000) * 0.3)), 1)
    40.0
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..audio import resample

RATE = 48000
"""Rate (Hz) all metrics expect their inputs at; the speech metrics resample internally."""
MEL_WINDOWS: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
"""STFT windows (samples, hop = window/4) of the multi-resolution mel distance."""
MEL_BANDS: tuple[int, ...] = (24, 48, 80, 128, 160)
"""Mel bands per window (as ``flowdec.train.config.LossConfig.mel_bands``)."""
MEL_EPS = 1e-5
LSD_WINDOW = 2048
LSD_EPS = 1e-8

FAST_METRICS: tuple[str, ...] = ("si_sdr", "mel_distance", "lsd_mse")
OPTIONAL_METRICS: tuple[str, ...] = ("visqol", "pesq_wb", "stoi", "zimtohrli", "fad")
ALL_METRICS: tuple[str, ...] = FAST_METRICS + OPTIONAL_METRICS
SPEECH_ONLY: tuple[str, ...] = ("pesq_wb", "stoi")
HIGHER_IS_BETTER: dict[str, bool] = {
    "si_sdr": True, "mel_distance": False, "lsd_mse": False, "visqol": True,
    "pesq_wb": True, "stoi": True, "zimtohrli": False, "fad": False,
}


def _mono(x: npt.ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a.mean(axis=0)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name}: expected mono [samples] or [channels, samples], got {a.shape}")
    return a


def _pair(ref: npt.ArrayLike, deg: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    r, d = _mono(ref, "ref"), _mono(deg, "deg")
    if r.shape != d.shape:
        raise ValueError(f"ref and deg must have the same length, got {r.size} and {d.size}")
    return r, d


# -- SI-SDR ----------------------------------------------------------------------------------
def si_sdr(ref: npt.ArrayLike, deg: npt.ArrayLike, eps: float = 1e-12) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (both signals made zero-mean).

    ``10·log10(|αr|² / |αr − d|²)`` with ``α = <d, r>/|r|²``; invariant to the gain of ``deg``.

    Example:
        >>> x = np.random.default_rng(0).standard_normal(48000)
        >>> si_sdr(x, 3 * x) > 100
        True
    """
    r, d = _pair(ref, deg)
    r = r - r.mean()
    d = d - d.mean()
    alpha = float(np.dot(d, r)) / (float(np.dot(r, r)) + eps)
    target = alpha * r
    noise = d - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


# -- spectra ---------------------------------------------------------------------------------
def stft_magnitude(x: np.ndarray, n_fft: int, hop: int | None = None) -> np.ndarray:
    """|STFT| ``[n_fft//2+1, frames]`` with a periodic Hann window, centred frames
    (reflect padding by ``n_fft//2``; as ``torch.stft(center=True)``), hop ``n_fft//4``."""
    hop = hop or n_fft // 4
    pad = n_fft // 2
    xp = np.pad(x, pad, mode="reflect") if x.size > pad else np.pad(x, pad)
    n = 1 + (xp.size - n_fft) // hop
    if n < 1:
        xp = np.pad(xp, (0, n_fft - xp.size))
        n = 1
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    return np.abs(np.fft.rfft(xp[idx] * win, axis=1)).T


@functools.lru_cache(maxsize=16)
def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int = RATE, fmin: float = 0.0
                   ) -> np.ndarray:
    """Triangular HTK-mel filters, Slaney area-normalised, ``[n_mels, n_fft//2+1]``
    (the numpy twin of ``flowdec.train.losses.mel_filterbank``)."""

    def hz_to_mel(f: float | np.ndarray) -> Any:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    fmax = sample_rate / 2
    mels = np.linspace(float(hz_to_mel(fmin)), float(hz_to_mel(fmax)), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    freqs = np.linspace(0, fmax, n_fft // 2 + 1)
    lo, ce, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    fb = np.clip(np.minimum((freqs[None] - lo) / (ce - lo), (hi - freqs[None]) / (hi - ce)),
                 0.0, None)
    out: np.ndarray = fb * (2.0 / (hi - lo))
    return out


def mel_distance(ref: npt.ArrayLike, deg: npt.ArrayLike, sample_rate: int = RATE,
                 windows: Sequence[int] = MEL_WINDOWS, bands: Sequence[int] = MEL_BANDS
                 ) -> float:
    """Multi-resolution mel distance (log10 units; 0 for identical signals).

    For each window ``w`` (hop ``w/4``): mel magnitudes ``M = F·|STFT|``, then the mean of
    ``|log10 max(M_deg, 1e-5) − log10 max(M_ref, 1e-5)|``; the result is the mean over windows.
    Same definition as the codec's training loss.

    Example:
        >>> x = np.random.default_rng(0).standard_normal(4800)
        >>> mel_distance(x, x)
        0.0
    """
    r, d = _pair(ref, deg)
    total = 0.0
    for w, b in zip(windows, bands, strict=True):
        fb = mel_filterbank(w, b, sample_rate)
        mr = np.log10(np.maximum(fb @ stft_magnitude(r, w), MEL_EPS))
        md = np.log10(np.maximum(fb @ stft_magnitude(d, w), MEL_EPS))
        total += float(np.mean(np.abs(md - mr)))
    return total / len(windows)


def lsd_mse(ref: npt.ArrayLike, deg: npt.ArrayLike, n_fft: int = LSD_WINDOW) -> float:
    """Log-spectral MSE in dB²: mean over bins and frames of (20·log10 |D| − 20·log10 |R|)²,
    on a ``n_fft``-sample Hann STFT (hop ``n_fft/4``), magnitudes floored at 1e-8 (−160 dB).

    Example:
        >>> x = np.random.default_rng(0).standard_normal(4800)
        >>> round(lsd_mse(x, 2 * x), 2)     # +6.02 dB everywhere
        36.25
    """
    r, d = _pair(ref, deg)
    lr = 20 * np.log10(np.maximum(stft_magnitude(r, n_fft), LSD_EPS))
    ld = 20 * np.log10(np.maximum(stft_magnitude(d, n_fft), LSD_EPS))
    return float(np.mean((ld - lr) ** 2))


# -- optional perceptual metrics ---------------------------------------------------------------
_PACKAGES: dict[str, tuple[str, str, str]] = {
    # metric: (import name, distribution name, install hint)
    "visqol": ("visqol", "visqol-python", "pip install visqol-python"),
    "pesq_wb": ("pesq", "pesq", "pip install pesq"),
    "stoi": ("pystoi", "pystoi", "pip install pystoi"),
    "zimtohrli": ("zimtohrli", "zimtohrli", "pip install zimtohrli"),
    "fad": ("aisfx", "aisfx", "pip install --no-deps aisfx, and torch"),
}


@functools.lru_cache(maxsize=1)
def _availability() -> tuple[tuple[str, str], ...]:
    out = {m: "ok (numpy)" for m in FAST_METRICS}
    for metric, (mod, dist, hint) in _PACKAGES.items():
        missing = [m for m in ([mod, "torch"] if metric == "fad" else [mod])
                   if importlib.util.find_spec(m) is None]
        if missing:
            out[metric] = f"not installed ({hint})"
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        out[metric] = f"ok ({dist} {version})"
    return tuple(out.items())


def availability() -> dict[str, str]:
    """``{metric: "ok (package version)" | "not installed (how to install)"}`` for every metric.

    Example:
        >>> availability()["si_sdr"]
        'ok (numpy)'
    """
    return dict(_availability())


def available(metric: str) -> bool:
    return availability().get(metric, "").startswith("ok")


@functools.lru_cache(maxsize=1)
def _visqol_api() -> Any:
    from visqol import VisqolApi

    api = VisqolApi()
    api.create(mode="audio")
    return api


def visqol(ref: npt.ArrayLike, deg: npt.ArrayLike, sample_rate: int = RATE) -> float:
    """ViSQOL v3 audio mode MOS-LQO (1..5, ~4.7 for identical) on 48 kHz signals.

    Other rates are resampled to 48 kHz first (audio mode is defined at 48 kHz).
    """
    r, d = _pair(ref, deg)
    if sample_rate != RATE:
        r, d = _to(r, sample_rate, RATE), _to(d, sample_rate, RATE)
    return float(_visqol_api().measure_from_arrays(r, d, RATE).moslqo)


def _to(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    out: np.ndarray = resample(x[None].astype(np.float32), from_rate, to_rate)[0]
    return out.astype(np.float64)


def pesq_wb(ref: npt.ArrayLike, deg: npt.ArrayLike, sample_rate: int = RATE) -> float:
    """PESQ wide-band MOS-LQO (ITU-T P.862.2, 1.04..4.64) after resampling to 16 kHz.

    NaN when PESQ finds no speech in the reference.
    """
    from pesq import pesq
    from pesq.cypesq import PesqError

    r, d = _pair(ref, deg)
    try:
        return float(pesq(16000, _to(r, sample_rate, 16000), _to(d, sample_rate, 16000), "wb"))
    except PesqError:
        return math.nan


def stoi(ref: npt.ArrayLike, deg: npt.ArrayLike, sample_rate: int = RATE) -> float:
    """Short-time objective intelligibility (0..1) after resampling to 10 kHz."""
    from pystoi import stoi as _stoi

    r, d = _pair(ref, deg)
    return float(_stoi(_to(r, sample_rate, 10000), _to(d, sample_rate, 10000), 10000))


ZIMTOHRLI_MIN_SAMPLES = 4800
"""Shorter signals (48 kHz samples, 0.1 s) are zero-padded to this length before Zimtohrli:
zimtohrli 0.2.1 aborts the whole process (a double free) on signals of under ~3950 samples."""


@functools.lru_cache(maxsize=1)
def _zimtohrli_api() -> Any:
    try:
        import zimtohrli as z
    except ImportError as e:
        raise ImportError(f"zimtohrli: not installed ({_PACKAGES['zimtohrli'][2]})") from e
    return z.Pyohrli()


def zimtohrli(ref: npt.ArrayLike, deg: npt.ArrayLike, sample_rate: int = RATE) -> float:
    """Zimtohrli psychoacoustic distance (``zimtohrli.Pyohrli().distance``; lower is better,
    0 for identical signals) on the mono downmix at 48 kHz, float32, full scale = ±1.

    Other rates are resampled to 48 kHz first; signals under :data:`ZIMTOHRLI_MIN_SAMPLES`
    (after resampling) are zero-padded at the end. A few hundredths of a CPU second per
    second of audio.
    Raises ``ImportError`` naming ``pip install zimtohrli`` when the package is missing.

    Example:
        >>> x = np.random.default_rng(0).standard_normal(48000) * 0.1
        >>> zimtohrli(x, x)                               # doctest: +SKIP
        0.0
        >>> zimtohrli(x, x + 0.01) < zimtohrli(x, x + 0.1)   # doctest: +SKIP
        True
    """
    r, d = _pair(ref, deg)
    if sample_rate != RATE:
        r, d = _to(r, sample_rate, RATE), _to(d, sample_rate, RATE)
    pad = max(ZIMTOHRLI_MIN_SAMPLES - r.size, 0)
    r32 = np.ascontiguousarray(np.pad(r, (0, pad)), np.float32)
    d32 = np.ascontiguousarray(np.pad(d, (0, pad)), np.float32)
    return float(_zimtohrli_api().distance(r32, d32))


# -- FAD on aiSFX embeddings ---------------------------------------------------------------------
AISFX_RATE = 44100
AISFX_FFT, AISFX_HOP, AISFX_MELS, AISFX_BLOCK = 2048, 1024, 96, 100
AISFX_EMB_HOP = 25
"""Embedding hop in spectrogram frames (0.58 s); each embedding sees 100 frames (2.3 s)."""


@functools.lru_cache(maxsize=1)
def _aisfx_model() -> Any:
    import os

    import aisfx
    import torch
    from aisfx.models.cnn2d import CrossNet, EmbeddingNet

    path = os.path.join(os.path.dirname(aisfx.__file__), "models", "checkpoint.pth")
    weights, ds_dict = torch.load(path, map_location="cpu", weights_only=False)
    model = CrossNet(EmbeddingNet("max", 3, 1, 64), ds_dict, "cpu")
    model.load_state_dict(weights)
    model.eval()
    return model


def aisfx_spectrogram(x: np.ndarray, sample_rate: int = RATE) -> np.ndarray:
    """aiSFX input features ``[frames, 96]``: 44.1 kHz, peak-normalised, power mel (HTK,
    unit-sum filters, 2048/1024), ``log10(1e4·M + 1)`` scaled by the paper's max 9.4578."""
    y = _to(_mono(x, "x"), sample_rate, AISFX_RATE)
    peak = float(np.max(np.abs(y))) or 1.0
    p = stft_magnitude(y / peak, AISFX_FFT, AISFX_HOP) ** 2
    fb = mel_filterbank(AISFX_FFT, AISFX_MELS, AISFX_RATE)
    fb = fb / np.maximum(fb.sum(axis=1, keepdims=True), 1e-12)
    spec = np.log10((fb @ p) * 10000.0 + 1.0) / 9.457798957824707
    return np.asarray(spec.T, np.float32)


def aisfx_embeddings(x: npt.ArrayLike, sample_rate: int = RATE) -> np.ndarray:
    """aiSFX (Cramer-style cross-dataset CNN) embeddings ``[n, 512]`` of one clip: one per
    100-frame block (2.3 s) every :data:`AISFX_EMB_HOP` frames; short clips are zero-padded
    to one block. Needs ``aisfx`` (``pip install --no-deps aisfx``) and torch."""
    import torch

    spec = aisfx_spectrogram(np.asarray(x), sample_rate)
    n = spec.shape[0]
    starts = list(range(0, max(n - AISFX_BLOCK, 0) + 1, AISFX_EMB_HOP))
    padded = np.pad(spec, ((0, max(AISFX_BLOCK - n, 0)), (0, 0)))
    blocks = np.stack([padded[s:s + AISFX_BLOCK] for s in starts])
    with torch.no_grad():
        emb = _aisfx_model().get_embedding(torch.from_numpy(blocks))
    out: np.ndarray = np.asarray(emb.numpy(), np.float64)
    return out


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to embedding sets ``a [n, d]``, ``b [m, d]``:
    ``|μa − μb|² + tr(Σa + Σb − 2(ΣaΣb)^½)``. Covariances of small sets are rank-deficient;
    the value is still defined (and 0 for identical sets) but comparable only between
    systems scored on the same clips."""
    mu = a.mean(0) - b.mean(0)
    ca = _cov(a)
    cb = _cov(b)
    # tr((Σa Σb)^½) = Σ sqrt(eig(√Σa Σb √Σa)), with symmetric PSD square roots (stable for
    # the rank-deficient covariances of small sets).
    wa, va = np.linalg.eigh(ca)
    sa = (va * np.sqrt(np.clip(wa, 0, None))) @ va.T
    ev = np.linalg.eigvalsh(sa @ cb @ sa)
    tr_covmean = float(np.sum(np.sqrt(np.clip(ev, 0, None))))
    return float(max(mu @ mu + np.trace(ca) + np.trace(cb) - 2 * tr_covmean, 0.0))


def _cov(a: np.ndarray) -> np.ndarray:
    if len(a) < 2:
        return np.zeros((a.shape[1], a.shape[1]))
    return np.atleast_2d(np.cov(a, rowvar=False))


def fad(ref_clips: Sequence[npt.ArrayLike], deg_clips: Sequence[npt.ArrayLike],
        sample_rate: int = RATE) -> float:
    """FAD between two sets of clips (all embeddings of each set pooled)."""
    a = np.concatenate([aisfx_embeddings(x, sample_rate) for x in ref_clips])
    b = np.concatenate([aisfx_embeddings(x, sample_rate) for x in deg_clips])
    return frechet_distance(a, b)


CLIP_METRICS: dict[str, Callable[..., float]] = {
    "si_sdr": si_sdr, "mel_distance": mel_distance, "lsd_mse": lsd_mse, "visqol": visqol,
    "pesq_wb": pesq_wb, "stoi": stoi, "zimtohrli": zimtohrli,
}
"""Per-clip metrics by name (FAD is per set: :func:`fad`)."""


def format_value(v: Any) -> str:
    """A metric value for the tables: 3 decimals, 4 below 0.1 (Zimtohrli is ~0.01), 1 from
    100 up; ``"–"`` for missing.

    Example:
        >>> format_value(0.01284), format_value(3.2101), format_value(2881.84), format_value(None)
        ('0.0128', '3.210', '2881.8', '–')
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 0.1 else f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def score(ref: npt.ArrayLike, deg: npt.ArrayLike, metrics: Sequence[str], speech: bool,
          sample_rate: int = RATE) -> dict[str, float]:
    """Every requested per-clip metric that is installed (speech-only ones when ``speech``);
    skipped metrics are absent from the result."""
    out: dict[str, float] = {}
    avail = availability()
    for m in metrics:
        if m == "fad" or m not in CLIP_METRICS or not avail[m].startswith("ok"):
            continue
        if m in SPEECH_ONLY and not speech:
            continue
        fn = CLIP_METRICS[m]
        out[m] = fn(ref, deg) if m in ("si_sdr", "lsd_mse") else fn(ref, deg, sample_rate)
    return out

"""Spectral envelope of the postfilter's output, kept to the codec output's band by band.

The small postfilter network gets the band levels of its output wrong (its top octave too
quiet, the bands below 6 kHz too loud), while the codec output's balance is the closer one
to the clean signal's (``python benchmarks/bench_envelope.py CLIP_DIR``; the numbers are in
benchmarks/README.md).

So after the ODE solve, :func:`match_envelope` gives each STFT frame, in each of about
``bands`` ERB-spaced bands, the energy y has in that frame and band (the gain clamped to
± ``max_gain_db``), and keeps y's own bins below ``keep_below_hz``, where the network's
output is further from the clean signal than y is. What the postfilter contributes is the
fine structure inside each band and frame (harmonics, noise texture, phase); the envelope
is y's. The postfilter stage matches twice: on the solver's frames, then on the STFT of the
signal they synthesise (the solver's frames are not one signal's STFT, so overlap-add alone
loses part of the matched energy).
Everything is per frame: the stage adds no look-ahead and does not depend on how the audio
is chunked, and ``match_envelope(Y, Y)`` is ``Y`` exactly; the stage skips it when the
solve hands y's own frames back (the stream's bypass, NFE 0).

Settings come from the postfilter's model card (``envelope``; absent: no matching).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_TINY = 1e-30
"""Energy floor (linear power, float64) so silent bands get 0 dB instead of 0/0."""


@dataclass(frozen=True)
class Envelope:
    """The ``envelope`` entry of a postfilter card."""

    bands: int            # ERB-spaced bands over 0 … Nyquist (each at least 2 bins wide)
    max_gain_db: float    # gains clamped to ± this
    keep_below_hz: float  # bins below this frequency are the codec output's own

    def __post_init__(self) -> None:
        if self.bands < 1 or not np.isfinite(self.max_gain_db) or self.max_gain_db < 0 \
                or not self.keep_below_hz >= 0:
            raise ValueError(f"invalid envelope settings {self}: bands >= 1, max_gain_db >= 0, "
                             "keep_below_hz >= 0")


def erb_rate(hz: npt.ArrayLike) -> np.ndarray:
    """Glasberg & Moore's ERB-rate scale (ERBs below ``hz``)."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(hz, np.float64))


def band_edges(n_fft: int, sample_rate: float, bands: int, min_bins: int = 2) -> np.ndarray:
    """Bin edges ``[0, e1, …, n_fft//2 + 1]`` of bands equally spaced in ERB rate.

    Bands narrower than ``min_bins`` (the lowest ones, where an ERB is about one bin) are
    widened, so there may be fewer than ``bands``."""
    n_freq = n_fft // 2 + 1
    hz = np.arange(n_freq) * sample_rate / n_fft
    erb = erb_rate(hz)
    targets = np.linspace(0.0, erb[-1], bands + 1)[1:-1]
    edges = [0]
    for e in np.searchsorted(erb, targets):
        e = max(int(e), edges[-1] + min_bins)
        if e > n_freq - min_bins:
            break
        edges.append(e)
    edges.append(n_freq)
    return np.asarray(edges, np.int64)


def band_energy(Z: npt.ArrayLike, edges: npt.ArrayLike, alpha: float) -> np.ndarray:
    """Energy of the uncompressed spectrum (∝ |Z|^(2/α)) per band and frame of compressed
    features ``[..., 2, F, N]``: ``[..., bands, N]`` float64."""
    z = np.asarray(Z)
    p = z[..., 0, :, :].astype(np.float64) ** 2 + z[..., 1, :, :].astype(np.float64) ** 2
    return np.add.reduceat(p ** (1.0 / alpha), np.asarray(edges, np.int64)[:-1], axis=-2)


def match_envelope(X: npt.ArrayLike, Y: npt.ArrayLike, edges: npt.ArrayLike, alpha: float,
                   max_gain_db: float, keep_bins: int = 0,
                   y_energy: np.ndarray | None = None) -> np.ndarray:
    """X with each frame's band energies set to Y's (compressed features ``[..., 2, F, N]``).

    ``alpha`` is the features' compression exponent (energy ∝ |X|^(2/α)); gains are clamped
    to ± ``max_gain_db``; bins below ``keep_bins`` are taken from Y unchanged. ``y_energy``:
    ``band_energy(Y, edges, alpha)`` when the caller already has it."""
    X = np.asarray(X, np.float32)
    Y = np.asarray(Y, np.float32)
    if X.shape != Y.shape or X.ndim < 3 or X.shape[-3] != 2:
        raise ValueError(f"X {X.shape} and Y {Y.shape} must be equal [..., 2, F, N] features")
    e = np.asarray(edges, np.int64)
    n_freq = X.shape[-2]
    if e[0] != 0 or e[-1] != n_freq or np.any(np.diff(e) < 1):
        raise ValueError(f"band edges must rise from 0 to {n_freq} bins")
    target = band_energy(Y, e, alpha) if y_energy is None else y_energy
    gain_db = 10.0 * np.log10((target + _TINY) / (band_energy(X, e, alpha) + _TINY))
    gain_db = np.clip(gain_db, -max_gain_db, max_gain_db)
    scale = 10.0 ** (alpha * gain_db / 20.0)  # in the compressed domain
    out = X * np.repeat(scale, np.diff(e), axis=-2)[..., None, :, :].astype(np.float32)
    if keep_bins > 0:
        out[..., :keep_bins, :] = Y[..., :keep_bins, :]
    return out


class EnvelopeMatch:
    """:func:`match_envelope` with a card's settings, for features of one STFT layout."""

    def __init__(self, settings: Envelope, n_fft: int, sample_rate: float, alpha: float) -> None:
        self.settings = settings
        self.alpha = alpha
        self.edges = band_edges(n_fft, sample_rate, settings.bands)
        self.keep_bins = min(int(np.ceil(settings.keep_below_hz * n_fft / sample_rate)),
                             n_fft // 2 + 1)

    def energy(self, Y: np.ndarray) -> np.ndarray:
        """Y's band energies, to pass to several calls against the same Y."""
        return band_energy(Y, self.edges, self.alpha)

    def __call__(self, X: np.ndarray, Y: np.ndarray,
                 y_energy: np.ndarray | None = None) -> np.ndarray:
        return match_envelope(X, Y, self.edges, self.alpha, self.settings.max_gain_db,
                              self.keep_bins, y_energy)

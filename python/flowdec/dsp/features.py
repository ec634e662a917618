"""Compressed complex STFT features Φ and their inverse Φ⁻¹ (C++ core), batch and streaming.

Definition (all parameters in :class:`STFTConfig`; float32 throughout):

- periodic Hann window of ``n_fft`` samples, frames every ``hop`` samples, centred with
  ``n_fft // 2`` **zeros** on both sides (so it can stream), one-sided spectrum with
  ``F = n_fft // 2 + 1`` bins, no normalisation — i.e. ``torch.stft(x, n_fft, hop,
  window=torch.hann_window(n_fft), center=True, pad_mode="constant")``;
- compression ``X ↦ β·|X|^α·e^{i∠X}`` (0 stays 0);
- layout ``[B, 2, F, N]`` (real, imaginary channels; ``N = T // hop + 1`` frames), the
  layout the postfilter network consumes.

Φ⁻¹ decompresses ``|X| ↦ (|X|/β)^{1/α}`` keeping the phase, inverts the real FFT (the
imaginary parts of the DC and Nyquist bins are ignored), windows, overlap-adds and divides
by the sum of squared windows at each sample (0 where that sum is 0), and returns exactly
``length`` samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flowdec import _core

__all__ = [
    "STFTConfig",
    "StreamingAnalysis",
    "StreamingSynthesis",
    "analysis",
    "get_num_threads",
    "n_frames",
    "set_num_threads",
    "synthesis",
]


@dataclass(frozen=True)
class STFTConfig:
    """Parameters of Φ.

    Attributes
    ----------
    n_fft : FFT size in samples (even; prime factors 2, 3, 5 only). 1536 = 2⁹·3.
    hop : frame hop in samples (1 <= hop <= n_fft). 384 samples = 8 ms at 48 kHz.
    alpha : magnitude compression exponent (> 0).
    beta : magnitude scale after compression (> 0).

    Examples
    --------
    >>> cfg = STFTConfig()
    >>> cfg.n_freq
    769
    """

    n_fft: int = 1536
    hop: int = 384
    alpha: float = 0.3
    beta: float = 0.33

    def __post_init__(self) -> None:
        for name in ("n_fft", "hop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name}: must be an int, got {value!r}")
        if self.n_fft < 2 or self.n_fft % 2 or not _core.fft_size_supported(int(self.n_fft)):
            raise ValueError(
                f"n_fft: must be even with prime factors 2, 3, 5 only, got {self.n_fft}"
            )
        if not 1 <= self.hop <= self.n_fft:
            raise ValueError(f"hop: must be in [1, n_fft={self.n_fft}], got {self.hop}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not isinstance(value, int | float | np.floating) or isinstance(value, bool):
                raise ValueError(f"{name}: must be a number, got {value!r}")
            if not math.isfinite(float(value)) or float(value) <= 0:
                raise ValueError(f"{name}: must be finite and > 0, got {value!r}")

    @property
    def n_freq(self) -> int:
        """Number of frequency bins ``F = n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def pad(self) -> int:
        """Zero padding on each side, ``n_fft // 2`` samples."""
        return self.n_fft // 2


DEFAULT = STFTConfig()


def set_num_threads(n: int) -> None:
    """Use ``n`` worker threads (std::thread, over batch rows and frames) in the core.

    Examples
    --------
    >>> set_num_threads(2); get_num_threads()
    2
    >>> set_num_threads(1)
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n: must be an int >= 1, got {n!r}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """Worker threads used by the core (default 1)."""
    return _core.get_num_threads()


def n_frames(length: int, cfg: STFTConfig = DEFAULT) -> int:
    """Frames of Φ for a signal of ``length`` samples: ``length // hop + 1``.

    Examples
    --------
    >>> n_frames(48000)
    126
    """
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 0:
        raise ValueError(f"length: must be an int >= 0, got {length!r}")
    return int(length) // cfg.hop + 1


def _as_signal(x: npt.ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be converted to float32 ({exc})") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected shape [T] or [B, T], got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: is empty (shape {arr.shape})")
    return np.ascontiguousarray(arr)


def _as_features(X: npt.ArrayLike, cfg: STFTConfig, name: str) -> np.ndarray:
    try:
        arr = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be converted to float32 ({exc})") from None
    if arr.ndim != 4 or arr.shape[1] != 2 or arr.shape[2] != cfg.n_freq:
        raise ValueError(f"{name}: expected shape [B, 2, {cfg.n_freq}, N], got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: is empty (shape {arr.shape})")
    return np.ascontiguousarray(arr)


def analysis(x: npt.ArrayLike, cfg: STFTConfig = DEFAULT) -> np.ndarray:
    """Φ: compressed complex STFT of a signal.

    Parameters
    ----------
    x : samples, shape ``[T]`` or ``[B, T]`` (any float dtype; converted to float32).
    cfg : STFT parameters.

    Returns
    -------
    np.ndarray float32 ``[B, 2, F, N]`` with ``F = n_fft//2 + 1`` bins and
    ``N = T // hop + 1`` frames (a ``[T]`` input gives ``B = 1``).

    Examples
    --------
    >>> X = analysis(np.zeros(48000, dtype=np.float32))
    >>> X.shape
    (1, 2, 769, 126)
    """
    sig = _as_signal(x, "x")
    return _core.stft(sig, -cfg.pad, n_frames(sig.shape[1], cfg), cfg.n_fft, cfg.hop,
                      float(cfg.alpha), float(cfg.beta))


def synthesis(X: npt.ArrayLike, length: int, cfg: STFTConfig = DEFAULT) -> np.ndarray:
    """Φ⁻¹: signal of exactly ``length`` samples from compressed features.

    Parameters
    ----------
    X : features ``[B, 2, F, N]``.
    length : output length in samples (normally the ``T`` given to :func:`analysis`);
        samples no frame covers are 0.

    Returns
    -------
    np.ndarray float32 ``[B, length]``.

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    >>> y = synthesis(analysis(x), 1000)
    >>> bool(np.abs(y[0] - x).max() < 1e-4)
    True
    """
    feats = _as_features(X, cfg, "X")
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise ValueError(f"length: must be an int >= 1, got {length!r}")
    acc = np.zeros((feats.shape[0], int(length)), dtype=np.float32)
    _core.istft_ola(feats, acc, -cfg.pad, cfg.n_fft, cfg.hop, float(cfg.alpha), float(cfg.beta))
    return _core.ola_normalize(acc, 0, feats.shape[3], cfg.n_fft, cfg.hop)


class StreamingAnalysis:
    """Φ on a stream: push samples, get the frames that are complete.

    Follows the stage contract (:class:`flowdec.pipeline.stages.Stage`: ``push`` / ``finish()`` /
    ``reset()`` / ``latency``) with samples in and frames out: frame ``n`` stands for the
    window centred on sample ``n*hop``. It needs samples up to ``n*hop + n_fft//2``, so
    :attr:`latency` is ``n_fft//2`` samples. The frames returned by all :meth:`push` calls
    followed by :meth:`finish` equal :func:`analysis` of the whole signal (``T // hop + 1``
    frames for the ``T`` samples pushed).

    Examples
    --------
    >>> sa = StreamingAnalysis(STFTConfig(), channels=1)
    >>> parts = [sa.push(np.zeros(1000, np.float32)) for _ in range(3)] + [sa.finish()]
    >>> sum(p.shape[-1] for p in parts) == n_frames(3000), sa.latency
    (True, 768)
    """

    def __init__(self, cfg: STFTConfig = DEFAULT, channels: int = 1) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels: must be an int >= 1, got {channels!r}")
        self.cfg = cfg
        self.channels = channels
        self.reset()

    @property
    def latency(self) -> int:
        """Look-ahead in samples past a frame's centre: ``n_fft // 2``."""
        return self.cfg.pad

    def reset(self) -> None:
        """Forget all pushed samples (start a new stream)."""
        self._buf = np.zeros((self.channels, 0), dtype=np.float32)
        self._buf_start = 0  # absolute index of self._buf[:, 0]
        self._total = 0  # samples pushed
        self._next = 0  # next frame to emit

    def _empty(self) -> np.ndarray:
        return np.zeros((self.channels, 2, self.cfg.n_freq, 0), dtype=np.float32)

    def _frames(self, count: int) -> np.ndarray:
        cfg = self.cfg
        first = self._next * cfg.hop - cfg.pad  # absolute start of the next frame
        buf = self._buf if self._buf.shape[1] else np.zeros((self.channels, 1), np.float32)
        out = _core.stft(buf, first - self._buf_start, count, cfg.n_fft, cfg.hop,
                         float(cfg.alpha), float(cfg.beta))
        self._next += count
        keep_from = max(0, self._next * cfg.hop - cfg.pad - self._buf_start)
        self._buf = self._buf[:, keep_from:]
        self._buf_start += keep_from
        return out

    def push(self, x: npt.ArrayLike) -> np.ndarray:
        """Append samples ``[C, n]`` (or ``[n]`` when C = 1); return the new frames
        ``[C, 2, F, k]`` (k may be 0)."""
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim == 1 and self.channels == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[0] != self.channels:
            raise ValueError(f"x: expected shape [{self.channels}, n], got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("x: contains NaN or Inf")
        self._buf = np.concatenate([self._buf, arr], axis=1)
        self._total += arr.shape[1]
        cfg = self.cfg
        # frame n is complete when n*hop - pad + n_fft <= total
        ready = self._total + cfg.pad - cfg.n_fft
        count = (ready // cfg.hop + 1 if ready >= 0 else 0) - self._next
        return self._frames(count) if count > 0 else self._empty()

    def finish(self) -> np.ndarray:
        """End the stream: return the remaining frames (zero padding past the last sample
        pushed), then reset for a new stream."""
        count = n_frames(self._total, self.cfg) - self._next
        out = self._frames(count) if count > 0 else self._empty()
        self.reset()
        return out


class StreamingSynthesis:
    """Φ⁻¹ on a stream: push frames, get the samples no later frame can change.

    Follows the stage contract (:class:`flowdec.pipeline.stages.Stage`) with frames in and samples
    out. Frames do not fix the signal's length (``T`` samples give ``T // hop + 1`` frames
    for any ``T`` in a range of ``hop``), so the stream's ``length`` in samples is given at
    construction, normally the ``T`` given to :func:`analysis`; ``None`` ends the stream at
    ``(N − 1)·hop`` samples for the ``N`` frames pushed, the hop-aligned length with ``N``
    frames. The concatenation of all :meth:`push` outputs and :meth:`finish` equals
    :func:`synthesis` of all frames to that length. After frames ``0..K-1``, samples before
    ``K*hop - n_fft//2`` are final: sample ``s`` waits for the frame centred at (up to a
    hop before) ``s + n_fft//2``, so :attr:`latency` is ``n_fft//2`` samples.

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    >>> X = analysis(x)
    >>> ss = StreamingSynthesis(STFTConfig(), channels=1, length=5000)
    >>> y = np.concatenate([ss.push(X[..., :7]), ss.push(X[..., 7:]), ss.finish()], axis=1)
    >>> y.shape, bool(np.abs(y[0] - x).max() < 1e-4)
    ((1, 5000), True)
    """

    def __init__(self, cfg: STFTConfig = DEFAULT, channels: int = 1,
                 length: int | None = None) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels: must be an int >= 1, got {channels!r}")
        if length is not None and (isinstance(length, bool)
                                   or not isinstance(length, int | np.integer) or length < 0):
            raise ValueError(f"length: must be None or an int >= 0 (samples), got {length!r}")
        self.cfg = cfg
        self.channels = channels
        self.length = None if length is None else int(length)
        self.reset()

    @property
    def latency(self) -> int:
        """Look-ahead in samples: ``n_fft // 2`` (frame centres past an output sample)."""
        return self.cfg.pad

    def reset(self) -> None:
        """Forget all pushed frames (start a new stream of the same ``length``)."""
        self._acc = np.zeros((self.channels, 0), dtype=np.float32)  # from sample self._emitted
        self._emitted = 0
        self._frames = 0

    def _end(self) -> int:
        """The stream's length in samples as far as the frames pushed so far tell."""
        return max(0, self._frames - 1) * self.cfg.hop if self.length is None else self.length

    def _emit(self, end: int) -> np.ndarray:
        count = end - self._emitted
        if count <= 0:
            return np.zeros((self.channels, 0), dtype=np.float32)
        cfg = self.cfg
        if self._acc.shape[1] < count:
            grow = np.zeros((self.channels, count - self._acc.shape[1]), np.float32)
            self._acc = np.concatenate([self._acc, grow], axis=1)
        head = np.ascontiguousarray(self._acc[:, :count])
        out = _core.ola_normalize(head, self._emitted, self._frames, cfg.n_fft, cfg.hop)
        self._acc = np.ascontiguousarray(self._acc[:, count:])
        self._emitted = end
        return out

    def push(self, X: npt.ArrayLike) -> np.ndarray:
        """Add frames ``[C, 2, F, k]``; return the samples now final, ``[C, m]`` (never past
        the stream's length)."""
        cfg = self.cfg
        feats = np.asarray(X, dtype=np.float32)
        if feats.ndim != 4 or feats.shape[:3] != (self.channels, 2, cfg.n_freq):
            raise ValueError(
                f"X: expected shape [{self.channels}, 2, {cfg.n_freq}, k], got {feats.shape}"
            )
        k = feats.shape[3]
        if k == 0:
            return np.zeros((self.channels, 0), dtype=np.float32)
        end = (self._frames + k - 1) * cfg.hop - cfg.pad + cfg.n_fft  # past the last sample
        need = end - self._emitted
        if self._acc.shape[1] < need:
            grow = np.zeros((self.channels, need - self._acc.shape[1]), np.float32)
            self._acc = np.concatenate([self._acc, grow], axis=1)
        offset = self._frames * cfg.hop - cfg.pad - self._emitted
        _core.istft_ola(np.ascontiguousarray(feats), self._acc, offset, cfg.n_fft, cfg.hop,
                        float(cfg.alpha), float(cfg.beta))
        self._frames += k
        return self._emit(min(self._frames * cfg.hop - cfg.pad, self._end()))

    def finish(self) -> np.ndarray:
        """End the stream: return the remaining samples up to its length (samples no frame
        covers are 0), then reset for a new stream."""
        out = self._emit(self._end())
        self.reset()
        return out

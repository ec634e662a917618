"""Audio conventions: arrays are float32 ``[channels, samples]`` (pedalboard's layout).

:func:`as_audio` accepts mono ``[samples]``, ``[channels, samples]``, float or integer PCM,
and refuses what it cannot use with a clear ``ValueError``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

CODEC_RATE = 48000
MAX_CHANNELS = 255


def as_audio(audio: npt.ArrayLike, name: str = "audio") -> np.ndarray:
    """Convert to contiguous float32 ``[channels, samples]``.

    Integer PCM is scaled to [-1, 1) (int16 by 2¹⁵, int32 by 2³¹, uint8 centred at 128).

    Examples:
        >>> as_audio(np.zeros(4, np.int16)).shape
        (1, 4)
    """
    a = np.asarray(audio)
    if a.dtype == np.uint8:
        a = (a.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(2 ** (8 * a.dtype.itemsize - 1))
    elif not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name}: expected float or integer PCM samples, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected [samples] or [channels, samples], got shape {a.shape}")
    if a.shape[0] > MAX_CHANNELS:
        raise ValueError(
            f"{name}: {a.shape[0]} channels — arrays are [channels, samples]; "
            "transpose a [samples, channels] array (audio.T)"
        )
    if a.shape[1] == 0:
        raise ValueError(f"{name}: no samples (shape {a.shape})")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite samples")
    return a


def check_int(value: object, name: str, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``: a whole number (``512`` or ``512.0``; not ``512.5``,
    ``True`` or ``"512"``), else a ``ValueError`` naming ``name``.

    Examples:
        >>> check_int(512.0, "max_block", 1, 8192)
        512
    """
    if isinstance(value, bool | np.bool_):
        n = None
    elif isinstance(value, int | np.integer):
        n = int(value)
    elif isinstance(value, float | np.floating) and float(value).is_integer():
        n = int(value)
    else:
        n = None
    if n is None or not lo <= n <= hi:
        raise ValueError(f"{name}: expected a whole number in {lo}..{hi}, got {value!r}")
    return n


def check_rate(sample_rate: float) -> int:
    sr = int(round(float(sample_rate)))
    if sr < 8000 or sr > 768000 or abs(sr - float(sample_rate)) > 1e-6:
        raise ValueError(
            f"sample_rate: expected an integer rate in 8000..768000 Hz, got {sample_rate}"
        )
    return sr


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """High-quality resampling (soxr) of ``[channels, samples]``; identity when rates match."""
    if from_rate == to_rate:
        return audio
    import soxr

    out = soxr.resample(audio.T, from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, np.float32).T.reshape(audio.shape[0], -1))


class StreamResampler:
    """Chunked resampling with the same output as :func:`resample` on the whole signal
    (up to soxr's chunking tolerance); identity when rates match.

    Follows the stage contract (:class:`flowdec.pipeline.stages.Stage`): ``push(block)`` returns the
    output soxr has released, ``finish()`` the rest (the stream's length is what was
    pushed), ``reset()`` starts a new stream. Its input is in samples at ``from_rate`` and
    its output at ``to_rate``, and it has no ``latency`` attribute: soxr compensates its
    filter delay (output sample ``i`` is input time ``i / to_rate``) but releases output in
    internal blocks, so when a sample comes out depends on the push sizes
    (:func:`flowdec.stream.resampler_release` measures it for a fixed piece size).

    Examples:
        >>> rs = StreamResampler(44100, 48000, channels=1)
        >>> x = np.zeros((1, 4410), np.float32)
        >>> sum(p.shape[1] for p in [rs.push(x), rs.push(x), rs.finish()])
        9600
    """

    def __init__(self, from_rate: int, to_rate: int, channels: int) -> None:
        self.from_rate, self.to_rate = from_rate, to_rate
        self.identity = from_rate == to_rate
        self.channels = channels
        self.reset()

    def reset(self) -> None:
        """Forget all pushed samples (start a new stream)."""
        if not self.identity:
            import soxr

            self.rs = soxr.ResampleStream(self.from_rate, self.to_rate, self.channels,
                                          dtype="float32", quality="HQ")

    def _resample(self, audio: np.ndarray, last: bool) -> np.ndarray:
        out = self.rs.resample_chunk(np.ascontiguousarray(audio.T), last=last)
        return np.ascontiguousarray(np.asarray(out, np.float32).T.reshape(self.channels, -1))

    def push(self, audio: np.ndarray) -> np.ndarray:
        """Resample ``[channels, n]``; return the output released so far ``[channels, m]``."""
        if self.identity:
            return audio
        return self._resample(audio, False)

    def finish(self) -> np.ndarray:
        """End the stream: return the output soxr still holds ``[channels, m]`` (none at
        equal rates), then reset for a new stream."""
        if self.identity:
            return np.zeros((self.channels, 0), np.float32)
        out = self._resample(np.zeros((self.channels, 0), np.float32), True)
        self.reset()
        return out


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad ``[channels, samples]`` to exactly ``length`` samples."""
    n = audio.shape[1]
    if n >= length:
        return audio[:, :length]
    return np.pad(audio, ((0, 0), (0, length - n)))

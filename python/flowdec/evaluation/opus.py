"""Opus baseline: ``opusenc``/``opusdec`` from Debian's opus-tools, delay-compensated.

The signal is written as 16-bit PCM WAV at its own rate, encoded with
``opusenc --bitrate KBPS`` (hard CBR by default: ``--hard-cbr``, the fairest match for a
fixed-rate neural codec; ``mode="vbr"`` uses opusenc's default VBR), decoded with
``opusdec --rate 48000``, resampled back to the input rate, aligned to the input by
cross-correlation (lags up to ±``max_delay_ms``) and trimmed/padded to its length.

libopus cannot go below ~6 kbit/s of audio payload; at lower requested rates the file is
larger than requested: :attr:`OpusResult.kbps` reports the real file rate (Ogg overhead
included).

Example:
    >>> import numpy as np
    >>> x = np.sin(np.arange(48000) * 0.05).astype(np.float32)[None] * 0.3
    >>> r = opus_roundtrip(x, 48000, 12.0)      # doctest: +SKIP
    >>> r.audio.shape, r.delay_samples          # doctest: +SKIP
    ((1, 48000), 0)
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..audio import as_audio, fit_length, resample

OPUS_RATE = 48000


class OpusNotFound(RuntimeError):
    """opusenc/opusdec are not on PATH."""


@dataclass
class OpusResult:
    """Decoded, aligned audio ``[channels, samples]`` at the input rate and what it cost."""

    audio: np.ndarray
    kbps: float            # real file size × 8 / duration (kbit/s, all channels)
    delay_samples: int     # lag removed (samples at the input rate; positive = Opus late)
    wall_seconds: float


def opus_version() -> str | None:
    """``"opus-tools 0.2 (using libopus 1.3.1)"`` or None when opusenc is missing."""
    exe = shutil.which("opusenc")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    first = out.strip().splitlines()[0] if out.strip() else "opusenc"
    return first.removeprefix("opusenc ").strip()


def _tools() -> tuple[str, str]:
    enc, dec = shutil.which("opusenc"), shutil.which("opusdec")
    if enc is None or dec is None:
        raise OpusNotFound(
            "the Opus baseline needs opusenc and opusdec (Debian/Ubuntu: "
            "apt-get install opus-tools; macOS: brew install opus-tools)"
        )
    return enc, dec


def _write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    from scipy.io import wavfile

    pcm = np.clip(np.round(audio.T * 32767.0), -32768, 32767).astype(np.int16)
    wavfile.write(path, rate, pcm)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    from scipy.io import wavfile

    rate, data = wavfile.read(path)
    a = np.asarray(data)
    a = a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32)
    return (a[None] if a.ndim == 1 else a.T).copy(), int(rate)


def estimate_delay(ref: npt.ArrayLike, deg: npt.ArrayLike, max_lag: int) -> int:
    """Lag ``d`` (samples, |d| ≤ ``max_lag``) maximising the cross-correlation of the mono
    downmixes, such that ``deg[n + d] ≈ ref[n]`` (positive: ``deg`` is late).

    Example:
        >>> x = np.random.default_rng(0).standard_normal(4000)
        >>> estimate_delay(x, np.concatenate([np.zeros(37), x]), 100)
        37
    """
    r = np.asarray(ref, np.float64)
    d = np.asarray(deg, np.float64)
    r = r.mean(0) if r.ndim == 2 else r
    d = d.mean(0) if d.ndim == 2 else d
    n = 1 << int(np.ceil(np.log2(r.size + d.size)))
    xc = np.fft.irfft(np.fft.rfft(d, n) * np.conj(np.fft.rfft(r, n)), n)
    lags = np.concatenate([xc[: max_lag + 1], xc[n - max_lag:]])
    lag_values = np.concatenate([np.arange(max_lag + 1), np.arange(-max_lag, 0)])
    return int(lag_values[int(np.argmax(lags))])


def align(ref: np.ndarray, deg: np.ndarray, max_lag: int) -> tuple[np.ndarray, int]:
    """Shift ``deg`` by the estimated delay and fit it to ``ref``'s length."""
    d = estimate_delay(ref, deg, max_lag)
    shifted = deg[:, d:] if d >= 0 else np.pad(deg, ((0, 0), (-d, 0)))
    return fit_length(shifted, ref.shape[1]), d


def opus_roundtrip(audio: npt.ArrayLike, sample_rate: int, kbps: float, mode: str = "cbr",
                   max_delay_ms: float = 50.0, complexity: int = 10) -> OpusResult:
    """Encode with opusenc at ``kbps`` kbit/s (all channels together), decode, align.

    Raises:
        OpusNotFound: when opus-tools is not installed (message says how to install it).
        RuntimeError: when opusenc/opusdec fail (their stderr is included).
    """
    import time

    if mode not in ("cbr", "vbr"):
        raise ValueError(f"mode: expected 'cbr' or 'vbr', got {mode!r}")
    enc, dec = _tools()
    x = as_audio(audio)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flowdec-opus-") as tmp:
        src, ogg, out = Path(tmp) / "in.wav", Path(tmp) / "x.opus", Path(tmp) / "out.wav"
        _write_wav(src, x, sample_rate)
        cmd = [enc, "--quiet", "--bitrate", f"{kbps:g}", "--comp", str(complexity)]
        cmd += ["--hard-cbr"] if mode == "cbr" else ["--vbr"]
        for args in (cmd + [str(src), str(ogg)],
                     [dec, "--quiet", "--rate", str(OPUS_RATE), str(ogg), str(out)]):
            r = subprocess.run(args, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise RuntimeError(f"{Path(args[0]).name} failed ({r.returncode}): "
                                   f"{r.stderr.strip()[-500:]}")
        y, rate = _read_wav(out)
        size = ogg.stat().st_size
    y = resample(y, rate, sample_rate)
    if y.shape[0] != x.shape[0]:
        y = np.repeat(y.mean(0, keepdims=True), x.shape[0], axis=0)
    y, delay = align(x, y, int(max_delay_ms * sample_rate / 1000))
    seconds = x.shape[1] / sample_rate
    return OpusResult(np.ascontiguousarray(y, np.float32), size * 8 / 1000 / seconds, delay,
                      time.perf_counter() - t0)

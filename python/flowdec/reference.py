"""Plain-numpy references for every kernel of the C++ core (used by the tests).

Slow but simple; they define the numbers the C++ and CUDA kernels must reproduce:
bit packing, the compressed STFT Φ and its inverse Φ⁻¹, the counter-based RNG
(Philox4x32-10 + Box–Muller), noise init, the solver steps and the midpoint/Euler solve.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "hann_periodic",
    "pack_codes_ref",
    "istft_ref",
    "stft_ref",
    "unpack_codes_ref",
]


# --------------------------------------------------------------------------- bit packing


def pack_codes_ref(codes: npt.ArrayLike, bits: int) -> bytes:
    """LSB-first packing of integer codes (reference for :func:`flowdec.bitpack.pack_codes`)."""
    arr = np.asarray(codes).reshape(-1).astype(np.uint64)
    if arr.size == 0:
        return b""
    shifts = np.arange(bits, dtype=np.uint64)
    bitmat = ((arr[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8).reshape(-1)
    return np.packbits(bitmat, bitorder="little").tobytes()


def unpack_codes_ref(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes_ref`; returns uint16 ``[count]``."""
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    raw = flat[: count * bits].reshape(count, bits).astype(np.uint32)
    weights = (np.uint32(1) << np.arange(bits, dtype=np.uint32))[None, :]
    out: np.ndarray = (raw * weights).sum(axis=1).astype(np.uint16)
    return out


# ------------------------------------------------------------------------ STFT Φ and Φ⁻¹


def hann_periodic(n_fft: int) -> np.ndarray:
    """Periodic Hann window ``0.5 - 0.5 cos(2πj/n_fft)``, float64 ``[n_fft]``."""
    out: np.ndarray = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    return out


def stft_ref(
    x: npt.ArrayLike, n_fft: int = 1536, hop: int = 384, alpha: float = 0.3, beta: float = 0.33
) -> np.ndarray:
    """Φ in numpy (float64 inside): ``[T]`` or ``[B, T]`` -> float32 ``[B, 2, F, T//hop + 1]``."""
    sig = np.atleast_2d(np.asarray(x, dtype=np.float64))
    pad = n_fft // 2
    length = sig.shape[1]
    frames = length // hop + 1
    padded = np.zeros((sig.shape[0], length + 2 * pad + n_fft), dtype=np.float64)
    padded[:, pad : pad + length] = sig
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    spec = np.fft.rfft(padded[:, idx] * hann_periodic(n_fft), axis=-1)  # [B, N, F]
    mag = np.abs(spec)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(mag > 0, beta * mag ** (alpha - 1.0), 0.0)
    comp = spec * gain
    return np.stack([comp.real, comp.imag], axis=1).transpose(0, 1, 3, 2).astype(np.float32)


def istft_ref(
    X: npt.ArrayLike,
    length: int,
    n_fft: int = 1536,
    hop: int = 384,
    alpha: float = 0.3,
    beta: float = 0.33,
) -> np.ndarray:
    """Φ⁻¹ in numpy (float64 inside): ``[B, 2, F, N]`` -> float32 ``[B, length]``."""
    feats = np.asarray(X, dtype=np.float64)
    comp = feats[:, 0] + 1j * feats[:, 1]  # [B, F, N]
    mag = np.abs(comp)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(mag > 0, (mag / beta) ** (1.0 / alpha) / mag, 0.0)
    spec = (comp * gain).transpose(0, 2, 1)  # [B, N, F]
    frames = np.fft.irfft(spec, n=n_fft, axis=-1) * hann_periodic(n_fft)  # [B, N, n_fft]
    pad = n_fft // 2
    n = frames.shape[1]
    total = max((n - 1) * hop + n_fft, pad + length)
    acc = np.zeros((feats.shape[0], total))
    env = np.zeros(total)
    w2 = hann_periodic(n_fft) ** 2
    for i in range(n):
        acc[:, i * hop : i * hop + n_fft] += frames[:, i]
        env[i * hop : i * hop + n_fft] += w2
    acc, env = acc[:, pad : pad + length], env[pad : pad + length]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(env > 0, acc / env, 0.0)
    return out.astype(np.float32)

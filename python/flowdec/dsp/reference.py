"""Plain-numpy references for every kernel of the C++ core (used by the tests).

Slow but simple; they define the numbers the C++ and CUDA kernels must reproduce:
bit packing, the compressed STFT Φ and its inverse Φ⁻¹, the counter-based RNG
(Philox4x32-10 + Box–Muller), noise init, the solver steps and the midpoint/Euler solve.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = [
    "euler_step_ref",
    "hann_periodic",
    "midpoint_half_step_ref",
    "midpoint_solve_ref",
    "noise_init_ref",
    "philox4x32_ref",
    "randn_complex_ref",
    "pack_codes_ref",
    "istft_ref",
    "stft_ref",
    "unpack_codes_ref",
]


# --------------------------------------------------------------------------- bit packing


def pack_codes_ref(codes: npt.ArrayLike, bits: int) -> bytes:
    """LSB-first packing of integer codes (reference for
    :func:`flowdec.format.bitpack.pack_codes`)."""
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


# ------------------------------------------------------------- RNG and solver kernels

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_LO = np.uint64(0xFFFFFFFF)


def philox4x32_ref(
    counter: tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike],
    key: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Philox4x32-10 on broadcastable uint32 counter words; key is two uint32 words."""
    c = [np.asarray(w, dtype=np.uint64) & _LO for w in counter]
    c = list(np.broadcast_arrays(*c))
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for rnd in range(10):
        if rnd:
            k0 = (k0 + np.uint64(_W0)) & _LO
            k1 = (k1 + np.uint64(_W1)) & _LO
        p0 = _M0 * c[0]
        p1 = _M1 * c[2]
        hi0, hi1 = p0 >> np.uint64(32), p1 >> np.uint64(32)
        c = [hi1 ^ c[1] ^ k0, p1 & _LO, hi0 ^ c[3] ^ k1, p0 & _LO]
    a, b, d, e = (w.astype(np.uint32) for w in c)
    return a, b, d, e


def randn_complex_ref(seed: int, B: int, F: int, N: int, frame_offset: int = 0) -> np.ndarray:
    """The z of noise_init, float32 ``[B, 2, F, N]`` (Re, Im each N(0, ½))."""
    n = np.arange(N, dtype=np.uint64) + np.uint64(frame_offset)
    b = np.arange(B, dtype=np.uint64)[:, None, None]
    f = np.arange(F, dtype=np.uint64)[None, :, None]
    key = (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    nn = n[None, None, :]
    r0, r1, _, _ = philox4x32_ref((nn & _LO, nn >> np.uint64(32), f, b), key)
    u1 = ((r0 >> np.uint32(8)).astype(np.float64) + 0.5) / 16777216.0
    u2 = (r1 >> np.uint32(8)).astype(np.float64) / 16777216.0
    radius = np.sqrt(-np.log(u1))
    theta = 2.0 * np.pi * u2
    return np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1).astype(np.float32)


def noise_init_ref(
    Y: npt.ArrayLike, sigma_y: npt.ArrayLike, seed: int, frame_offset: int = 0
) -> np.ndarray:
    """X₀ = Y + σ_y[f]·z in numpy."""
    feats = np.asarray(Y, dtype=np.float32)
    B, _, F, N = feats.shape
    s = np.broadcast_to(np.asarray(sigma_y, dtype=np.float32), (F,))
    z = randn_complex_ref(seed, B, F, N, frame_offset)
    out: np.ndarray = (feats + s[None, None, :, None] * z).astype(np.float32)
    return out


def midpoint_half_step_ref(X: npt.ArrayLike, k1: npt.ArrayLike, h: float) -> np.ndarray:
    """X + (h/2)·k1 in float32."""
    out: np.ndarray = np.asarray(X, np.float32) + np.float32(0.5 * h) * np.asarray(k1, np.float32)
    return out


def euler_step_ref(X: npt.ArrayLike, k: npt.ArrayLike, h: float) -> np.ndarray:
    """X + h·k in float32 (a new array)."""
    out: np.ndarray = np.asarray(X, np.float32) + np.float32(h) * np.asarray(k, np.float32)
    return out


def midpoint_solve_ref(
    Y: npt.ArrayLike,
    sigma_y: npt.ArrayLike,
    velocity: Callable[[np.ndarray, np.ndarray, float], npt.ArrayLike],
    nfe: int = 6,
    seed: int = 0,
    frame_offset: int = 0,
    solver: str = "midpoint",
) -> np.ndarray:
    """The midpoint (or Euler) solve of :func:`flowdec.dsp.solver.midpoint_solve` in numpy."""
    feats = np.asarray(Y, dtype=np.float32)
    X = noise_init_ref(feats, sigma_y, seed, frame_offset)
    if solver == "euler":
        h = 1.0 / nfe
        for i in range(nfe):
            X = euler_step_ref(X, velocity(X, feats, i * h), h)
        return X
    steps = nfe // 2
    h = 1.0 / steps
    for i in range(steps):
        t = i * h
        Xm = midpoint_half_step_ref(X, velocity(X, feats, t), h)
        X = euler_step_ref(X, velocity(Xm, feats, t + 0.5 * h), h)
    return X

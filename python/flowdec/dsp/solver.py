"""Fused solver kernels and the midpoint / Euler flow-matching solver (C++ core, CPU).

Arrays are features ``[B, 2, F, N]`` float32 (re, im channels; F bins; N frames of hop
384 samples). Noise comes from a counter-based RNG (Philox4x32-10 + Box–Muller) keyed by
``(seed, b, f, frame_offset + n)``: the same seed gives the same noise on CPU, on GPU
(:mod:`flowdec.dsp.cuda`) and in :func:`flowdec.dsp.reference.randn_complex_ref`, and a chunk
starting at frame ``frame_offset`` gets exactly the noise of those frames of the whole
signal.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from flowdec import _core

__all__ = [
    "Velocity",
    "euler_step",
    "midpoint_half_step",
    "midpoint_solve",
    "noise_init",
    "sigma_vector",
]

Velocity = Callable[[np.ndarray, np.ndarray, float], npt.ArrayLike]
"""v(X, Y, t) -> array of X's shape; X, Y float32 [B, 2, F, N], t in [0, 1]."""

SOLVERS = ("midpoint", "euler")
"""The ODE solvers :func:`midpoint_solve` offers."""


def _check_int(value: object, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name}: must be an int, got {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name}: must be in [{lo}, {hi}], got {value}")
    return int(value)


def _check_h(h: float) -> float:
    if isinstance(h, bool) or not isinstance(h, int | float | np.floating):
        raise ValueError(f"h: must be a number, got {h!r}")
    if not np.isfinite(h):
        raise ValueError(f"h: must be finite, got {h!r}")
    return float(h)


def sigma_vector(sigma_y: npt.ArrayLike, n_freq: int) -> np.ndarray:
    """σ_y as float32 ``[n_freq]``: a scalar is broadcast, a vector must have n_freq values.

    Examples
    --------
    >>> sigma_vector(0.5, 3).tolist()
    [0.5, 0.5, 0.5]
    """
    try:
        s = np.asarray(sigma_y, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"sigma_y: cannot be converted to float32: {sigma_y!r}") from None
    if s.ndim == 0:
        s = np.full(n_freq, s, dtype=np.float32)
    if s.shape != (n_freq,):
        raise ValueError(f"sigma_y: expected a scalar or shape [{n_freq}], got {s.shape}")
    if not np.isfinite(s).all() or (s < 0).any():
        raise ValueError("sigma_y: must be finite and >= 0")
    return np.ascontiguousarray(s)


def _features(Y: npt.ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(Y, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: cannot be converted to float32") from None
    if arr.ndim != 4 or arr.shape[1] != 2 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty shape [B, 2, F, N], got {arr.shape}")
    return np.ascontiguousarray(arr)


def noise_init(
    Y: npt.ArrayLike,
    sigma_y: npt.ArrayLike,
    seed: int,
    frame_offset: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """X₀ = Y + σ_y[f]·z with z complex standard normal (Re, Im each N(0, ½)).

    Parameters
    ----------
    Y : features ``[B, 2, F, N]``.
    sigma_y : noise scale per bin ``[F]`` (or a scalar).
    seed : RNG seed, ``0 <= seed < 2**64``.
    frame_offset : global index of frame 0 of ``Y`` (frames of hop samples), for chunked
        processing.
    out : optional preallocated float32 C-contiguous ``[B, 2, F, N]`` output.

    Examples
    --------
    >>> Y = np.zeros((1, 2, 769, 10), np.float32)
    >>> X0 = noise_init(Y, 0.5, seed=1)
    >>> bool(np.array_equal(X0[..., 4:], noise_init(Y[..., 4:], 0.5, 1, frame_offset=4)))
    True
    """
    feats = _features(Y, "Y")
    s = sigma_vector(sigma_y, feats.shape[2])
    seed_i = _check_int(seed, "seed", 0, 2**64 - 1)
    off = _check_int(frame_offset, "frame_offset", 0, 2**62)
    return _core.noise_init(feats, s, seed_i, off, out)


def midpoint_half_step(
    X: npt.ArrayLike, k1: npt.ArrayLike, h: float, out: np.ndarray | None = None
) -> np.ndarray:
    """X_m = X + (h/2)·k1 in one pass (into ``out`` when given; ``out`` may be ``X``).

    Examples
    --------
    >>> midpoint_half_step(np.ones(4, np.float32), np.ones(4, np.float32), 0.5).tolist()
    [1.25, 1.25, 1.25, 1.25]
    """
    return _core.axpy(X, k1, 0.5 * _check_h(h), out)


def euler_step(X: np.ndarray, k: npt.ArrayLike, h: float) -> np.ndarray:
    """X += h·k in place (X must be a writable C-contiguous float32 array); returns X.

    The midpoint rule's full step X ← X + h·k2 is this kernel.

    Examples
    --------
    >>> X = np.zeros(3, np.float32)
    >>> euler_step(X, np.ones(3, np.float32), 0.25).tolist()
    [0.25, 0.25, 0.25]
    """
    if (
        not isinstance(X, np.ndarray)
        or X.dtype != np.float32
        or not X.flags.c_contiguous
        or not X.flags.writeable
    ):
        raise ValueError("X: must be a writable C-contiguous float32 array (updated in place)")
    return _core.axpy(X, k, _check_h(h), X)


def _velocity(velocity: Velocity, X: np.ndarray, Y: np.ndarray, t: float) -> np.ndarray:
    v = np.asarray(velocity(X, Y, t), dtype=np.float32)
    if v.shape != X.shape:
        raise ValueError(f"velocity: returned shape {v.shape}, expected {X.shape}")
    return np.ascontiguousarray(v)


def midpoint_solve(
    Y: npt.ArrayLike,
    sigma_y: npt.ArrayLike,
    velocity: Velocity,
    nfe: int = 6,
    seed: int = 0,
    frame_offset: int = 0,
    solver: str = "midpoint",
) -> np.ndarray:
    """Sample X₁ by integrating dX/dt = v(X, Y, t) over t ∈ [0, 1] from X₀ = Y + σ_y·z.

    ``solver="midpoint"``: N = nfe/2 steps of h = 1/N: k1 = v(X, Y, t);
    X_m = X + (h/2)·k1; k2 = v(X_m, Y, t + h/2); X ← X + h·k2 (nfe must be even).
    ``solver="euler"``: nfe steps of X ← X + h·v(X, Y, t).

    Parameters
    ----------
    Y : decoded features ``[B, 2, F, N]``.
    sigma_y : ``[F]`` or scalar.
    velocity : callable ``(X, Y, t) -> [B, 2, F, N]`` (e.g. an ONNX session wrapper). It
        must not keep references to ``X`` (the buffer is updated in place).
    nfe : number of velocity evaluations.
    seed, frame_offset : see :func:`noise_init`.

    Returns
    -------
    np.ndarray float32 ``[B, 2, F, N]``.

    Examples
    --------
    >>> Y = np.ones((1, 2, 5, 3), np.float32)
    >>> X1 = midpoint_solve(Y, 0.3, lambda X, Y, t: Y - X, nfe=6, seed=0)
    >>> X1.shape
    (1, 2, 5, 3)
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver: must be one of {', '.join(SOLVERS)}, got {solver!r}")
    nfe_i = _check_int(nfe, "nfe", 1, 10_000)
    if solver == "midpoint" and nfe_i % 2:
        raise ValueError(f"nfe: must be even for the midpoint solver, got {nfe_i}")
    if not callable(velocity):
        raise ValueError("velocity: must be callable")
    feats = _features(Y, "Y")
    X = noise_init(feats, sigma_y, seed, frame_offset)
    if solver == "euler":
        h = 1.0 / nfe_i
        for i in range(nfe_i):
            euler_step(X, _velocity(velocity, X, feats, i * h), h)
        return X
    steps = nfe_i // 2
    h = 1.0 / steps
    Xm = np.empty_like(X)
    for i in range(steps):
        t = i * h
        midpoint_half_step(X, _velocity(velocity, X, feats, t), h, out=Xm)
        euler_step(X, _velocity(velocity, Xm, feats, t + 0.5 * h), h)
    return X

"""The solver kernels on a CUDA GPU (same RNG and results as the CPU kernels).

Arrays are device buffers: any object with ``__cuda_array_interface__`` (torch and CuPy
tensors) or a :class:`DevicePointer` wrapping a raw pointer (e.g. an onnxruntime
``OrtValue.data_ptr()`` bound with IO binding). float32, C-contiguous, shape
``[B, 2, F, N]`` (σ_y: ``[F]`` on the device). Kernels are queued on ``stream`` (a
``cudaStream_t`` as an int, 0 = legacy default stream) and return without synchronising.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowdec import _core

__all__ = [
    "DevicePointer",
    "euler_step",
    "is_available",
    "is_compiled",
    "midpoint_half_step",
    "noise_init",
    "synchronize",
]


def is_compiled() -> bool:
    """True when the extension was built with the CUDA kernels (nvcc found at build time)."""
    return _core.cuda_compiled()


def is_available() -> bool:
    """True when the CUDA kernels were built and a CUDA device is present (never raises).

    Examples
    --------
    >>> isinstance(is_available(), bool)
    True
    """
    return _core.cuda_compiled() and _core.cuda_device_count() > 0


@dataclass(frozen=True)
class DevicePointer:
    """A raw float32 device buffer (C-contiguous) with ``__cuda_array_interface__``.

    Examples
    --------
    >>> DevicePointer(0x7F0000000000, (1, 2, 769, 10)).__cuda_array_interface__["typestr"]
    '<f4'
    """

    ptr: int
    shape: tuple[int, ...]
    __cuda_array_interface__: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        iface = {"shape": tuple(int(s) for s in self.shape), "typestr": "<f4",
                 "data": (int(self.ptr), False), "strides": None, "version": 3}
        object.__setattr__(self, "__cuda_array_interface__", iface)


def _device(obj: object, name: str) -> tuple[int, tuple[int, ...]]:
    iface = getattr(obj, "__cuda_array_interface__", None)
    if not isinstance(iface, dict):
        raise ValueError(f"{name}: expected a CUDA array (__cuda_array_interface__)")
    if np.dtype(iface.get("typestr", "")) != np.float32:
        raise ValueError(f"{name}: expected float32, got {iface.get('typestr')!r}")
    shape = tuple(int(s) for s in iface["shape"])
    strides = iface.get("strides")
    if strides is not None:
        expected, acc = [], 4
        for s in reversed(shape):
            expected.append(acc)
            acc *= s
        if tuple(strides) != tuple(reversed(expected)) and int(np.prod(shape)) > 1:
            raise ValueError(f"{name}: must be C-contiguous")
    ptr = int(iface["data"][0])
    if ptr == 0 and int(np.prod(shape)) > 0:
        raise ValueError(f"{name}: null device pointer")
    if int(np.prod(shape)) == 0:
        raise ValueError(f"{name}: is empty")
    return ptr, shape


def _require() -> None:
    if not _core.cuda_compiled():
        raise RuntimeError("flowdec was built without CUDA; rebuild with FLOWDEC_CUDA=ON")


def noise_init(
    Y: object, sigma_y: object, seed: int, out: object, frame_offset: int = 0, stream: int = 0
) -> None:
    """out = Y + σ_y[f]·z on the GPU; z is bit-identical to :func:`flowdec.dsp.solver.noise_init`.

    Parameters
    ----------
    Y, out : device ``[B, 2, F, N]`` float32 (may be the same buffer).
    sigma_y : device ``[F]`` float32.
    seed, frame_offset : as in :func:`flowdec.dsp.solver.noise_init`.
    stream : ``cudaStream_t`` as an int.
    """
    _require()
    yp, ys = _device(Y, "Y")
    sp, ss = _device(sigma_y, "sigma_y")
    op, os_ = _device(out, "out")
    if len(ys) != 4 or ys[1] != 2:
        raise ValueError(f"Y: expected shape [B, 2, F, N], got {ys}")
    if ss != (ys[2],):
        raise ValueError(f"sigma_y: expected shape [{ys[2]}], got {ss}")
    if os_ != ys:
        raise ValueError(f"out: shape {os_} does not match Y {ys}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: must be in [0, 2**64), got {seed}")
    if frame_offset < 0:
        raise ValueError(f"frame_offset: must be >= 0, got {frame_offset}")
    _core.cuda_noise_init(yp, sp, op, ys[0], ys[2], ys[3], int(seed), int(frame_offset),
                          int(stream))


def _axpy(X: object, k: object, a: float, out: object, stream: int) -> None:
    _require()
    xp, xs = _device(X, "X")
    kp, ks = _device(k, "k")
    op, os_ = _device(out, "out")
    if ks != xs:
        raise ValueError(f"k: shape {ks} does not match X {xs}")
    if os_ != xs:
        raise ValueError(f"out: shape {os_} does not match X {xs}")
    if not np.isfinite(a):
        raise ValueError("h: must be finite")
    _core.cuda_axpy(xp, kp, float(a), op, int(np.prod(xs)), int(stream))


def midpoint_half_step(X: object, k1: object, h: float, out: object, stream: int = 0) -> None:
    """out = X + (h/2)·k1 on the GPU (device buffers of equal shape)."""
    _axpy(X, k1, 0.5 * float(h), out, stream)


def synchronize(stream: int = 0) -> None:
    """Block until the kernels queued on ``stream`` (0: the whole device) have finished."""
    _require()
    _core.cuda_synchronize(int(stream))


def euler_step(X: object, k: object, h: float, stream: int = 0) -> None:
    """X += h·k in place on the GPU (the midpoint rule's full step)."""
    _axpy(X, k, float(h), X, stream)

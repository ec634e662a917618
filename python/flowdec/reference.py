"""Plain-numpy references for every kernel of the C++ core (used by the tests).

Slow but simple; they define the numbers the C++ and CUDA kernels must reproduce:
bit packing, the compressed STFT Φ and its inverse Φ⁻¹, the counter-based RNG
(Philox4x32-10 + Box–Muller), noise init, the solver steps and the midpoint/Euler solve.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "pack_codes_ref",
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

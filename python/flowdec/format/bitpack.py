"""Bit packing of codebook indices (C++ core).

Codes are written LSB-first: code 0 occupies the lowest ``bits`` bits of the stream, the
first byte holds the lowest 8 bits of the stream, and the last byte is zero-padded.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from flowdec import _core

__all__ = ["pack_codes", "packed_size", "unpack_codes"]


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 1 <= bits <= 16:
        raise ValueError(f"bits: must be an int in [1, 16], got {bits!r}")


def packed_size(count: int, bits: int) -> int:
    """Bytes needed for ``count`` codes of ``bits`` bits (``ceil(count*bits/8)``).

    Examples
    --------
    >>> packed_size(10, 10)
    13
    """
    _check_bits(bits)
    return (int(count) * int(bits) + 7) // 8


def pack_codes(codes: npt.ArrayLike, bits: int) -> bytes:
    """Pack integer codes into bytes, ``bits`` bits per code, LSB-first.

    Parameters
    ----------
    codes : array of any integer dtype and shape; packed in C order; each value in
        ``[0, 2**bits)``.
    bits : bits per code, 1..16 (10 for 1024-entry codebooks).

    Returns
    -------
    bytes of length ``ceil(codes.size * bits / 8)``; the last byte is zero-padded.

    Raises
    ------
    ValueError : non-integer ``codes``, a value out of range, or ``bits`` outside 1..16.

    Examples
    --------
    >>> pack_codes([1, 2, 3], 2).hex()
    '39'
    """
    _check_bits(bits)
    arr = np.asarray(codes)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"codes: expected an integer array, got dtype {arr.dtype}")
    if arr.size and arr.dtype == np.uint64 and int(arr.max()) >= 2**bits:
        raise ValueError(f"codes: value {int(arr.max())} is outside [0, 2**{bits})")
    return bytes(_core.pack_codes(np.ascontiguousarray(arr.reshape(-1), dtype=np.int64), int(bits)))


def unpack_codes(data: bytes | bytearray | memoryview, bits: int, count: int) -> np.ndarray:
    """Unpack ``count`` codes of ``bits`` bits from ``data`` (inverse of :func:`pack_codes`).

    Extra trailing bytes are ignored; too few bytes raise ``ValueError``.

    Returns
    -------
    np.ndarray of uint16, shape ``[count]``.

    Examples
    --------
    >>> unpack_codes(bytes.fromhex("39"), 2, 3).tolist()
    [1, 2, 3]
    """
    _check_bits(bits)
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
        raise ValueError(f"count: must be a non-negative int, got {count!r}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"data: expected bytes, got {type(data).__name__}")
    return _core.unpack_codes(bytes(data), int(bits), int(count))

"""Bit packing: C++ vs numpy reference, round trip, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdec.dsp.reference import pack_codes_ref, unpack_codes_ref
from flowdec.format.bitpack import pack_codes, packed_size, unpack_codes


@settings(max_examples=200, deadline=None)
@given(
    bits=st.integers(1, 16),
    data=st.data(),
    dtype=st.sampled_from([np.uint16, np.int32, np.int64, np.uint32, np.uint64]),
)
def test_round_trip_matches_reference(bits: int, data: st.DataObject, dtype: type) -> None:
    n = data.draw(st.integers(0, 300))
    values = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=n, max_size=n))
    codes = np.array(values, dtype=dtype)
    packed = pack_codes(codes, bits)
    assert len(packed) == packed_size(n, bits)
    assert packed == pack_codes_ref(codes, bits)
    out = unpack_codes(packed, bits, n)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, codes.astype(np.uint16))
    np.testing.assert_array_equal(unpack_codes_ref(packed, bits, n), out)


def test_known_bytes() -> None:
    assert pack_codes([1, 2, 3], 2) == bytes([0b00111001])
    assert pack_codes([0x3FF], 10) == bytes([0xFF, 0x03])
    assert pack_codes(np.array([[1, 0], [1, 1]], dtype=np.int8), 1) == bytes([0b1101])


def test_trailing_bytes_ignored() -> None:
    np.testing.assert_array_equal(unpack_codes(b"\x39\xff", 2, 3), [1, 2, 3])


@pytest.mark.parametrize(
    ("codes", "bits", "name"),
    [
        ([4], 2, "codes"),
        ([-1], 8, "codes"),
        (np.array([2**16], dtype=np.uint64), 16, "codes"),
        (np.array([2**63], dtype=np.uint64), 16, "codes"),
        ([1.5], 4, "codes"),
        ([True], 4, "codes"),
        ([1], 0, "bits"),
        ([1], 17, "bits"),
    ],
)
def test_pack_bad_input(codes: object, bits: int, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}"):
        pack_codes(codes, bits)  # type: ignore[arg-type]


def test_unpack_bad_input() -> None:
    with pytest.raises(ValueError, match="^data"):
        unpack_codes(b"\x00", 10, 1)
    with pytest.raises(ValueError, match="^count"):
        unpack_codes(b"\x00", 4, -1)
    with pytest.raises(ValueError, match="^bits"):
        unpack_codes(b"\x00", 0, 1)
    with pytest.raises(ValueError, match="^data"):
        unpack_codes("ab", 4, 1)  # type: ignore[arg-type]

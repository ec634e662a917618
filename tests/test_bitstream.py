"""Bitstream container: .fdc files and packets (round trips, size, truncation, corruption, fuzz)."""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdec.dsp.band_level import BAND_STEP_DB
from flowdec.format.bitstream import (
    FILE_FRAMES_PER_GAIN,
    FILE_FRAMES_PER_PACKET,
    FILE_LEVEL_BANDS,
    GAIN_LIMIT_DB,
    HEADER_SIZE,
    LIVE_FRAMES_PER_GAIN,
    LIVE_FRAMES_PER_PACKET,
    MAGIC,
    PACKET_OVERHEAD,
    BitstreamError,
    BitstreamWarning,
    FdcReader,
    FdcWriter,
    Packet,
    StreamHeader,
    TruncatedStreamError,
    decode_header,
    decode_packet,
    encode_header,
    encode_packet,
    packet_size,
    read_fdc,
    read_fdc_gains,
    write_fdc,
)

MODEL = "0123456789abcdef"
Codes = npt.NDArray[np.uint16]


def header(
    channels: int = 1, nq: int = 8, bits: int = 10, fpp: int = FILE_FRAMES_PER_PACKET, **kw: int
) -> StreamHeader:
    return StreamHeader(MODEL, 48000, channels, 44100, 44100 * 3, 75, 1, nq, bits, fpp, **kw)


def rand_codes(seed: int, channels: int, nq: int, frames: int, bits: int) -> Codes:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**bits, size=(channels, nq, frames)).astype(np.uint16)


def rand_gains(seed: int, channels: int, blocks: int) -> npt.NDArray[np.float32]:
    """Gains in dB on the stored grid (0.25 dB steps, within the limits)."""
    rng = np.random.default_rng(seed + 1)
    return (rng.integers(-127, 128, size=(channels, blocks)) * 0.25).astype(np.float32)


def rand_band_gains(seed: int, channels: int, blocks: int, bands: int
                    ) -> npt.NDArray[np.float32]:
    """Band gains in dB on the stored grid (3 dB steps, -24 … +21 dB)."""
    rng = np.random.default_rng(seed + 2)
    return (rng.integers(-8, 8, size=(channels, blocks, bands)) * BAND_STEP_DB).astype(np.float32)


def read_quiet(source: str | Path | io.BytesIO) -> tuple[StreamHeader, Codes, bool]:
    """read_fdc, returning whether a BitstreamWarning was raised (any other warning fails)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h, codes = read_fdc(source)
    assert all(issubclass(w.category, BitstreamWarning) for w in caught), caught
    return h, codes, bool(caught)


def fdc_bytes(h: StreamHeader, codes: Codes, tmp: Path) -> bytes:
    path = tmp / "x.fdc"
    write_fdc(path, h, codes)
    return path.read_bytes()


# --- header -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "h",
    [
        header(),
        header(channels=2, nq=4, total_frames=12345),
        StreamHeader("FFFFFFFFFFFFFFFF", 48000, 255, 8000, 2**64 - 1, 44100, 512, 255, 16, 65535),
        StreamHeader("0000000000000000", 48000, 1, 1, 0, 1, 2**32 - 1, 1, 1, 1, 2**32 - 1),
        header(fpp=600, frames_per_gain=75),
        StreamHeader("FFFFFFFFFFFFFFFF", 48000, 2, 8000, 1, 75, 1, 4, 10, 65535, 0, 65535),
        header(fpp=600, frames_per_gain=75, level_bands=FILE_LEVEL_BANDS),
        StreamHeader("FFFFFFFFFFFFFFFF", 48000, 2, 8000, 1, 75, 1, 4, 10, 6, 0, 3, 1),
    ],
)
def test_header_round_trip(h: StreamHeader) -> None:
    data = encode_header(h)
    assert len(data) == HEADER_SIZE == 61
    assert data.startswith(MAGIC)
    assert decode_header(data + b"\xc5\xfd rest") == (h, HEADER_SIZE)


def test_header_properties() -> None:
    assert [header(nq=n).nominal_kbps for n in (4, 6, 8, 10)] == [3.0, 4.5, 6.0, 7.5]
    h = StreamHeader("0123456789ABCDEF", 48000, 1, 44100, 44100, 44100, 512, 8, 10)
    assert h.model_id == MODEL  # normalised to lower case
    assert h.frame_rate == pytest.approx(86.1328125)
    assert h.nominal_kbps == pytest.approx(8 * 10 * 44100 / 512 / 1000)
    assert h.duration_s == 1.0
    assert h.frames_per_packet == FILE_FRAMES_PER_PACKET and h.total_frames == 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("model_id", "0123"),
        ("model_id", "0123456789abcdeg"),
        ("channels", 0),
        ("channels", 256),
        ("n_codebooks", 0),
        ("bits_per_code", 17),
        ("bits_per_code", 0),
        ("frames_per_packet", 0),
        ("frames_per_packet", 65536),
        ("frame_rate_den", 0),
        ("sample_rate", 0),
        ("original_length", -1),
        ("total_frames", 2**32),  # 32 bits since format version 4
        ("channels", 1.5),
        ("channels", True),
        ("frames_per_gain", 65536),
        ("frames_per_gain", 7),  # does not divide 600 frames per packet
    ],
)
def test_header_refuses_bad_fields(field: str, value: object) -> None:
    with pytest.raises(BitstreamError, match=field):
        dataclasses.replace(header(), **{field: value})  # type: ignore[arg-type]


# --- packets ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    channels=st.integers(1, 3),
    nq=st.integers(1, 12),
    bits=st.integers(1, 16),
    fpp=st.integers(1, 20),
    data=st.data(),
)
def test_packet_round_trip(
    channels: int, nq: int, bits: int, fpp: int, data: st.DataObject
) -> None:
    h = header(channels, nq, bits, fpp)
    frames = data.draw(st.integers(1, fpp))
    index = data.draw(st.integers(0, 2**32 - 1))
    codes = rand_codes(data.draw(st.integers(0, 2**32)), channels, nq, frames, bits)
    enc = encode_packet(h, Packet(index, codes))
    assert len(enc) == packet_size(h, frames) == PACKET_OVERHEAD + -(-codes.size * bits // 8)
    p, used = decode_packet(h, b"junk" + enc + b"next", offset=4)
    assert used == len(enc) and p.index == index and p.codes.dtype == np.uint16
    np.testing.assert_array_equal(p.codes, codes)


@settings(max_examples=100, deadline=None)
@given(channels=st.integers(1, 3), fpg=st.integers(1, 6), per=st.integers(1, 4),
       data=st.data())
def test_packet_round_trip_with_gains(channels: int, fpg: int, per: int,
                                      data: st.DataObject) -> None:
    h = header(channels, 4, 10, fpg * per, frames_per_gain=fpg)
    frames = data.draw(st.integers(1, fpg * per))
    codes = rand_codes(frames, channels, 4, frames, 10)
    gains = rand_gains(frames, channels, -(-frames // fpg))
    enc = encode_packet(h, Packet(3, codes, gains))
    assert len(enc) == packet_size(h, frames) == (
        PACKET_OVERHEAD + -(-codes.size * 10 // 8) + gains.size)
    p, used = decode_packet(h, enc)
    assert used == len(enc)
    np.testing.assert_array_equal(p.codes, codes)
    assert p.gains_db is not None and p.gains_db.dtype == np.float32
    np.testing.assert_array_equal(p.gains_db, gains)


def test_gain_bytes_layout_and_rounding() -> None:
    """Gains follow the codes as signed bytes of 0.25 dB, channel-major; the encoder rounds
    to the grid and clamps to ±31.75 dB."""
    h = header(channels=2, nq=1, bits=8, fpp=4, frames_per_gain=2)
    codes = np.arange(6, dtype=np.uint16).reshape(2, 1, 3)
    enc = encode_packet(h, Packet(0, codes, np.array([[1.1, -0.6], [40.0, -99.0]])))
    assert enc[16:22] == bytes(range(6))  # 8-bit codes: one byte each
    assert np.frombuffer(enc[22:], np.int8).tolist() == [4, -2, 127, -127]
    p, _ = decode_packet(h, enc)
    assert p.gains_db is not None
    assert p.gains_db.tolist() == [[1.0, -0.5], [GAIN_LIMIT_DB, -GAIN_LIMIT_DB]]


@pytest.mark.parametrize(
    "gains,match",
    [
        (None, "pass gains_db"),
        (np.zeros((1, 3)), "shape"),
        (np.zeros((2, 2)), "shape"),
        (np.array([[0.0, np.nan]]), "finite"),
        (np.array([[0.0, np.inf]]), "finite"),
        (np.array([["a", "b"]]), "float array"),
    ],
)
def test_encode_packet_refuses_bad_gains(gains: object, match: str) -> None:
    h = header(fpp=4, frames_per_gain=2)
    with pytest.raises(BitstreamError, match=match):
        encode_packet(h, Packet(0, rand_codes(0, 1, 8, 3, 10), gains))  # type: ignore[arg-type]
    with pytest.raises(BitstreamError, match="no gains"):
        encode_packet(header(fpp=4), Packet(0, rand_codes(0, 1, 8, 3, 10), np.zeros((1, 2))))


def test_packet_stream_parse_and_partial_data() -> None:
    """Live use: packets back to back; a partial packet asks for more bytes."""
    h = header(channels=2, fpp=LIVE_FRAMES_PER_PACKET)
    packets = [Packet(i, rand_codes(i, 2, 8, 15 if i < 4 else 6, 10)) for i in range(5)]
    stream = b"".join(encode_packet(h, p) for p in packets)
    off, got = 0, []
    while off < len(stream):
        p, n = decode_packet(h, stream, off)
        got.append(p)
        off += n
    assert [p.index for p in got] == list(range(5))
    for a, b in zip(got, packets, strict=True):
        np.testing.assert_array_equal(a.codes, b.codes)
    for cut in range(len(stream[: len(stream) - 1])):
        if cut < packet_size(h, 15):
            with pytest.raises(TruncatedStreamError, match="incomplete"):
                decode_packet(h, stream[:cut])


def test_packet_layout() -> None:
    """The documented bytes: sync, index, frames, length, CRC over bytes 2..12 + payload."""
    h = header(nq=2, bits=10, fpp=4)
    enc = encode_packet(h, Packet(258, np.array([[[1, 2, 3], [1023, 0, 5]]], dtype=np.uint16)))
    sync, index, frames, length, crc = struct.unpack_from("<HIHII", enc)
    assert (enc[:2], index, frames, length) == (b"\xc5\xfd", 258, 3, 8)
    assert crc == zlib.crc32(enc[2:12] + enc[16:])
    bits = int.from_bytes(enc[16:], "little")  # LSB-first: code k at bits [10k, 10k+10)
    assert [(bits >> (10 * k)) & 1023 for k in range(6)] == [1, 2, 3, 1023, 0, 5]


@pytest.mark.parametrize(
    "codes,match",
    [
        (np.full((1, 8, 3), 1024), "does not fit in 10 bits"),
        (np.full((1, 8, 3), -1), "does not fit"),
        (np.zeros((1, 7, 3), dtype=np.uint16), "shape"),
        (np.zeros((2, 8, 3), dtype=np.uint16), "shape"),
        (np.zeros((8, 3), dtype=np.uint16), "shape"),
        (np.zeros((1, 8, 3), dtype=np.float32), "integer"),
        (np.zeros((1, 8, 0), dtype=np.uint16), "0 frames"),
        (np.zeros((1, 8, 16), dtype=np.uint16), "16 frames"),
    ],
)
def test_encode_packet_refuses(codes: npt.NDArray[np.generic], match: str) -> None:
    with pytest.raises(BitstreamError, match=match):
        encode_packet(header(fpp=15), Packet(0, codes))  # type: ignore[arg-type]


# --- files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channels,nq,bits,fpp,frames",
    [
        (1, 8, 10, 300, 750),
        (2, 8, 10, 300, 751),
        (1, 4, 10, 15, 0),
        (1, 1, 1, 1, 5),
        (2, 3, 16, 7, 22),
        (5, 12, 7, 4, 13),
        (1, 10, 10, 75, 75),
        (3, 2, 9, 6, 1),
        (2, 255, 16, 2, 3),
    ],
)
def test_file_round_trip(
    tmp_path: Path, channels: int, nq: int, bits: int, fpp: int, frames: int
) -> None:
    h = header(channels, nq, bits, fpp)
    codes = rand_codes(frames, channels, nq, frames, bits)
    path = tmp_path / "clip.fdc"
    write_fdc(path, h, codes)
    h2, codes2 = read_fdc(path, expected_model_id=MODEL.upper())
    assert h2 == dataclasses.replace(h, total_frames=frames)
    assert codes2.dtype == np.uint16 and codes2.shape == (channels, nq, frames)
    np.testing.assert_array_equal(codes2, codes)
    n_packets = -(-frames // fpp)
    expected = HEADER_SIZE + sum(
        packet_size(h, min(fpp, frames - i * fpp)) for i in range(n_packets)
    )
    assert path.stat().st_size == expected
    assert os.listdir(tmp_path) == ["clip.fdc"]  # no temp file left behind


@pytest.mark.parametrize(("seed", "bands"), [(0, 0), (1, 0), (2, 1), (3, 7), (4, 24), (5, 24)])
def test_file_round_trip_with_gains_any_aligned_writes(tmp_path: Path, seed: int,
                                                       bands: int) -> None:
    """Gains and band gains survive a file whatever the write pattern; writes must hold whole
    gain blocks (only the last may end mid-block)."""
    rng = np.random.default_rng(seed)
    fpg = int(rng.integers(1, 5))
    fpp = fpg * int(rng.integers(1, 4))
    frames = int(rng.integers(1, 60))
    h = header(channels=2, nq=3, bits=9, fpp=fpp, frames_per_gain=fpg, level_bands=bands)
    codes = rand_codes(seed, 2, 3, frames, 9)
    blocks = -(-frames // fpg)
    gains = rand_gains(seed, 2, blocks)
    band_gains = rand_band_gains(seed, 2, blocks, bands) if bands else None
    write_fdc(tmp_path / "whole.fdc", h, codes, gains, band_gains)
    with FdcWriter(tmp_path / "chunks.fdc", h) as w:
        start = 0
        while start < frames:
            k = fpg * int(rng.integers(0, 4))
            b = slice(start // fpg, (start + k) // fpg if start + k < frames else None)
            w.write(codes[:, :, start : start + k], gains[:, b],
                    None if band_gains is None else band_gains[:, b])
            start += k
    assert (tmp_path / "chunks.fdc").read_bytes() == (tmp_path / "whole.fdc").read_bytes()
    h2, codes2, gains2, bands2 = read_fdc_gains(tmp_path / "chunks.fdc")
    assert h2.frames_per_gain == fpg and h2.level_bands == bands
    np.testing.assert_array_equal(codes2, codes)
    assert gains2 is not None
    np.testing.assert_array_equal(gains2, gains)
    if band_gains is None:
        assert bands2 is None
    else:
        assert bands2 is not None
        np.testing.assert_array_equal(bands2, band_gains)
    if fpg > 1 and frames > 1:
        with FdcWriter(tmp_path / "ragged.fdc", h) as w:
            nb = None if band_gains is None else band_gains[:, :1]
            w.write(codes[:, :, :1], gains[:, :1], nb)
            with pytest.raises(BitstreamError, match="only the last write may end mid-block"):
                w.write(codes[:, :, 1:], gains[:, 1:], nb)
            w.abort()


OLD_LAYOUTS = {  # version: (header fields after the 12-byte head, header bytes, what it lacks)
    1: ("<8sIIQIIQHBBBB", 62, "no gains: as written by flowdec 0.1"),
    2: ("<8sIIQIIQHBBBBH", 64, "level gains, no band gains"),
    3: ("<8sIIQIIQHBBBBHB", 65, "band gains; the total frames in 64 bits"),
}
"""Header layouts of the format versions this flowdec still reads, written out by hand: they
are frozen, so the tests must not derive them from the code under test."""


@pytest.mark.parametrize("version", sorted(OLD_LAYOUTS))
def test_older_versions_still_read(tmp_path: Path, version: int) -> None:
    """A file of each older format version decodes with what that version carries."""
    fields, size, _ = OLD_LAYOUTS[version]
    fpg, bands_n = (5 if version >= 2 else 0), (3 if version >= 3 else 0)
    h = header(fpp=10, frames_per_gain=fpg, level_bands=bands_n)
    rng = np.random.default_rng(version)
    codes = rand_codes(version, 1, 8, 25, 10)
    gains = rand_gains(version, 1, 5) if fpg else None
    bands = rng.integers(-8, 8, (1, 5, 3)).astype(np.float32) * 3 if bands_n else None
    extra = (fpg, bands_n)[: version - 1]
    head = struct.pack("<8sHH", MAGIC, version, size) + struct.pack(
        fields, bytes.fromhex(MODEL), 48000, 44100, 44100 * 3, 75, 1, 25, 10, 1, 8, 10, 0, *extra)
    head += struct.pack("<I", zlib.crc32(head))
    data = head + b"".join(
        encode_packet(h, Packet(i, codes[:, :, 10 * i : 10 * i + 10],
                                None if gains is None else gains[:, 2 * i : 2 * i + 2],
                                None if bands is None else bands[:, 2 * i : 2 * i + 2]))
        for i in range(3))
    path = tmp_path / f"v{version}.fdc"
    path.write_bytes(data)
    with FdcReader(path) as r:
        assert r.format_version == version
    assert decode_header(data) == (dataclasses.replace(h, total_frames=25), size)
    h2, codes2, gains2, bands2 = read_fdc_gains(path)
    assert h2 == dataclasses.replace(h, total_frames=25)
    np.testing.assert_array_equal(codes2, codes)
    for got, want in ((gains2, gains), (bands2, bands)):
        if want is None:
            assert got is None
        else:
            assert got is not None
            np.testing.assert_array_equal(got, want)


def test_band_gains_are_quantised_and_checked() -> None:
    """Band gains are stored in 3 dB steps, clamped to -24 … +21 dB; wrong shapes, non-finite
    values or band gains without gain blocks are refused."""
    h = header(fpp=6, frames_per_gain=3, level_bands=2)
    codes = rand_codes(0, 1, 8, 6, 10)
    bands = np.array([[[1.4, 1.6], [-40.0, 40.0]]])
    data = encode_packet(h, Packet(0, codes, np.zeros((1, 2)), bands))
    assert len(data) == packet_size(h, 6) == PACKET_OVERHEAD + 60 + 2 + 2
    p, _ = decode_packet(h, data)
    assert p.band_gains_db is not None
    assert p.band_gains_db.tolist() == [[[0.0, 3.0], [-24.0, 21.0]]]
    with pytest.raises(BitstreamError, match=r"band gains: expected shape \[1, 2, 2\]"):
        encode_packet(h, Packet(0, codes, np.zeros((1, 2)), np.zeros((1, 2, 3))))
    with pytest.raises(BitstreamError, match="pass band_gains_db of shape"):
        encode_packet(h, Packet(0, codes, np.zeros((1, 2))))
    with pytest.raises(BitstreamError, match="finite"):
        encode_packet(h, Packet(0, codes, np.zeros((1, 2)), np.full((1, 2, 2), np.nan)))
    with pytest.raises(BitstreamError, match="needs gain blocks"):
        header(level_bands=4)


def test_empty_stream(tmp_path: Path) -> None:
    h = header(channels=2)
    path = tmp_path / "empty.fdc"
    write_fdc(path, h, np.zeros((2, 8, 0), dtype=np.uint16))
    assert path.stat().st_size == HEADER_SIZE
    h2, codes, warned = read_quiet(path)
    assert not warned and h2.total_frames == 0 and codes.shape == (2, 8, 0)
    with FdcWriter(tmp_path / "empty2.fdc", h):
        pass
    assert (tmp_path / "empty2.fdc").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("seed", range(4))
def test_streaming_writer_and_reader_match_whole_file(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    fpp, frames = int(rng.integers(1, 12)), int(rng.integers(0, 80))
    h = header(channels=2, nq=5, bits=11, fpp=fpp)
    codes = rand_codes(seed, 2, 5, frames, 11)
    write_fdc(tmp_path / "whole.fdc", h, codes)
    with FdcWriter(tmp_path / "chunks.fdc", h) as w:
        start = 0
        while start < frames:
            k = int(rng.integers(0, 2 * fpp + 2))  # includes empty and multi-packet chunks
            w.write(codes[:, :, start : start + k])
            start += k
        assert w.frames_written == frames
        assert not (tmp_path / "chunks.fdc").exists()  # not there until close
    assert (tmp_path / "chunks.fdc").read_bytes() == (tmp_path / "whole.fdc").read_bytes()
    with FdcReader(tmp_path / "chunks.fdc") as r:
        assert r.header.total_frames == frames
        packets = list(r)
    assert [p.index for p in packets] == list(range(len(packets)))
    assert all(p.frames == fpp for p in packets[:-1])
    joined = np.concatenate([p.codes for p in packets], axis=2) if packets else codes
    np.testing.assert_array_equal(joined, codes)


def test_reader_accepts_open_file_and_iterates_once(tmp_path: Path) -> None:
    h = header(fpp=10)
    codes = rand_codes(1, 1, 8, 25, 10)
    write_fdc(tmp_path / "a.fdc", h, codes)
    with open(tmp_path / "a.fdc", "rb") as f:
        r = FdcReader(f)
        assert sum(p.frames for p in r) == 25
        with pytest.raises(BitstreamError, match="once"):
            list(r)
        r.close()
        assert not f.closed  # the caller's file stays open


def test_file_size_overhead(tmp_path: Path) -> None:
    """Issue 5: a 10 s clip is within 3 % of nominal bitrate x duration with the default
    packets and level gains (one byte per second), at every bitrate. The encoder codes
    ceil(T / hop) + 1 frames, so 10 s are 751 frames in 11 gain blocks (the last of one frame)."""
    for nq, nominal in [(8, 7500), (4, 3750), (6, 5625), (10, 9375)]:
        h = header(nq=nq, frames_per_gain=FILE_FRAMES_PER_GAIN)
        assert h.nominal_kbps * 10 * 1000 / 8 == nominal
        path = tmp_path / f"ten_s_{nq}.fdc"
        write_fdc(path, h, rand_codes(nq, 1, nq, 751, 10), np.zeros((1, 11)))  # 10 s, mono
        size = path.stat().st_size
        assert size <= nominal * 1.03, (nq, size, nominal)
        codes = -(-600 * nq * 10 // 8) + -(-151 * nq * 10 // 8)
        assert size == HEADER_SIZE + 2 * PACKET_OVERHEAD + codes + 11
    assert (tmp_path / "ten_s_4.fdc").stat().st_size == 3859  # +2.91 % at 3 kbit/s
    assert (tmp_path / "ten_s_8.fdc").stat().st_size == 7614  # +1.52 % at 6 kbit/s
    assert FILE_FRAMES_PER_PACKET % FILE_FRAMES_PER_GAIN == 0
    assert LIVE_FRAMES_PER_PACKET % LIVE_FRAMES_PER_GAIN == 0


# --- refusals -----------------------------------------------------------------------------


def test_wrong_magic_unknown_version_model_mismatch(tmp_path: Path) -> None:
    good = fdc_bytes(header(), rand_codes(0, 1, 8, 20, 10), tmp_path)
    bad = tmp_path / "bad.fdc"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(100))
    with pytest.raises(BitstreamError, match="not a flowdec .fdc file"):
        read_fdc(bad)
    bad.write_bytes(b"")
    with pytest.raises(BitstreamError, match="truncated inside the header"):
        read_fdc(bad)
    newer = bytearray(good)
    newer[8:10] = struct.pack("<H", 5)
    newer[57:61] = struct.pack("<I", zlib.crc32(newer[:57]))
    bad.write_bytes(bytes(newer))
    with pytest.raises(BitstreamError, match=r"newer flowdec \(format version 5.*upgrade flowdec"):
        read_fdc(bad)
    with pytest.raises(BitstreamError, match="newer flowdec"):
        decode_header(bytes(newer[:12]))  # the version is refused before the rest is needed
    with pytest.raises(BitstreamError) as e:
        read_fdc(tmp_path / "x.fdc", expected_model_id="fedcba9876543210")
    msg = str(e.value)
    assert "model mismatch" in msg and MODEL in msg and "fedcba9876543210" in msg
    assert f"decode it with model {MODEL}" in msg
    assert read_fdc(tmp_path / "x.fdc", expected_model_id=MODEL)[1].shape == (1, 8, 20)


def test_codes_out_of_range_refused_and_no_file_left(tmp_path: Path) -> None:
    h = header(bits=10)
    codes = rand_codes(0, 1, 8, 700, 10)
    codes[0, 3, 650] = 1024  # in the third packet: the first two were already written
    with pytest.raises(BitstreamError, match="1024 does not fit in 10 bits"):
        write_fdc(tmp_path / "x.fdc", h, codes)
    assert os.listdir(tmp_path) == []


def test_interrupted_writer_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.fdc"
    with pytest.raises(KeyboardInterrupt), FdcWriter(path, header(fpp=10)) as w:
        w.write(rand_codes(0, 1, 8, 35, 10))  # three packets written to the temp file
        assert len(os.listdir(tmp_path)) == 1 and not path.exists()
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
    # an interrupted rewrite keeps the old complete file
    write_fdc(path, header(), rand_codes(1, 1, 8, 5, 10))
    old = path.read_bytes()
    with pytest.raises(RuntimeError), FdcWriter(path, header()) as w:
        w.write(rand_codes(2, 1, 8, 9, 10))
        raise RuntimeError("encoder crashed")
    assert os.listdir(tmp_path) == ["out.fdc"] and path.read_bytes() == old
    w2 = FdcWriter(tmp_path / "gone.fdc", header())
    w2.abort()
    assert os.listdir(tmp_path) == ["out.fdc"]
    with pytest.raises(BitstreamError, match="closed"):
        w2.write(rand_codes(0, 1, 8, 1, 10))


class _FullDisk(io.BufferedWriter):
    """A file on a full disk: buffered writes fail once flushed, and so does close()."""

    def flush(self) -> None:
        raise OSError(28, "No space left on device", self.name)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.raw.close()


@pytest.mark.parametrize("frames", [0, 5, 1500])  # in the header, in close(), in write()
def test_full_disk_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       frames: int) -> None:
    """The temporary file is removed even when closing it fails again (ENOSPC)."""
    import flowdec.format.bitstream as bs

    def full_disk(path: Path, mode: str) -> _FullDisk:
        return _FullDisk(io.FileIO(path, mode.replace("b", "")), buffer_size=64)

    monkeypatch.setattr(bs, "open", full_disk, raising=False)
    with pytest.raises(OSError, match="No space left"):
        write_fdc(tmp_path / "x.fdc", header(), rand_codes(0, 1, 8, frames, 10))
    assert os.listdir(tmp_path) == []


# --- truncation and corruption ------------------------------------------------------------

SMALL = header(channels=2, nq=3, bits=10, fpp=4)
SMALL_CODES = rand_codes(7, 2, 3, 14, 10)  # packets of 4, 4, 4, 2 frames


def packet_offsets(h: StreamHeader, frames: int) -> list[int]:
    """Byte offset of each packet start, plus the end of the file."""
    offs = [HEADER_SIZE]
    for i in range(-(-frames // h.frames_per_packet)):
        offs.append(offs[-1] + packet_size(h, min(h.frames_per_packet, frames - i * 4)))
    return offs


def test_truncated_file_decodes_complete_packets(tmp_path: Path) -> None:
    data = fdc_bytes(SMALL, SMALL_CODES, tmp_path)
    offs = packet_offsets(SMALL, 14)
    assert offs[-1] == len(data)
    cut_path = tmp_path / "cut.fdc"
    for cut in range(len(data) + 1):
        cut_path.write_bytes(data[:cut])
        if cut < HEADER_SIZE:
            with pytest.raises(BitstreamError):
                read_fdc(cut_path)
            continue
        h, codes, warned = read_quiet(cut_path)
        complete = sum(1 for o in offs[1:] if o <= cut)
        frames = min(14, 4 * complete)
        assert warned == (cut < len(data)), cut
        assert h == dataclasses.replace(SMALL, total_frames=14)
        np.testing.assert_array_equal(codes, SMALL_CODES[:, :, :frames])
    with pytest.warns(BitstreamWarning, match="truncated"):
        read_fdc(io.BytesIO(data[:-1]))


def test_any_flipped_byte_is_refused(tmp_path: Path) -> None:
    data = fdc_bytes(SMALL, SMALL_CODES, tmp_path)
    offs = packet_offsets(SMALL, 14)
    for pos in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[pos] ^= mask
            with pytest.raises(BitstreamError) as e:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # a warning here would be a failure
                    read_fdc(io.BytesIO(bytes(bad)))
            msg = str(e.value)
            if pos < HEADER_SIZE:
                assert any(
                    s in msg for s in ("header is corrupt", "not a flowdec", "newer flowdec")
                ), (pos, msg)
            else:
                k = max(i for i, o in enumerate(offs) if o <= pos)
                assert f"packet #{k} " in msg and f"byte offset {offs[k]}" in msg, (pos, msg)
                assert "corrupt" in msg or "damaged" in msg
    # and on disk, through a path
    bad = bytearray(data)
    bad[offs[2] + 20] ^= 0x10
    (tmp_path / "bad.fdc").write_bytes(bytes(bad))
    with pytest.raises(BitstreamError, match=rf"packet #2 .*byte offset {offs[2]}.*CRC-32"):
        read_fdc(tmp_path / "bad.fdc")


def test_structural_damage_refused() -> None:
    h = SMALL
    p = [encode_packet(h, Packet(i, SMALL_CODES[:, :, 4 * i : 4 * i + 4])) for i in range(4)]
    head = encode_header(dataclasses.replace(h, total_frames=0))
    cases = {
        "missing or out of order": head + p[0] + p[2],
        "follows a short packet": (
            head + p[0] + encode_packet(h, Packet(1, SMALL_CODES[:, :, 4:6])) + p[2]
        ),
    }
    for match, data in cases.items():
        with pytest.raises(BitstreamError, match=match):
            read_fdc(io.BytesIO(data))
    too_many = encode_header(dataclasses.replace(h, total_frames=5)) + p[0] + p[1]
    with pytest.raises(BitstreamError, match="goes past the 5 frames"):
        read_fdc(io.BytesIO(too_many))
    # total_frames = 0 (live capture): no frame count to check, no warning
    _, codes, warned = read_quiet(io.BytesIO(head + p[0] + p[1]))
    assert codes.shape == (2, 3, 8) and not warned


# --- fuzz ---------------------------------------------------------------------------------


def parse_any(data: bytes) -> None:
    """Feed ``data`` to every parser; only results and BitstreamError/Warning are allowed."""
    try:
        h, n = decode_header(data)
    except BitstreamError:
        pass
    else:
        assert n == HEADER_SIZE and encode_header(h) == data[:HEADER_SIZE]  # v1 needs a CRC
        try:
            decode_packet(h, data, n)
        except BitstreamError:
            pass
    try:
        read_quiet(io.BytesIO(data))
    except BitstreamError:
        pass


@settings(max_examples=300, deadline=2000)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=300).map(lambda b: MAGIC + b),
        st.binary(max_size=300).map(lambda b: encode_header(SMALL)[:12] + b),
        st.binary(max_size=300).map(lambda b: encode_header(SMALL) + b"\xc5\xfd" + b),
    )
)
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    parse_any(data)


@st.composite
def valid_files(draw: st.DrawFn) -> tuple[bytes, Codes]:
    channels, nq, bits = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 16))
    fpp, frames = draw(st.integers(1, 8)), draw(st.integers(0, 30))
    fpg = draw(st.sampled_from([0] + [d for d in range(1, fpp + 1) if fpp % d == 0]))
    h = header(channels, nq, bits, fpp, frames_per_gain=fpg)
    seed = draw(st.integers(0, 1000))
    codes = rand_codes(seed, channels, nq, frames, bits)
    gains = rand_gains(seed, channels, h.gain_blocks(frames))
    buf = [encode_header(dataclasses.replace(h, total_frames=frames))]
    for i, start in enumerate(range(0, frames, fpp)):
        g = gains[:, start // fpg : (start + fpp) // fpg] if fpg else None
        buf.append(encode_packet(h, Packet(i, codes[:, :, start : start + fpp], g)))
    return b"".join(buf), codes


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, Codes]:
    data, codes = draw(valid_files())
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "set"]))
        pos = draw(st.integers(0, len(b)))
        if op == "flip" and pos < len(b):
            b[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del b[pos:]
        elif op == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=20))
        elif op == "delete":
            del b[pos : pos + draw(st.integers(1, 20))]
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            b[pos : pos + len(chunk)] = chunk
    return bytes(b), codes


@settings(max_examples=300, deadline=2000)
@given(mutated())
def test_fuzz_mutated_files_never_give_garbage(case: tuple[bytes, Codes]) -> None:
    data, codes = case
    parse_any(data)
    try:
        _, got, warned = read_quiet(io.BytesIO(data))
    except BitstreamError:
        return
    # whatever decodes is a prefix of the real codes (complete, CRC-checked packets only)
    assert got.shape[:2] == codes.shape[:2] and got.shape[2] <= codes.shape[2]
    np.testing.assert_array_equal(got, codes[:, :, : got.shape[2]])
    if data != b"" and got.shape[2] < codes.shape[2]:
        assert warned


@settings(
    max_examples=40, deadline=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutated())
def test_fuzz_files_on_disk(tmp_path: Path, case: tuple[bytes, Codes]) -> None:
    data, _ = case
    path = tmp_path / "fuzz.fdc"
    path.write_bytes(data)
    try:
        read_quiet(path)
    except BitstreamError:
        pass

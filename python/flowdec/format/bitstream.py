"""The flowdec bitstream: ``.fdc`` files and streaming packets (format version 4).

A stream is one header followed by packets. The header says everything needed to decode
(model id, rates, channels, frame rate, codebooks, bits per code, frames per gain block,
level bands); each packet carries up to ``frames_per_packet`` frames of codes for every
channel, bit-packed exactly, then the level gains of its gain blocks (one signed byte per
block and channel, in 0.25 dB) and, with level bands, the band gains of those blocks (4 bits
per block, channel and band, in 3 dB), with its own length and CRC-32. The same packets are
written to ``.fdc`` files and sent by the live path. The byte-by-byte layout is in
``docs/bitstream.md``; version-1 (no gains), version-2 (no band gains) and version-3 files
(a 64-bit frame count) are still read.

Units: rates in Hz, lengths in samples per channel, frames are codec frames (75 per second
for hop 640 at 48 kHz), bitrates in kbit/s.

Refusals are :class:`BitstreamError` (a ``ValueError``) with a message naming the problem
and what to do; a truncated file decodes up to its last complete packet with a
:class:`BitstreamWarning`.

Example
-------
>>> import numpy as np, tempfile, os
>>> h = StreamHeader(model_id="0123456789abcdef", sample_rate=48000, channels=1,
...                  original_rate=44100, original_length=44100, frame_rate_num=75,
...                  frame_rate_den=1, n_codebooks=8, bits_per_code=10)
>>> h.nominal_kbps
6.0
>>> codes = np.zeros((1, 8, 75), dtype=np.uint16)
>>> path = os.path.join(tempfile.mkdtemp(), "x.fdc")
>>> write_fdc(path, h, codes)
>>> h2, c2 = read_fdc(path, expected_model_id="0123456789abcdef")
>>> h2.total_frames, c2.shape
(75, (1, 8, 75))
"""

from __future__ import annotations

import dataclasses
import operator
import os
import secrets
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from flowdec.dsp.band_level import BAND_STEP_DB, BAND_STEP_RANGE, quantize_band_gains
from flowdec.dsp.level import GAIN_LIMIT_DB, GAIN_STEP_DB, quantize_gains
from flowdec.format.bitpack import pack_codes, unpack_codes

__all__ = [
    "FILE_FRAMES_PER_GAIN",
    "FILE_LEVEL_BANDS",
    "FILE_FRAMES_PER_PACKET",
    "FORMAT_VERSION",
    "GAIN_LIMIT_DB",
    "GAIN_STEP_DB",
    "HEADER_SIZE",
    "LIVE_FRAMES_PER_GAIN",
    "LIVE_FRAMES_PER_PACKET",
    "MAGIC",
    "PACKET_OVERHEAD",
    "PACKET_SYNC",
    "BitstreamError",
    "BitstreamWarning",
    "FdcReader",
    "FdcWriter",
    "Packet",
    "StreamHeader",
    "TruncatedStreamError",
    "check_band_gains",
    "check_codes",
    "check_gains",
    "decode_header",
    "decode_packet",
    "encode_header",
    "encode_packet",
    "packet_size",
    "gain_bytes",
    "read_fdc",
    "read_fdc_gains",
    "write_fdc",
]

MAGIC = b"FLOWDEC\0"
"""First 8 bytes of every stream."""
FORMAT_VERSION = 4
"""Format version written by this flowdec; it reads versions 1 to 4 and refuses others."""
PACKET_SYNC = 0xFDC5
"""u16 sync word that starts every packet (bytes ``C5 FD`` on disk)."""
FILE_FRAMES_PER_PACKET = 600
"""Default frames per packet for files: 8 s at 75 frames/s (10 s clip: +1.5 % at 6 kbit/s,
+2.9 % at 3 kbit/s including the gains; see docs/bitstream.md)."""
LIVE_FRAMES_PER_PACKET = 15
"""Frames per packet for the live path: 0.2 s at 75 frames/s (lower latency; ~15 % overhead at
6 kbit/s with the 40 ms gains)."""
FILE_FRAMES_PER_GAIN = 75
"""Frames per level-gain block in files: 1 s at 75 frames/s (8 bit/s per channel)."""
FILE_LEVEL_BANDS = 24
"""ERB bands for band gains in files when asked for (``--level-bands 24``; files have none by
default): 96 bit/s per channel (:mod:`flowdec.dsp.band_level`)."""
LIVE_FRAMES_PER_GAIN = 3
"""Frames per level-gain block for streams: 40 ms, a divisor of every streaming chunk."""

# header: magic, version, header length | model id, sample rate, original rate, original
# length, frame rate num/den, total frames, frames per packet, channels, codebooks, bits,
# flags, [version 2: frames per gain], [version 3: level bands] | CRC-32 of everything before.
# Version 4 stores the total frames in 32 bits instead of 64 (4 bytes less per stream).
_HEAD = struct.Struct("<8sHH")
_FIELDS_BY_VERSION = {1: struct.Struct("<8sIIQIIQHBBBB"), 2: struct.Struct("<8sIIQIIQHBBBBH"),
                      3: struct.Struct("<8sIIQIIQHBBBBHB"), 4: struct.Struct("<8sIIQIIIHBBBBHB")}
_FIELDS = _FIELDS_BY_VERSION[FORMAT_VERSION]
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEAD.size + _FIELDS.size + _CRC.size
"""Bytes in a version-4 header (61)."""
_HEADER_SIZES = {v: _HEAD.size + f.size + _CRC.size for v, f in _FIELDS_BY_VERSION.items()}
_LONGEST_HEADER = max(_HEADER_SIZES.values())
# packet: sync, index, frames, payload length, CRC-32 of (index, frames, length, payload)
_PACKET = struct.Struct("<HIHII")
PACKET_OVERHEAD = _PACKET.size
"""Bytes of framing per packet (16)."""

_U32 = 2**32 - 1
_U64 = 2**64 - 1

PathLike = str | os.PathLike[str]
Codes = npt.NDArray[np.uint16]


class BitstreamError(ValueError):
    """A stream or file was refused: the message names the problem and what to do."""


class TruncatedStreamError(BitstreamError):
    """The data ends inside a header or packet (more bytes are needed).

    :func:`decode_packet` raises it for an incomplete packet; :class:`FdcReader` turns it
    into a :class:`BitstreamWarning` and stops at the last complete packet.
    """


class BitstreamWarning(UserWarning):
    """A file was decoded only partly (it is truncated)."""


def _int_field(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise BitstreamError(f"{name}: expected an int in [{lo}, {hi}], got {value!r}")
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise BitstreamError(
            f"{name}: expected an int in [{lo}, {hi}], got {type(value).__name__}"
        ) from None
    if not lo <= v <= hi:
        raise BitstreamError(f"{name}: must be in [{lo}, {hi}], got {v}")
    return int(v)


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder needs to know about a stream (the ``.fdc`` header).

    Attributes
    ----------
    model_id : 16 hex digits identifying the model files (stored as 8 raw bytes; kept
        lower-case).
    sample_rate : codec rate in Hz (48000).
    channels : coded channels, 1..255 (each coded independently).
    original_rate : the input's rate in Hz (e.g. 44100); decoders resample back to it.
    original_length : samples per channel of the input, at ``original_rate``.
    frame_rate_num, frame_rate_den : codec frames per second as an exact fraction
        (75/1 for hop 640 at 48 kHz).
    n_codebooks : codebooks used per frame, 1..255 (8 for 6 kbit/s).
    bits_per_code : bits per code, 1..16 (10 for 1024-entry codebooks).
    frames_per_packet : frames per packet, 1..65535; :data:`FILE_FRAMES_PER_PACKET` (600,
        8 s) by default, :data:`LIVE_FRAMES_PER_PACKET` (15, 0.2 s) for the live path.
    total_frames : frames per channel in the whole stream, below 2**32 (1.8 years at 75
        frames/s); 0 means unknown (live). :class:`FdcWriter` and :func:`write_fdc` store the
        real count.
    frames_per_gain : frames per level-gain block, a divisor of ``frames_per_packet``;
        0 = the stream carries no gains (all of version 1). Each block has one gain per
        channel, in dB: the loudness correction the encoder measured for the plain decoder
        output (K-weighted input energy / decoded energy over the block, see
        :mod:`flowdec.dsp.level`).
        :data:`FILE_FRAMES_PER_GAIN` (75, 1 s) for files, :data:`LIVE_FRAMES_PER_GAIN`
        (3, 40 ms) for streams.
    level_bands : ERB bands of the band gains (:mod:`flowdec.dsp.band_level`), 0 = none (all of
        versions 1 and 2, and the live path); needs gains. Each gain block then also has,
        per channel and band, the level correction the encoder measured for the plain
        decoder output in :data:`~flowdec.dsp.band_level.BAND_STEP_DB` steps. Opt-in for files
        (:data:`FILE_LEVEL_BANDS` = 24 suggested).

    Example
    -------
    >>> h = StreamHeader("0123456789ABCDEF", 48000, 2, 44100, 441000, 75, 1, 4, 10)
    >>> h.model_id, h.nominal_kbps, h.frame_rate
    ('0123456789abcdef', 3.0, Fraction(75, 1))
    """

    model_id: str
    sample_rate: int
    channels: int
    original_rate: int
    original_length: int
    frame_rate_num: int
    frame_rate_den: int
    n_codebooks: int
    bits_per_code: int
    frames_per_packet: int = FILE_FRAMES_PER_PACKET
    total_frames: int = 0
    frames_per_gain: int = 0
    level_bands: int = 0

    def __post_init__(self) -> None:
        mid = self.model_id
        if not isinstance(mid, str) or len(mid) != 16:
            raise BitstreamError(f"model_id: expected 16 hex digits, got {mid!r}")
        try:
            bytes.fromhex(mid)
        except ValueError:
            raise BitstreamError(f"model_id: expected 16 hex digits, got {mid!r}") from None
        object.__setattr__(self, "model_id", mid.lower())
        limits = {
            "sample_rate": (1, _U32),
            "channels": (1, 255),
            "original_rate": (1, _U32),
            "original_length": (0, _U64),
            "frame_rate_num": (1, _U32),
            "frame_rate_den": (1, _U32),
            "n_codebooks": (1, 255),
            "bits_per_code": (1, 16),
            "frames_per_packet": (1, 2**16 - 1),
            "total_frames": (0, _U32),
            "frames_per_gain": (0, 2**16 - 1),
            "level_bands": (0, 255),
        }
        for name, (lo, hi) in limits.items():
            object.__setattr__(self, name, _int_field(name, getattr(self, name), lo, hi))
        if self.frames_per_gain and self.frames_per_packet % self.frames_per_gain:
            raise BitstreamError(
                f"frames_per_gain ({self.frames_per_gain}) must divide frames_per_packet "
                f"({self.frames_per_packet}) so that gain blocks never straddle packets"
            )
        if self.level_bands and not self.frames_per_gain:
            raise BitstreamError(f"level_bands ({self.level_bands}) needs gain blocks: set "
                                 "frames_per_gain too")

    def gain_blocks(self, frames: int) -> int:
        """Gain blocks covering ``frames`` frames (the last one may be short); 0 if the
        stream carries no gains."""
        return -(-frames // self.frames_per_gain) if self.frames_per_gain else 0

    @property
    def frame_rate(self) -> Fraction:
        """Codec frames per second, exactly (e.g. ``Fraction(75, 1)``)."""
        return Fraction(self.frame_rate_num, self.frame_rate_den)

    @property
    def nominal_kbps(self) -> float:
        """Payload bitrate in kbit/s: ``n_codebooks * bits_per_code * frame_rate / 1000``."""
        return float(self.n_codebooks * self.bits_per_code * self.frame_rate / 1000)

    @property
    def duration_s(self) -> float:
        """Duration of the original input in seconds (``original_length / original_rate``)."""
        return self.original_length / self.original_rate


@dataclass
class Packet:
    """One packet of codes.

    Attributes
    ----------
    index : packet sequence number (uint32), 0 for the first packet of a stream.
    codes : ``[channels, n_codebooks, frames]`` uint16, ``1 <= frames <= frames_per_packet``.
    gains_db : ``[channels, header.gain_blocks(frames)]`` float32 level gains in dB
        (multiples of :data:`GAIN_STEP_DB`), or None when the header has no gains.
    band_gains_db : ``[channels, header.gain_blocks(frames), header.level_bands]`` float32
        band gains in dB (multiples of :data:`~flowdec.dsp.band_level.BAND_STEP_DB`), or None
        when the header has no level bands.

    Example
    -------
    >>> Packet(0, np.zeros((1, 8, 15), dtype=np.uint16)).frames
    15
    """

    index: int
    codes: Codes
    gains_db: npt.NDArray[np.float32] | None = None
    band_gains_db: npt.NDArray[np.float32] | None = None

    @property
    def frames(self) -> int:
        """Frames in this packet (per channel)."""
        return int(self.codes.shape[-1])


def _codes_size(h: StreamHeader, frames: int) -> int:
    return (h.channels * h.n_codebooks * frames * h.bits_per_code + 7) // 8


def _band_size(h: StreamHeader, frames: int) -> int:
    return (h.channels * h.gain_blocks(frames) * h.level_bands * 4 + 7) // 8


def _payload_size(h: StreamHeader, frames: int) -> int:
    return _codes_size(h, frames) + h.channels * h.gain_blocks(frames) + _band_size(h, frames)


def packet_size(h: StreamHeader, frames: int) -> int:
    """Bytes of a packet holding ``frames`` frames: 16 bytes framing + bit-packed codes +
    one byte per gain block and channel + 4 bits per gain block, channel and level band.

    Example
    -------
    >>> h = StreamHeader("0123456789abcdef", 48000, 1, 48000, 0, 75, 1, 8, 10)
    >>> packet_size(h, 15)  # 0.2 s at 6 kbit/s, no gains
    166
    >>> packet_size(dataclasses.replace(h, frames_per_packet=15, frames_per_gain=3), 15)
    171
    >>> packet_size(dataclasses.replace(h, frames_per_packet=600, frames_per_gain=75,
    ...                                 level_bands=24), 600)  # 8 s as in files
    6120
    """
    return PACKET_OVERHEAD + _payload_size(h, frames)


def encode_header(h: StreamHeader) -> bytes:
    """Serialise a header (61 bytes, format version 4).

    Example
    -------
    >>> h = StreamHeader("0123456789abcdef", 48000, 1, 48000, 0, 75, 1, 8, 10)
    >>> data = encode_header(h)
    >>> len(data), data[:8]
    (61, b'FLOWDEC\\x00')
    """
    body = _HEAD.pack(MAGIC, FORMAT_VERSION, HEADER_SIZE) + _FIELDS.pack(
        bytes.fromhex(h.model_id),
        h.sample_rate,
        h.original_rate,
        h.original_length,
        h.frame_rate_num,
        h.frame_rate_den,
        h.total_frames,
        h.frames_per_packet,
        h.channels,
        h.n_codebooks,
        h.bits_per_code,
        0,  # flags: none defined
        h.frames_per_gain,
        h.level_bands,
    )
    return body + _CRC.pack(zlib.crc32(body))


def _header_truncated(have: int, need: int = HEADER_SIZE) -> TruncatedStreamError:
    return TruncatedStreamError(
        f"stream is truncated inside the header ({have} of {need} bytes); the file "
        "is incomplete: re-encode or re-download it"
    )


def decode_header(data: bytes | bytearray | memoryview) -> tuple[StreamHeader, int]:
    """Parse a header from the start of ``data``.

    Returns
    -------
    ``(header, bytes consumed)``; packets start at that byte.

    Raises
    ------
    BitstreamError : wrong magic ("not a flowdec .fdc file"), a format version written by a
        newer flowdec, a corrupt header ("header is corrupt": CRC mismatch or impossible
        field), or :class:`TruncatedStreamError` when ``data`` ends inside the header.

    Example
    -------
    >>> h = StreamHeader("0123456789abcdef", 48000, 1, 48000, 0, 75, 1, 8, 10)
    >>> decode_header(encode_header(h) + b"packets...") == (h, 61)
    True
    """
    buf = bytes(data[:_LONGEST_HEADER])
    if len(buf) < len(MAGIC):
        if MAGIC.startswith(buf):
            raise _header_truncated(len(buf))
        raise BitstreamError(f"not a flowdec .fdc file (starts with {buf!r}, expected {MAGIC!r})")
    if buf[: len(MAGIC)] != MAGIC:
        raise BitstreamError(
            f"not a flowdec .fdc file (starts with {buf[:8]!r}, expected {MAGIC!r})"
        )
    if len(buf) < _HEAD.size:
        raise _header_truncated(len(buf))
    _, version, header_len = _HEAD.unpack_from(buf)
    if version > FORMAT_VERSION:
        raise BitstreamError(
            f"this stream was written by a newer flowdec (format version {version}; this "
            f"flowdec reads versions 1 to {FORMAT_VERSION}); upgrade flowdec"
        )
    if version not in _HEADER_SIZES:
        raise BitstreamError(
            f"header is corrupt (format version {version} does not exist; this flowdec "
            f"reads versions 1 to {FORMAT_VERSION}); the file is damaged: re-encode it"
        )
    size = _HEADER_SIZES[version]
    if header_len != size:
        raise BitstreamError(
            f"header is corrupt (header length {header_len}, expected {size} for "
            f"format version {version}); the file is damaged: re-encode it"
        )
    if len(buf) < size:
        raise _header_truncated(len(buf), size)
    body = buf[: size - _CRC.size]
    (crc,) = _CRC.unpack_from(buf, size - _CRC.size)
    if zlib.crc32(body) != crc:
        raise BitstreamError(
            "header is corrupt (CRC-32 mismatch); the file is damaged: re-encode it"
        )
    fields = _FIELDS_BY_VERSION[version].unpack_from(buf, _HEAD.size)
    (mid, sr, orig_sr, orig_len, num, den, total, fpp, ch, nq, bits, flags) = fields[:12]
    fpg = fields[12] if version >= 2 else 0
    bands = fields[13] if version >= 3 else 0
    if flags != 0:
        raise BitstreamError(
            f"header is corrupt (flags {flags:#x} are not defined in format version "
            f"{version}); it may come from a newer flowdec: upgrade flowdec"
        )
    try:
        h = StreamHeader(mid.hex(), sr, ch, orig_sr, orig_len, num, den, nq, bits, fpp, total,
                         fpg, bands)
    except BitstreamError as e:
        raise BitstreamError(f"header is corrupt ({e}); the file is damaged") from None
    return h, size


def check_codes(h: StreamHeader, codes: object, what: str) -> Codes:
    """Codes ``[channels, n_codebooks, frames]`` that fit ``h`` as uint16, else
    :class:`BitstreamError` naming ``what``."""
    arr = np.asarray(codes)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise BitstreamError(f"{what}: expected an integer array, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[0] != h.channels or arr.shape[1] != h.n_codebooks:
        raise BitstreamError(
            f"{what}: expected shape [channels={h.channels}, n_codebooks={h.n_codebooks}, "
            f"frames], got {list(arr.shape)}; codes must match the header"
        )
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= 2**h.bits_per_code:
            bad = lo if lo < 0 else hi
            raise BitstreamError(
                f"{what}: code {bad} does not fit in {h.bits_per_code} bits (must be in "
                f"[0, {2**h.bits_per_code - 1}]); raise bits_per_code or fix the codes"
            )
    return np.ascontiguousarray(arr, dtype=np.uint16)


def gain_bytes(gains_db: npt.ArrayLike) -> bytes:
    """Level gains in dB → signed bytes in steps of :data:`GAIN_STEP_DB` (rounded, clamped
    to ±:data:`GAIN_LIMIT_DB`).

    Example
    -------
    >>> np.frombuffer(gain_bytes([[0.0, 1.1, -40.0]]), np.int8).tolist()
    [0, 4, -127]
    """
    q = np.clip(np.rint(np.asarray(gains_db, np.float64) / GAIN_STEP_DB), -127, 127)
    return q.astype(np.int8).tobytes()


def _check_db(gains: object, have: bool, want: tuple[int, ...], axes: str, absent: str,
              present: str, arg: str, what: str) -> np.ndarray | None:
    """Validate finite dB values of shape ``want`` when the header has them (``have``),
    None when it has not; ``absent``/``present`` say so in the messages."""
    if not have:
        if gains is not None:
            raise BitstreamError(f"{what}: the header has {absent}; pass None or set it")
        return None
    if gains is None:
        raise BitstreamError(f"{what}: the header has {present}; pass {arg} of shape "
                             f"{list(want)}")
    arr = np.asarray(gains)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise BitstreamError(f"{what}: expected a float array in dB, got dtype {arr.dtype}")
    if arr.shape != want:
        raise BitstreamError(f"{what}: expected shape {list(want)} ({axes}), got "
                             f"{list(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise BitstreamError(f"{what}: gains must be finite dB values")
    return arr


def check_gains(h: StreamHeader, gains: object, frames: int, what: str
                ) -> npt.NDArray[np.float32] | None:
    """Level gains ``[channels, gain_blocks(frames)]`` in dB as ``h`` stores them (quantized;
    None when ``h`` has none), else :class:`BitstreamError` naming ``what``."""
    arr = _check_db(gains, bool(h.frames_per_gain), (h.channels, h.gain_blocks(frames)),
                    "channels, gain blocks", "no gains (frames_per_gain 0)",
                    f"gains every {h.frames_per_gain} frames", "gains_db", what)
    return None if arr is None else quantize_gains(arr)


def check_band_gains(h: StreamHeader, gains: object, frames: int, what: str
                     ) -> npt.NDArray[np.float32] | None:
    """Band gains ``[channels, gain_blocks(frames), level_bands]`` in dB as ``h`` stores them
    (quantized; None when ``h`` has none), else :class:`BitstreamError` naming ``what``."""
    want = (h.channels, h.gain_blocks(frames), h.level_bands)
    arr = _check_db(gains, bool(h.level_bands), want, "channels, gain blocks, bands",
                    "no level bands", f"{h.level_bands} level bands", "band_gains_db", what)
    return None if arr is None else quantize_band_gains(arr)


def _band_nibbles(gains: npt.NDArray[np.float32]) -> bytes:
    steps = np.rint(gains / BAND_STEP_DB).astype(np.int64) - BAND_STEP_RANGE[0]
    return pack_codes(steps.astype(np.uint16), 4)


def encode_packet(h: StreamHeader, p: Packet) -> bytes:
    """Serialise one packet: 16 bytes framing + the codes bit-packed + the gain bytes.

    The payload packs ``p.codes[c, q, t]`` in C order (channel, then codebook, then frame
    fastest), ``bits_per_code`` bits each, LSB-first, the last byte zero-padded; then, when
    the header has gains, ``p.gains_db[c, b]`` as signed bytes in steps of
    :data:`GAIN_STEP_DB` (channel-major; rounded and clamped as in :func:`gain_bytes`);
    then, when it has level bands, ``p.band_gains_db[c, b, band]`` in C order as 4-bit
    values ``step + 8`` (step = gain / 3 dB, −8..7), packed like the codes.

    Raises
    ------
    BitstreamError : wrong shape, 0 or more than ``frames_per_packet`` frames, a code that
        does not fit in ``bits_per_code`` bits, missing, extra or non-finite gains, or an
        index outside uint32.

    Example
    -------
    >>> h = StreamHeader("0123456789abcdef", 48000, 1, 48000, 0, 75, 1, 8, 10, 15)
    >>> len(encode_packet(h, Packet(0, np.zeros((1, 8, 15), dtype=np.uint16))))
    166
    """
    index = _int_field("packet index", p.index, 0, _U32)
    codes = check_codes(h, p.codes, f"packet {index} codes")
    frames = codes.shape[2]
    if not 1 <= frames <= h.frames_per_packet:
        raise BitstreamError(
            f"packet {index}: has {frames} frames; a packet holds 1..{h.frames_per_packet} "
            "(frames_per_packet)"
        )
    gains = check_gains(h, p.gains_db, frames, f"packet {index} gains")
    bands = check_band_gains(h, p.band_gains_db, frames, f"packet {index} band gains")
    payload = pack_codes(codes, h.bits_per_code)
    if gains is not None:
        payload += gain_bytes(gains)
    if bands is not None:
        payload += _band_nibbles(bands)
    fields = _PACKET.pack(PACKET_SYNC, index, frames, len(payload), 0)[2:12]
    crc = zlib.crc32(payload, zlib.crc32(fields))
    return _PACKET.pack(PACKET_SYNC, index, frames, len(payload), crc) + payload


def _check_framing(h: StreamHeader, head: bytes, at: int, label: str) -> None:
    """Check the packet framing fields present in ``head`` (a prefix of the 16 bytes).

    Each field is checked as soon as it is available, so a prefix of a valid packet is
    reported as truncated by the caller and anything else as corrupt here.
    """
    if len(head) >= 2:
        (sync,) = struct.unpack_from("<H", head)
        if sync != PACKET_SYNC:
            raise BitstreamError(
                f"{label} at byte offset {at} is corrupt (bad sync word {sync:#06x}, expected "
                f"{PACKET_SYNC:#06x}); the stream is damaged"
            )
    if len(head) >= 8:
        (frames,) = struct.unpack_from("<H", head, 6)
        if not 1 <= frames <= h.frames_per_packet:
            raise BitstreamError(
                f"{label} at byte offset {at} is corrupt (claims {frames} frames, a packet "
                f"holds 1..{h.frames_per_packet}); the stream is damaged"
            )
        if len(head) >= 12:
            (length,) = struct.unpack_from("<I", head, 8)
            if length != _payload_size(h, frames):
                raise BitstreamError(
                    f"{label} at byte offset {at} is corrupt (payload length {length}, "
                    f"expected {_payload_size(h, frames)} for {frames} frames); the stream "
                    "is damaged"
                )


def _truncated(label: str, have: int, need: int, at: int) -> TruncatedStreamError:
    return TruncatedStreamError(
        f"{label} at byte offset {at} is incomplete ({have} of {need} bytes): the stream "
        "is truncated"
    )


def _decode_packet(
    h: StreamHeader, data: bytes | bytearray | memoryview, offset: int, at: int, label: str
) -> tuple[Packet, int]:
    """Decode the packet at ``data[offset:]``; ``at`` is its byte offset for messages."""
    avail = max(0, len(data) - offset)
    head = bytes(data[offset : offset + _PACKET.size])
    _check_framing(h, head, at, label)
    if len(head) < _PACKET.size:
        raise _truncated(label, avail, PACKET_OVERHEAD, at)
    _, index, frames, length, crc = _PACKET.unpack(head)
    need = _PACKET.size + length
    if avail < need:
        raise _truncated(label, avail, need, at)
    payload = bytes(data[offset + _PACKET.size : offset + need])
    if zlib.crc32(payload, zlib.crc32(head[2:12])) != crc:
        raise BitstreamError(
            f"{label} (index field {index}) at byte offset {at} is corrupt (CRC-32 "
            "mismatch); the stream is damaged: re-encode or re-download it"
        )
    count = h.channels * h.n_codebooks * frames
    n_codes = _codes_size(h, frames)
    try:
        flat = unpack_codes(payload[:n_codes], h.bits_per_code, count)
    except ValueError as e:  # cannot happen after the length check; never escape raw
        raise BitstreamError(f"{label} at byte offset {at} is corrupt ({e})") from None
    gains = bands = None
    blocks = h.gain_blocks(frames)
    if h.frames_per_gain:
        g = np.frombuffer(payload, np.int8, offset=n_codes, count=h.channels * blocks)
        gains = g.astype(np.float32).reshape(h.channels, blocks) * GAIN_STEP_DB
    if h.level_bands:
        count = h.channels * blocks * h.level_bands
        steps = unpack_codes(payload[n_codes + h.channels * blocks :], 4, count)
        bands = ((steps.astype(np.float32) + BAND_STEP_RANGE[0]) * BAND_STEP_DB
                 ).reshape(h.channels, blocks, h.level_bands)
    codes = flat.reshape(h.channels, h.n_codebooks, frames)
    return Packet(int(index), codes, gains, bands), need


def decode_packet(
    h: StreamHeader, data: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[Packet, int]:
    """Decode the packet starting at ``data[offset]``.

    Returns
    -------
    ``(packet, bytes consumed)``; the next packet starts at ``offset + consumed``.

    Raises
    ------
    TruncatedStreamError : ``data`` ends inside the packet (for a live stream: wait for
        more bytes). A subclass of :class:`BitstreamError`.
    BitstreamError : bad sync word, impossible frame count or length, or CRC mismatch; the
        message names the byte offset.

    Example
    -------
    >>> h = StreamHeader("0123456789abcdef", 48000, 1, 48000, 0, 75, 1, 8, 10, 15)
    >>> data = encode_packet(h, Packet(7, np.ones((1, 8, 3), dtype=np.uint16)))
    >>> p, n = decode_packet(h, data)
    >>> p.index, p.codes.shape, n == len(data)
    (7, (1, 8, 3), True)
    """
    offset = _int_field("offset", offset, 0, _U64)
    return _decode_packet(h, data, offset, offset, "packet")


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


class FdcWriter:
    """Write a ``.fdc`` file incrementally, in bounded memory.

    Codes passed to :meth:`write` (any number of frames per call) are buffered into
    packets of ``header.frames_per_packet`` frames; :meth:`close` writes the last (short)
    packet, stores the real ``total_frames`` in the header and renames the temporary file
    (``.NAME.XXXXXXXX.tmp`` in the same folder) to ``path``. An exception inside the
    ``with`` block, or :meth:`abort`, removes the temporary file and leaves ``path``
    untouched, so a half-written file never appears under the real name. The file is the
    same byte for byte however the codes are split across :meth:`write` calls.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> h = StreamHeader("0123456789abcdef", 48000, 1, 48000, 48000, 75, 1, 8, 10)
    >>> path = os.path.join(tempfile.mkdtemp(), "live.fdc")
    >>> with FdcWriter(path, h) as w:
    ...     for _ in range(5):
    ...         w.write(np.zeros((1, 8, 15), dtype=np.uint16))
    >>> read_fdc(path)[0].total_frames
    75
    """

    def __init__(self, path: PathLike, header: StreamHeader) -> None:
        if not isinstance(header, StreamHeader):
            raise BitstreamError(f"header: expected a StreamHeader, got {type(header).__name__}")
        self.path = Path(path)
        self.header = header
        self._tmp = _tmp_name(self.path)
        self._buf: list[Codes] = []
        self._gbuf: list[npt.NDArray[np.float32]] = []
        self._bbuf: list[npt.NDArray[np.float32]] = []
        self._buffered = 0
        self._index = 0
        self._frames = 0
        self._file: BinaryIO | None = open(self._tmp, "xb")  # noqa: SIM115 - see close()
        try:
            self._file.write(encode_header(dataclasses.replace(header, total_frames=0)))
        except BaseException:
            self.abort()
            raise

    @property
    def frames_written(self) -> int:
        """Frames per channel accepted so far (including those still buffered)."""
        return self._frames

    def _emit(self, codes: Codes, gains: npt.NDArray[np.float32] | None,
              bands: npt.NDArray[np.float32] | None) -> None:
        assert self._file is not None
        if self._index > _U32:
            raise BitstreamError("stream has more than 2**32 packets; split it into files")
        self._file.write(encode_packet(self.header, Packet(self._index, codes, gains, bands)))
        self._index += 1

    def _pending(self) -> tuple[Codes, npt.NDArray[np.float32] | None,
                                npt.NDArray[np.float32] | None]:
        codes = np.concatenate(self._buf, axis=2) if len(self._buf) > 1 else self._buf[0]
        gains = np.concatenate(self._gbuf, axis=1) if self._gbuf else None
        bands = np.concatenate(self._bbuf, axis=1) if self._bbuf else None
        return codes, gains, bands

    def write(self, codes: npt.ArrayLike, gains_db: npt.ArrayLike | None = None,
              band_gains_db: npt.ArrayLike | None = None) -> None:
        """Append codes ``[channels, n_codebooks, k]`` (any ``k >= 0`` frames) and, when the
        header has gains, their gains ``[channels, header.gain_blocks(k)]`` in dB (and with
        level bands their band gains ``[channels, header.gain_blocks(k), level_bands]``).

        With gains, every write but the last must hold whole gain blocks (``k`` a multiple
        of ``frames_per_gain``).

        Raises
        ------
        BitstreamError : wrong shape, a code that does not fit in ``bits_per_code`` bits,
            missing or misaligned gains, or the writer is closed.
        """
        if self._file is None:
            raise BitstreamError(f"FdcWriter for {self.path} is closed; open a new one")
        h = self.header
        arr = check_codes(h, codes, "codes")
        k = arr.shape[2]
        if k and h.frames_per_gain and self._frames % h.frames_per_gain:
            raise BitstreamError(
                f"codes: the previous write ended inside a gain block ({self._frames} frames, "
                f"blocks of {h.frames_per_gain}); only the last write may end mid-block"
            )
        gains = check_gains(h, gains_db, k, "gains_db")
        bands = check_band_gains(h, band_gains_db, k, "band_gains_db")
        if k == 0:
            return
        self._buf.append(arr)
        if gains is not None:
            self._gbuf.append(gains)
        if bands is not None:
            self._bbuf.append(bands)
        self._buffered += k
        self._frames += k
        fpp = h.frames_per_packet
        if self._buffered < fpp:
            return
        pending, pgains, pbands = self._pending()
        full = (pending.shape[2] // fpp) * fpp
        per = fpp // h.frames_per_gain if h.frames_per_gain else 0
        for i, start in enumerate(range(0, full, fpp)):
            g = None if pgains is None else pgains[:, i * per : (i + 1) * per]
            b = None if pbands is None else pbands[:, i * per : (i + 1) * per]
            self._emit(pending[:, :, start : start + fpp], g, b)
        rest = pending[:, :, full:]
        done = (full // fpp) * per
        self._buf = [rest.copy()] if rest.shape[2] else []
        self._gbuf = [pgains[:, done:].copy()] if pgains is not None and rest.shape[2] else []
        self._bbuf = [pbands[:, done:].copy()] if pbands is not None and rest.shape[2] else []
        self._buffered = rest.shape[2]

    def close(self) -> None:
        """Flush the last packet, store ``total_frames`` and rename the file to ``path``."""
        if self._file is None:
            return
        try:
            if self._buffered:
                self._emit(*self._pending())
                self._buf, self._gbuf, self._bbuf, self._buffered = [], [], [], 0
            final = dataclasses.replace(self.header, total_frames=self._frames)
            self._file.seek(0)
            self._file.write(encode_header(final))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)
            self.header = final
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discard everything: close and delete the temporary file; ``path`` is untouched."""
        f, self._file = self._file, None
        try:
            if f is not None:
                f.close()  # flushes what is buffered: may fail again (a full disk)
        except OSError:
            pass  # the file is discarded anyway; the error that led here is re-raised
        finally:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass

    def __enter__(self) -> FdcWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_fdc(path: PathLike, header: StreamHeader, codes: npt.ArrayLike,
              gains_db: npt.ArrayLike | None = None,
              band_gains_db: npt.ArrayLike | None = None) -> None:
    """Write codes ``[channels, n_codebooks, frames]`` (and, when the header has gains, their
    gains ``[channels, header.gain_blocks(frames)]`` in dB, and with level bands their band
    gains ``[channels, header.gain_blocks(frames), level_bands]``) to a ``.fdc`` file
    atomically.

    The file is written under a temporary name in the same folder and renamed when
    complete; ``header.total_frames`` is replaced by the real frame count.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> h = StreamHeader("0123456789abcdef", 48000, 1, 48000, 480000, 75, 1, 8, 10)
    >>> path = os.path.join(tempfile.mkdtemp(), "ten_seconds.fdc")
    >>> write_fdc(path, h, np.zeros((1, 8, 750), dtype=np.uint16))
    >>> os.path.getsize(path)  # 7500 B payload + 61 B header + 2 x 16 B packet framing
    7593
    """
    with FdcWriter(path, header) as w:
        w.write(codes, gains_db, band_gains_db)


def _read_header(f: BinaryIO) -> tuple[StreamHeader, int, int]:
    """Read exactly one header (of whatever version) from ``f``: (header, bytes, version)."""
    head = f.read(_HEAD.size)
    version = FORMAT_VERSION
    if len(head) == _HEAD.size and head[: len(MAGIC)] == MAGIC:
        _, version, _ = _HEAD.unpack(head)
        head += f.read(_HEADER_SIZES.get(version, HEADER_SIZE) - _HEAD.size)
    header, size = decode_header(head)
    return header, size, version


class FdcReader:
    """Read a ``.fdc`` file packet by packet, in bounded memory.

    ``source`` is a path, or a binary file object read from its current position (not
    closed by the reader). The header is read and checked on construction; iterating
    (once) yields :class:`Packet` objects in order. A truncated file stops at its last
    complete packet with a :class:`BitstreamWarning`; a corrupt packet raises
    :class:`BitstreamError` naming the packet and its byte offset. ``header`` and
    ``format_version`` (the file's, 1 to :data:`FORMAT_VERSION`) are set on construction.

    Raises
    ------
    BitstreamError : wrong magic, newer format version, corrupt or truncated header, or
        (with ``expected_model_id``) a file encoded by a different model.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> h = StreamHeader("0123456789abcdef", 48000, 2, 48000, 96000, 75, 1, 8, 10)
    >>> path = os.path.join(tempfile.mkdtemp(), "x.fdc")
    >>> write_fdc(path, h, np.zeros((2, 8, 150), dtype=np.uint16))
    >>> with FdcReader(path) as r:
    ...     [p.codes.shape for p in r]
    [(2, 8, 150)]
    """

    def __init__(self, source: PathLike | BinaryIO, expected_model_id: str | None = None) -> None:
        self._file: BinaryIO | None
        if isinstance(source, str | os.PathLike):
            self._owned, self.name = True, os.fspath(source)
            self._file = open(source, "rb")  # noqa: SIM115 - closed in close()
        else:
            self._owned, self.name = False, str(getattr(source, "name", "<stream>"))
            self._file = source
        self._started = False
        try:
            try:
                self.header, self._offset, self.format_version = _read_header(self._file)
            except BitstreamError as e:
                raise type(e)(f"{self.name}: {e}") from None
            if expected_model_id is not None:
                want = str(expected_model_id).lower()
                if want != self.header.model_id:
                    have = self.header.model_id
                    raise BitstreamError(
                        f"{self.name}: model mismatch: the file was encoded with model {have} "
                        f"but the loaded model is {want}; decode it with model {have} (load "
                        f"the model files whose id is {have})"
                    )
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[Packet]:
        if self._file is None or self._started:
            raise BitstreamError(f"{self.name}: FdcReader can be iterated once; open a new one")
        self._started = True
        h, f = self.header, self._file
        frames = 0
        k = 0
        short_seen = False
        while True:
            label, at = f"{self.name}: packet #{k}", self._offset
            head = f.read(PACKET_OVERHEAD)
            if not head:
                break
            if short_seen:
                raise BitstreamError(
                    f"{label} at byte offset {at} follows a short packet (only the last "
                    "packet may be short); the file is damaged"
                )
            # the framing is checked before the payload is read, so the read is bounded
            _check_framing(h, head, at, label)
            if len(head) < PACKET_OVERHEAD:
                self._warn_truncated(str(_truncated(label, len(head), PACKET_OVERHEAD, at)))
                return
            (length,) = struct.unpack_from("<I", head, 8)
            try:
                packet, used = _decode_packet(h, head + f.read(length), 0, at, label)
            except TruncatedStreamError as e:
                self._warn_truncated(str(e))
                return
            if packet.index != k:
                raise BitstreamError(
                    f"{label} at byte offset {at} has index {packet.index}: packets are "
                    "missing or out of order; the file is damaged"
                )
            frames += packet.frames
            if h.total_frames and frames > h.total_frames:
                raise BitstreamError(
                    f"{label} at byte offset {at} goes past the {h.total_frames} frames the "
                    "header announces; the file is damaged"
                )
            short_seen = packet.frames < h.frames_per_packet
            self._offset += used
            k += 1
            yield packet
        if frames < h.total_frames:
            self._warn_truncated(
                f"{self.name}: file ends after {frames} of the {h.total_frames} frames its "
                "header announces"
            )

    def _warn_truncated(self, why: str) -> None:
        warnings.warn(
            f"{why}; the file is truncated: decoding its complete packets only",
            BitstreamWarning,
            stacklevel=3,
        )

    def close(self) -> None:
        """Close the file (if the reader opened it)."""
        f, self._file = self._file, None
        if f is not None and self._owned:
            f.close()

    def __enter__(self) -> FdcReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_fdc(
    path: PathLike | BinaryIO, expected_model_id: str | None = None
) -> tuple[StreamHeader, Codes]:
    """Read a whole ``.fdc`` file's codes (see :func:`read_fdc_gains` for the gains too).

    Returns
    -------
    ``(header, codes)`` with codes ``[channels, n_codebooks, frames]`` uint16. A truncated
    file gives the frames of its complete packets, with a :class:`BitstreamWarning`.

    Raises
    ------
    BitstreamError : see :class:`FdcReader`.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> h = StreamHeader("0123456789abcdef", 48000, 1, 48000, 0, 75, 1, 4, 10)
    >>> path = os.path.join(tempfile.mkdtemp(), "empty.fdc")
    >>> write_fdc(path, h, np.zeros((1, 4, 0), dtype=np.uint16))
    >>> read_fdc(path)[1].shape
    (1, 4, 0)
    """
    h, codes, _, _ = read_fdc_gains(path, expected_model_id)
    return h, codes


def read_fdc_gains(
    path: PathLike | BinaryIO, expected_model_id: str | None = None
) -> tuple[StreamHeader, Codes, npt.NDArray[np.float32] | None,
           npt.NDArray[np.float32] | None]:
    """Read a whole ``.fdc`` file: ``(header, codes, gains_db, band_gains_db)``;
    ``gains_db`` is ``[channels, gain blocks]`` in dB, or None for a stream without gains;
    ``band_gains_db`` is ``[channels, gain blocks, level bands]``, or None without level
    bands.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> h = StreamHeader("0123456789abcdef", 48000, 1, 48000, 0, 75, 1, 4, 10,
    ...                  frames_per_gain=75)
    >>> path = os.path.join(tempfile.mkdtemp(), "two_seconds.fdc")
    >>> write_fdc(path, h, np.zeros((1, 4, 150), dtype=np.uint16), [[1.0, -2.5]])
    >>> read_fdc_gains(path)[2].tolist()
    [[1.0, -2.5]]
    """
    with FdcReader(path, expected_model_id) as r:
        packets = list(r)
        h = r.header
    codes = (np.concatenate([p.codes for p in packets], axis=2) if packets
             else np.zeros((h.channels, h.n_codebooks, 0), dtype=np.uint16))
    gains = bands = None
    if h.frames_per_gain:
        gains = np.concatenate([np.zeros((h.channels, 0), np.float32)]
                               + [p.gains_db for p in packets if p.gains_db is not None], axis=1)
    if h.level_bands:
        bands = np.concatenate([np.zeros((h.channels, 0, h.level_bands), np.float32)]
                               + [p.band_gains_db for p in packets
                                  if p.band_gains_db is not None], axis=1)
    return h, codes, gains, bands

"""flowdec.files: streaming encode/decode/round-trip/bounce of real files with a real model.

They run on the tiny random model (its postfilter output is loud noise), so they check
behaviour — lengths, rates, channels, equality of paths, errors — never quality; the two that
need the shipped model's decoder are marked ``quality``.

The chunked file path equals one-shot ``Codec`` exactly on the codec path; on the
postfilter path (same seed) only the postfilter's window seams differ, asserted at a relative
RMS error of 1e-3.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pedalboard.io import AudioFile

from flowdec.codec import Bitstream, Codec, example_clip
from flowdec.files import (
    FlowdecError,
    FlowdecWarning,
    bounce,
    decode_file,
    encode_file,
    enhance_file,
    roundtrip_file,
    stream_info,
)
from flowdec.format.bitstream import (
    FORMAT_VERSION,
    MAGIC,
    BitstreamError,
    BitstreamWarning,
    Packet,
    encode_packet,
    read_fdc,
    write_fdc,
)
from flowdec.postfilter import Postfilter

POSTFILTER_REL_RMS = 1e-3


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path) -> Path:
    """These tests need a model, not the shipped model's quality: the tiny random one."""
    return tiny_model_dir


@pytest.fixture(scope="module")
def codec(tiny_codec: Codec) -> Codec:
    return tiny_codec


def make_audio(rate: int, channels: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Sines (a different pitch per channel) plus a little noise, float32 [C, n]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(rate * seconds))) / rate
    f = 220.0 * (1 + np.arange(channels))[:, None]
    x = 0.3 * np.sin(2 * np.pi * f * t) + 0.03 * rng.standard_normal((channels, t.size))
    return x.astype(np.float32)


def write_audio(path: Path, audio: np.ndarray, rate: int) -> Path:
    """float32 wav (read back bit-exactly), other formats at their defaults."""
    depth = 32 if path.suffix == ".wav" else 16
    with AudioFile(str(path), "w", rate, audio.shape[0], bit_depth=depth) as f:
        f.write(audio)
    return path


def read_audio(path: Path) -> tuple[np.ndarray, float]:
    with AudioFile(str(path)) as f:
        return f.read(f.frames), f.samplerate


def rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


def folder_files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def test_file_path_equals_in_memory_codec(codec: Codec, tmp_path: Path) -> None:
    """encode → .fdc → decode == codec.decode(codec.encode(x)); stereo 44.1 kHz kept."""
    x = make_audio(44100, 2, 2.5)
    src = write_audio(tmp_path / "in.wav", x, 44100)
    r = encode_file(codec, src, tmp_path / "x.fdc", bitrate=6.0, progress=False)
    assert (r.seconds, r.channels, r.sample_rate, r.bitrate) == (2.5, 2, 44100, 6.0)
    stream = codec.encode(x, 44100, 6.0)
    header, codes = read_fdc(tmp_path / "x.fdc")
    assert header == stream.header
    np.testing.assert_array_equal(codes, stream.codes)

    d = decode_file(codec, tmp_path / "x.fdc", tmp_path / "out.wav", postfilter=False,
                    progress=False)
    y, rate = read_audio(tmp_path / "out.wav")
    assert rate == 44100 and y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all()
    np.testing.assert_array_equal(y, codec.decode(stream, postfilter=False))
    assert d.seed is None and d.output == tmp_path / "out.wav"
    assert folder_files(tmp_path) == ["in.wav", "out.wav", "x.fdc"]  # no temporary left


def test_band_gains_through_files_chunked_equal_one_shot(codec: Codec, tmp_path: Path) -> None:
    """``level_bands=24``: 12 s of stereo 44.1 kHz encoded in 1.3-s chunks gives the codes,
    level gains and band gains of a one-shot encode, the file decodes (in chunks) to what
    the one-shot decoder gives, a round trip equals encode then decode, and ``flowdec info``
    shows the band gains."""
    x = make_audio(44100, 2, 12.0, seed=5)
    src = write_audio(tmp_path / "in.wav", x, 44100)
    stream = codec.encode(x, 44100, 4.5, level_bands=24)
    encode_file(codec, src, tmp_path / "x.fdc", bitrate=4.5, chunk_seconds=1.3,
                level_bands=24, progress=False)
    back = Bitstream.load(tmp_path / "x.fdc")
    assert back.header == stream.header and back.header.level_bands == 24
    np.testing.assert_array_equal(back.codes, stream.codes)
    np.testing.assert_array_equal(back.gains_db, stream.gains_db)
    np.testing.assert_array_equal(back.band_gains_db, stream.band_gains_db)
    decode_file(codec, tmp_path / "x.fdc", tmp_path / "out.wav", postfilter=False,
                chunk_seconds=1.3, progress=False)
    y, _ = read_audio(tmp_path / "out.wav")
    ref = codec.decode(stream, postfilter=False)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, ref, atol=1e-4)
    roundtrip_file(codec, src, tmp_path / "rt.wav", bitrate=4.5, postfilter=False,
                   chunk_seconds=1.3, level_bands=24, progress=False)
    np.testing.assert_allclose(read_audio(tmp_path / "rt.wav")[0], ref, atol=1e-4)
    # without band gains the decode differs (they act)
    assert rel_rms(codec.decode(codec.encode(x, 44100, 4.5), postfilter=False), ref) > 1e-3
    lines = "\n".join(stream_info(tmp_path / "x.fdc", codec.folder).lines())
    assert "band gains:      24 ERB bands per 1 s per channel; min" in lines
    assert f"format:          version {FORMAT_VERSION}\n" in lines
    encode_file(codec, src, tmp_path / "plain.fdc", bitrate=4.5, progress=False)
    lines = "\n".join(stream_info(tmp_path / "plain.fdc", codec.folder).lines())
    assert "band gains:      none (encoded without them)" in lines
    with pytest.raises(FlowdecError, match="level_bands"):
        encode_file(codec, src, tmp_path / "bad.fdc", level_bands=300, progress=False)
    assert not (tmp_path / "bad.fdc").exists()


def test_version_1_file_decodes_without_gains(codec: Codec, tmp_path: Path) -> None:
    """A .fdc from before the level gains (format version 1) still decodes: the plain decoder
    output as it was, and ``flowdec info`` says it has no gains."""
    x = make_audio(48000, 1, 2.0, seed=4)
    stream = codec.encode(x, 48000, 6.0, frames_per_gain=0)
    h = stream.header
    fields = struct.pack("<8sIIQIIQHBBBB", bytes.fromhex(h.model_id), h.sample_rate,
                         h.original_rate, h.original_length, h.frame_rate_num, h.frame_rate_den,
                         stream.codes.shape[2], h.frames_per_packet, h.channels, h.n_codebooks,
                         h.bits_per_code, 0)
    head = struct.pack("<8sHH", MAGIC, 1, 62) + fields
    head += struct.pack("<I", zlib.crc32(head))
    packet = encode_packet(h, Packet(0, stream.codes))  # 151 frames: one packet, no gains
    (tmp_path / "v1.fdc").write_bytes(head + packet)
    decode_file(codec, tmp_path / "v1.fdc", tmp_path / "out.wav", postfilter=False,
                progress=False)
    y, _ = read_audio(tmp_path / "out.wav")
    np.testing.assert_array_equal(y, codec.decode(stream, postfilter=False))
    info = stream_info(tmp_path / "v1.fdc", codec.folder)
    assert info.complete and info.header.frames_per_gain == 0 and info.format_version == 1
    lines = "\n".join(info.lines())
    assert "format:          version 1\n" in lines
    assert "level gains:     none (format version 1 has none)" in lines
    assert "band gains:      none (format version 1 has none)" in lines


def test_postfilter_file_path_equals_in_memory(codec: Codec, tmp_path: Path) -> None:
    x = make_audio(48000, 1, 1.5, seed=1)
    src = write_audio(tmp_path / "in.wav", x, 48000)
    encode_file(codec, src, tmp_path / "x.fdc", bitrate=3.0, progress=False)
    r = decode_file(codec, tmp_path / "x.fdc", tmp_path / "out.wav", nfe=2, seed=11,
                    postfilter=True, progress=False)
    assert (r.seed, r.nfe, r.postfilter) == (11, 2, True)
    y, _ = read_audio(tmp_path / "out.wav")
    ref = codec.decode(codec.encode(x, 48000, 3.0), nfe=2, seed=11, postfilter=True)
    assert y.shape == ref.shape == x.shape
    assert rel_rms(y, ref) <= POSTFILTER_REL_RMS


def test_long_file_chunked_equals_one_shot_codec_path(codec: Codec, tmp_path: Path) -> None:
    """20 s of stereo 44.1 kHz in 3-s chunks: codes identical, audio within 1e-4."""
    x = make_audio(44100, 2, 20.0, seed=2)
    src = write_audio(tmp_path / "long.wav", x, 44100)
    stream = codec.encode(x, 44100, 6.0)
    encode_file(codec, src, tmp_path / "long.fdc", chunk_seconds=3.0, progress=False)
    header, codes = read_fdc(tmp_path / "long.fdc")
    assert header == stream.header
    np.testing.assert_array_equal(codes, stream.codes)

    roundtrip_file(codec, src, tmp_path / "rt.wav", bitrate=6.0, postfilter=False,
                   chunk_seconds=3.0, progress=False)
    y, rate = read_audio(tmp_path / "rt.wav")
    ref = codec.decode(stream, postfilter=False)
    assert rate == 44100 and y.shape == x.shape
    assert float(np.abs(y - ref).max()) <= 1e-4


def test_long_file_chunked_postfilter_within_tolerance(codec: Codec, tmp_path: Path) -> None:
    x = make_audio(48000, 1, 5.0, seed=3)
    src = write_audio(tmp_path / "in.wav", x, 48000)
    seen: list[float] = []
    roundtrip_file(codec, src, tmp_path / "rt.wav", bitrate=6.0, nfe=2, seed=5, postfilter=True,
                   chunk_seconds=1.5, progress=lambda done, total: seen.append(done))
    y, _ = read_audio(tmp_path / "rt.wav")
    ref = codec.roundtrip(x, 48000, 6.0, nfe=2, seed=5, postfilter=True)
    assert y.shape == x.shape and np.isfinite(y).all()
    assert rel_rms(y, ref) <= POSTFILTER_REL_RMS
    assert seen == sorted(seen) and seen[-1] == pytest.approx(5.0)


def test_enhance_file_in_windows_equals_in_memory(model_dir: Path, tmp_path: Path) -> None:
    """The postfilter alone on a file, in 1.5-s windows at 44.1 kHz, vs one-shot enhance."""
    pf = Postfilter(model_dir, threads=2)
    x = make_audio(44100, 2, 4.0, seed=4)
    src = write_audio(tmp_path / "plain.wav", x, 44100)
    seen: list[float] = []
    r = enhance_file(pf, src, tmp_path / "e.wav", nfe=2, seed=9, chunk_seconds=1.5,
                     progress=lambda done, total: seen.append(done))
    assert (r.verb, r.seed, r.nfe, r.bitrate) == ("enhanced", 9, 2, None)
    y, rate = read_audio(tmp_path / "e.wav")
    ref = pf.enhance(x, nfe=2, seed=9, sample_rate=44100)
    assert rate == 44100 and y.shape == x.shape and np.isfinite(y).all()
    assert rel_rms(y, ref) <= POSTFILTER_REL_RMS
    assert seen == sorted(seen) and seen[-1] == pytest.approx(4.0)
    with pytest.raises(FlowdecError, match="solver"):
        enhance_file(pf, src, tmp_path / "f.wav", solver="heun")
    assert not (tmp_path / "f.wav").exists()


def test_fdc_size_matches_bitrate(codec: Codec, tmp_path: Path) -> None:
    src = write_audio(tmp_path / "in.wav", make_audio(32000, 1, 10.0), 32000)
    # overhead (issue 5: at most 3 %): 61-byte header, 16 bytes per 8-s packet, one gain byte
    # per second and one for the extra frame (ceil(T/hop) + 1), whose codes it also adds
    for kbps, overhead in ((6.0, 0.03), (3.0, 0.03)):
        out = tmp_path / f"{kbps}.fdc"
        encode_file(codec, src, out, bitrate=kbps, progress=False)
        nominal = kbps * 1000 / 8 * 10.0
        size = os.path.getsize(out)
        assert nominal <= size <= nominal * (1 + overhead), (kbps, size, nominal)
        info = stream_info(out, codec.folder)
        assert info.complete and info.model_matches and info.header.nominal_kbps == kbps
        assert info.packets == 2 and info.seconds == 10.0
        assert info.gain_range_db is not None and "level gains:     one per 1 s" in "\n".join(
            info.lines())


def test_truncated_fdc_decodes_with_warning(codec: Codec, tmp_path: Path) -> None:
    src = write_audio(tmp_path / "in.wav", make_audio(48000, 1, 9.0), 48000)
    encode_file(codec, src, tmp_path / "x.fdc", progress=False)
    data = (tmp_path / "x.fdc").read_bytes()
    (tmp_path / "cut.fdc").write_bytes(data[:-100])  # inside packet 2 of 2
    with pytest.warns(BitstreamWarning, match="truncated"):
        decode_file(codec, tmp_path / "cut.fdc", tmp_path / "out.wav", postfilter=False,
                    progress=False)
    y, _ = read_audio(tmp_path / "out.wav")
    assert y.shape == (1, 8 * 48000)  # the first packet: 600 frames of 640 samples
    info = stream_info(tmp_path / "cut.fdc", codec.folder)
    assert not info.complete and info.packets == 1 and info.problem is None


@pytest.mark.parametrize("level_bands", [0, 24])
def test_file_cut_inside_its_first_packet_decodes_empty(codec: Codec, tmp_path: Path,
                                                        level_bands: int) -> None:
    """Any clip under 8 s is one packet: cut inside it, nothing is complete (band gains
    used to fail with 'band gains of every block must be added before finish()')."""
    src = write_audio(tmp_path / "in.wav", make_audio(48000, 1, 2.0), 48000)
    encode_file(codec, src, tmp_path / "x.fdc", progress=False, level_bands=level_bands)
    (tmp_path / "cut.fdc").write_bytes((tmp_path / "x.fdc").read_bytes()[:500])
    with pytest.warns(BitstreamWarning, match="truncated"):
        decode_file(codec, tmp_path / "cut.fdc", tmp_path / "out.wav", postfilter=False,
                    progress=False)
    with AudioFile(str(tmp_path / "out.wav")) as f:
        assert f.frames == 0 and f.num_channels == 1


def test_corrupt_fdc_is_refused_without_output(codec: Codec, tmp_path: Path) -> None:
    src = write_audio(tmp_path / "in.wav", make_audio(48000, 1, 5.0), 48000)
    encode_file(codec, src, tmp_path / "x.fdc", progress=False)
    data = bytearray((tmp_path / "x.fdc").read_bytes())
    data[-10] ^= 0xFF  # a byte in the last packet's payload
    (tmp_path / "bad.fdc").write_bytes(bytes(data))
    with pytest.raises(FlowdecError, match="corrupt"):
        decode_file(codec, tmp_path / "bad.fdc", tmp_path / "out.wav", postfilter=False,
                    progress=False)
    assert folder_files(tmp_path) == ["bad.fdc", "in.wav", "x.fdc"]


def crafted_fdc(codec: Codec, path: Path, channels: int = 1, seconds: float = 1.0,
                level_bands: int = 0, **fields: int) -> Path:
    """A .fdc of random codes for ``codec`` whose header fields are replaced by ``fields``
    (written as flowdec writes, so only what the fields say is wrong)."""
    h = codec.header(channels, 48000, int(seconds * 48000), 4, level_bands=level_bands)
    h = dataclasses.replace(h, **fields)  # type: ignore[arg-type]
    frames = int(seconds * 75) + 1
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 1024, (h.channels, h.n_codebooks, frames))
    blocks = h.gain_blocks(frames)
    bands = np.zeros((h.channels, blocks, h.level_bands)) if h.level_bands else None
    write_fdc(path, h, codes, np.zeros((h.channels, blocks)) if blocks else None, bands)
    return path


@pytest.mark.parametrize(("fields", "problem"), [
    ({"sample_rate": 44100}, "codec rate 44100 Hz, the model's is 48000 Hz"),
    ({"frame_rate_den": 641}, "74.883 frames/s, the model's is 75"),
    ({"bits_per_code": 11}, "11 bits per code, the model's is 10"),  # code 1024: codebook 2
    ({"n_codebooks": 11}, "11 codebooks, the model has 10"),
    ({"original_rate": 10**8}, "original rate 100000000 Hz: expected"),  # 6.8 GB
    ({"original_rate": 2**32 - 1}, "original rate 4294967295 Hz: expected"),  # bad_alloc
    ({"original_rate": 7999}, "original rate 7999 Hz: expected"),
    ({"frames_per_packet": 4575, "frames_per_gain": 75}, "packets of 4575 frames"),
    ({"frames_per_gain": 150}, "gain blocks of 150 frames"),
])
def test_headers_that_do_not_fit_the_model_are_refused(codec: Codec, tmp_path: Path,
                                                       fields: dict[str, int],
                                                       problem: str) -> None:
    path = crafted_fdc(codec, tmp_path / "x.fdc", **fields)
    with pytest.raises(FlowdecError, match="header is corrupt") as e:
        decode_file(codec, path, tmp_path / "out.wav", postfilter=False, progress=False)
    assert problem in str(e.value) and "x.fdc" in str(e.value) and "\n" not in str(e.value)
    assert folder_files(tmp_path) == ["x.fdc"]
    info = stream_info(path, codec.folder)  # `flowdec info` says what decode would refuse
    assert info.model_matches and info.problem and problem in info.problem
    assert "damaged" in info.lines()[0] and not info.complete


def test_codes_outside_the_codebooks_are_refused(codec: Codec) -> None:
    h = codec.header(1, 48000, 48000, 4, frames_per_gain=0)
    codes = np.zeros((1, 4, 76), np.int64)
    codes[0, 2, 40] = codec.codebook_size  # would index the next codebook's first entry
    with pytest.raises(BitstreamError, match="code 1024 is outside the model's codebooks"):
        list(codec.decode_chunks(iter([(codes, None, None)]), h, postfilter=False))


AS_LIMIT = 1400 << 20
"""Address space for test_crafted_files_decode_in_bounded_memory: measured VmPeak of that
decode ~1.0 GB (255 channels x 0.5 s with band gains), ~2.1 GB before it was bounded."""


@pytest.mark.slow
@pytest.mark.quality  # the limit is sized to the shipped decoder's activations
def test_crafted_files_decode_in_bounded_memory(shipped_codec: Codec, tmp_path: Path) -> None:
    """255 channels (the most a header can declare) decode under a fixed memory limit, in
    chunks cut to the channel count; an absurd original rate is refused before anything is
    allocated (it used to take 6.8 GB). The tiny model's activations would fit the limit
    unbounded."""
    codec, model_dir = shipped_codec, shipped_codec.folder
    crafted_fdc(codec, tmp_path / "many.fdc", channels=255, seconds=0.5, level_bands=24)
    crafted_fdc(codec, tmp_path / "fast.fdc", original_rate=10**8)
    script = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({AS_LIMIT}, {AS_LIMIT}))\n"
        "from flowdec.cli import main\n"
        f"m = ['--model', {str(model_dir)!r}, '--threads', '1', '-q', '--no-postfilter']\n"
        "print(main(['decode', 'many.fdc', 'many.wav', *m]),"
        " main(['decode', 'fast.fdc', 'fast.wav', *m]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.stdout.split() == ["0", "1"], r.stderr[-2000:]
    assert "fast.fdc: header is corrupt (original rate 100000000 Hz" in r.stderr
    with AudioFile(str(tmp_path / "many.wav")) as f:
        assert (f.num_channels, f.frames) == (255, 24000)


def test_interrupted_decode_leaves_no_partial_file(codec: Codec, tmp_path: Path) -> None:
    src = write_audio(tmp_path / "in.wav", make_audio(48000, 1, 6.0), 48000)
    encode_file(codec, src, tmp_path / "x.fdc", progress=False)
    (tmp_path / "out.wav").write_bytes(b"previous output")

    def interrupt(done: float, total: float) -> None:
        raise KeyboardInterrupt

    for fn in (decode_file, roundtrip_file):
        with pytest.raises(KeyboardInterrupt):
            fn(codec, tmp_path / ("x.fdc" if fn is decode_file else "in.wav"),
               tmp_path / "out.wav", postfilter=False, chunk_seconds=1.0, progress=interrupt)
        assert (tmp_path / "out.wav").read_bytes() == b"previous output"
        assert folder_files(tmp_path) == ["in.wav", "out.wav", "x.fdc"]
    with pytest.raises(KeyboardInterrupt):
        encode_file(codec, src, tmp_path / "x.fdc", chunk_seconds=1.0, progress=interrupt)
    assert folder_files(tmp_path) == ["in.wav", "out.wav", "x.fdc"]


class _FullDiskWriter:
    """A pedalboard writer on a full disk: every write fails as pedalboard's do (a
    RuntimeError, no errno)."""

    def __init__(self, f: Any) -> None:
        self.f, self.closed = f, False

    def write(self, audio: np.ndarray) -> None:
        raise RuntimeError("Unable to write data to audio file.")

    def close(self) -> None:
        self.closed = True
        self.f.close()


def full_disk_for(name: str) -> Callable[..., Any]:
    """pedalboard.io.AudioFile, with writers of files whose name (or hidden temporary name,
    ``.NAME.<random>.tmp``) starts with ``name`` on a full disk. Only the start is matched:
    the random part of another file's temporary name may contain ``name``."""

    def open_audio(path: str, mode: str = "r", *args: Any, **kw: Any) -> Any:
        f = AudioFile(path, mode, *args, **kw)  # type: ignore[call-overload]
        hit = Path(path).name.lstrip(".").startswith(name)
        return _FullDiskWriter(f) if mode == "w" and hit else f

    return open_audio


def test_full_disk_is_one_clear_error_and_bounce_goes_on(codec: Codec, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Writes that fail (a full disk: pedalboard raises RuntimeError, the .fdc writer
    ENOSPC) are one line naming the output, leave no temporary file, and bounce goes on
    with the next file (it used to stop on a raw RuntimeError)."""
    import pedalboard.io

    import flowdec.format.bitstream

    (tmp_path / "in").mkdir()
    src = write_audio(tmp_path / "in" / "a.wav", make_audio(48000, 1, 0.5), 48000)
    write_audio(tmp_path / "in" / "b.wav", make_audio(48000, 1, 0.5), 48000)
    encode_file(codec, src, tmp_path / "x.fdc", progress=False)
    monkeypatch.setattr(pedalboard.io, "AudioFile", full_disk_for("a."))
    full = shutil.disk_usage(tmp_path)._replace(free=0)
    monkeypatch.setattr("flowdec.audio.io.shutil.disk_usage", lambda path: full)
    for fn, arg in ((decode_file, tmp_path / "x.fdc"), (roundtrip_file, src)):
        with pytest.raises(FlowdecError) as e:
            fn(codec, arg, tmp_path / "out" / "a.flac", postfilter=False, progress=False)
        out = tmp_path / "out" / "a.flac"
        assert str(e.value) == f"{out}: cannot write: the disk is full (0.0 kB free)"
    r = bounce(codec, [tmp_path / "in"], tmp_path / "out", postfilter=False, progress=False)
    assert r.outputs == [tmp_path / "out" / "b.wav"]
    assert [(p.name, "the disk is full" in why) for p, why in r.failures] == [("a.wav", True)]

    def no_space(data: object) -> int:
        raise OSError(28, "No space left on device")

    def full_disk(path: Path, mode: str) -> io.BufferedWriter:
        raw = io.FileIO(path, mode.replace("b", ""))
        raw.write = no_space  # type: ignore[method-assign]
        return io.BufferedWriter(raw, buffer_size=64)

    monkeypatch.setattr(flowdec.format.bitstream, "open", full_disk, raising=False)
    with pytest.raises(FlowdecError, match=r"y\.fdc: cannot write: the disk is full"):
        encode_file(codec, src, tmp_path / "out" / "y.fdc", progress=False)
    assert folder_files(tmp_path / "out") == ["b.wav"]


def test_input_errors_are_one_line(codec: Codec, tmp_path: Path) -> None:
    (tmp_path / "text.wav").write_text("not audio\n")
    write_audio(tmp_path / "empty.wav", np.zeros((1, 0), np.float32), 48000)
    nan = make_audio(48000, 1, 0.5)
    nan[0, 1000] = np.nan
    write_audio(tmp_path / "nan.wav", nan, 48000)
    write_audio(tmp_path / "ok.wav", make_audio(48000, 1, 0.5), 48000)
    cases = [("missing.wav", "no such file"), ("text.wav", "cannot read audio"),
             ("empty.wav", "no audio samples"), ("nan.wav", "NaN")]
    for name, match in cases:
        with pytest.raises(FlowdecError, match=match) as e:
            encode_file(codec, tmp_path / name, tmp_path / "x.fdc", progress=False)
        assert "\n" not in str(e.value) and name in str(e.value)
    with pytest.raises(FlowdecError, match="not available"):
        encode_file(codec, tmp_path / "ok.wav", tmp_path / "x.fdc", bitrate=5.0)
    with pytest.raises(FlowdecError, match="even"):
        roundtrip_file(codec, tmp_path / "ok.wav", tmp_path / "y.wav", nfe=3, postfilter=True)
    with pytest.raises(FlowdecError, match="cannot write"):
        roundtrip_file(codec, tmp_path / "ok.wav", tmp_path / "y.xyz", postfilter=False)
    with pytest.raises(FlowdecError, match="not a flowdec"):
        decode_file(codec, tmp_path / "ok.wav", tmp_path / "y.wav", postfilter=False)
    assert not (tmp_path / "x.fdc").exists() and not (tmp_path / "y.wav").exists()


@pytest.mark.parametrize("ext", [".wav", ".aiff"])
def test_truncated_or_unfinished_pcm_files_are_detected(codec: Codec, tmp_path: Path,
                                                        ext: str) -> None:
    """A WAV/AIFF header can declare more samples than the file holds (cut short, or a
    recorder that never wrote the length: 0xFFFFFFFF); pedalboard reads silence up to the
    declared length, so the output used to be padded (for 0xFFFFFFFF: hours of encoding)."""
    with AudioFile(str(tmp_path / f"full{ext}"), "w", 48000, 2, bit_depth=16) as f:
        f.write(make_audio(48000, 2, 1.0))
    data = (tmp_path / f"full{ext}").read_bytes()
    head = len(data) - 48000 * 4  # 2 channels x 16 bits
    (tmp_path / f"cut{ext}").write_bytes(data[: head + 12000 * 4 + 3])
    (tmp_path / f"head{ext}").write_bytes(data[:head])
    if ext == ".wav":
        at = data.index(b"data") + 4
        endless = data[:at] + struct.pack("<I", 0xFFFFFFFF) + data[at + 4 :]
        (tmp_path / f"endless{ext}").write_bytes(endless)
    for name, frames in ((f"cut{ext}", 12000), (f"endless{ext}", 48000)):
        if not (tmp_path / name).exists():
            continue
        with pytest.warns(FlowdecWarning, match=f"file holds {frames} .* truncated"):
            r = roundtrip_file(codec, tmp_path / name, tmp_path / "out.wav", postfilter=False,
                               progress=False)
        assert read_audio(r.output)[0].shape == (2, frames)
    with pytest.raises(FlowdecError, match="no audio samples") as e:
        encode_file(codec, tmp_path / f"head{ext}", tmp_path / "x.fdc", progress=False)
    assert "\n" not in str(e.value)


def test_clipping_warns_and_silence_is_encoded(codec: Codec, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    loud = np.clip(make_audio(48000, 1, 0.5) * 8, -1, 1)
    write_audio(tmp_path / "loud.wav", loud, 48000)
    with pytest.warns(FlowdecWarning, match="clipped"):
        encode_file(codec, tmp_path / "loud.wav", tmp_path / "loud.fdc", progress=False)
    write_audio(tmp_path / "silence.wav", np.zeros((2, 24000), np.float32), 48000)
    with caplog.at_level("INFO", logger="flowdec"):
        r = roundtrip_file(codec, tmp_path / "silence.wav", tmp_path / "s.flac",
                           postfilter=False, progress=False)
    assert "digital silence" in caplog.text
    y, rate = read_audio(r.output)
    assert y.shape == (2, 24000) and rate == 48000 and np.isfinite(y).all()


def test_float_overs_are_not_clipping_and_enhance_says_no_codec(model_dir: Path,
                                                                codec: Codec,
                                                                tmp_path: Path) -> None:
    """flowdec's own float output peaks above full scale: enhance warned "looks clipped ...
    the codec will reproduce the distortion" (enhance runs no codec). Overs in a float file
    are not clipping; flat tops are, and the warning says the output keeps them."""
    import warnings

    t = np.arange(24000) / 48000
    overs = (1.4 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32)
    write_audio(tmp_path / "overs.wav", overs, 48000)
    pf = Postfilter(model_dir, threads=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlowdecWarning)
        encode_file(codec, tmp_path / "overs.wav", tmp_path / "o.fdc", progress=False)
        enhance_file(pf, tmp_path / "overs.wav", tmp_path / "e.wav", nfe=2, progress=False)
    flat = np.clip(overs, -1, 1)
    write_audio(tmp_path / "flat.flac", flat, 48000)  # 16-bit
    with pytest.warns(FlowdecWarning, match="clipped") as w:
        enhance_file(pf, tmp_path / "flat.flac", tmp_path / "f.wav", nfe=2, progress=False)
    message = str(w[0].message)
    assert "output will keep" in message and "codec" not in message


@pytest.mark.quality  # the shipped decoder's overs on an input peaking at -0.1 dBFS
def test_integer_outputs_are_limited_not_clipped(shipped_codec: Codec, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Decoded audio can peak above full scale (README, Limits). A float .wav keeps the
    overs; a .flac gets them held to the limiter's ceiling, with a warning, and is the .wav
    (to 24-bit rounding) away from them."""
    codec = shipped_codec
    from flowdec.audio.limiter import CEILING_DB

    x, rate = read_audio(example_clip())
    hot = write_audio(tmp_path / "hot.wav", (x[:, : 3 * rate] * (0.99 / np.abs(x).max())),
                      rate)
    wav = roundtrip_file(codec, hot, tmp_path / "rt.wav", postfilter=False, progress=False)
    with caplog.at_level("WARNING", logger="flowdec"):
        flac = roundtrip_file(codec, hot, tmp_path / "rt.flac", postfilter=False,
                              progress=False)
    assert "peak limiter" in caplog.text
    yw, _ = read_audio(wav.output)
    yf, _ = read_audio(flac.output)
    assert yw.shape == yf.shape and np.abs(yw).max() > 1.0
    assert np.abs(yf).max() <= 10 ** (CEILING_DB / 20) + 1e-6
    same = np.abs(yf - yw).max(axis=0) < 1e-6
    assert same.mean() > 0.5  # the limiter only acts near the overs


def test_process_file_writes_as_the_verbs_do(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """process_file (what Pipeline.process_file uses) has the verbs' writer: a 16-bit input
    processed into .flac gets its overs limited with a warning instead of hard-clipped;
    .wav is float and keeps them; the input is never replaced, an error leaves nothing."""
    from flowdec.audio.limiter import CEILING_DB
    from flowdec.files import process_file

    src = tmp_path / "in.wav"
    with AudioFile(str(src), "w", 44100, 2, bit_depth=16) as f:
        f.write(make_audio(44100, 2, 1.0))

    def louder(chunks: Iterator[np.ndarray], rate: int, channels: int) -> Iterator[np.ndarray]:
        assert (rate, channels) == (44100, 2)
        return (4 * x for x in chunks)  # peaks near +3 dBFS

    with caplog.at_level("WARNING", logger="flowdec"):
        r = process_file(src, tmp_path / "out.flac", louder, chunk_seconds=0.3)
    assert "peak limiter" in caplog.text and r.output == tmp_path / "out.flac"
    flac, _ = read_audio(tmp_path / "out.flac")
    assert flac.shape == (2, 44100) and np.abs(flac).max() <= 10 ** (CEILING_DB / 20) + 1e-6
    process_file(src, tmp_path / "out.wav", louder)
    wav, _ = read_audio(tmp_path / "out.wav")
    assert np.abs(wav).max() > 1.0  # float: kept
    with pytest.raises(FlowdecError, match="is the input file"):
        process_file(src, src, louder)

    def broken(chunks: Iterator[np.ndarray], rate: int, channels: int) -> Iterator[np.ndarray]:
        yield next(chunks)
        raise RuntimeError("plugin crashed")

    with pytest.raises(RuntimeError):
        process_file(src, tmp_path / "x.flac", broken, chunk_seconds=0.3)
    assert folder_files(tmp_path) == ["in.wav", "out.flac", "out.wav"]


def test_bounce_keeps_tree_and_reports_failures(codec: Codec, tmp_path: Path) -> None:
    album = tmp_path / "album"
    (album / "cd1").mkdir(parents=True)
    write_audio(album / "a.wav", make_audio(48000, 1, 0.6), 48000)
    write_audio(album / "cd1" / "b.flac", make_audio(22050, 2, 0.7), 22050)
    write_audio(album / "cd1" / "c.ogg", make_audio(44100, 1, 0.8), 44100)
    (album / "cd1" / "broken.wav").write_text("not audio")
    (album / "notes.txt").write_text("ignored")
    single = write_audio(tmp_path / "single.wav", make_audio(16000, 1, 0.5), 16000)
    out = tmp_path / "out"
    r = bounce(codec, [album, single], out, bitrate=4.5, postfilter=False, progress=False)
    assert folder_files(out) == ["a.wav", "cd1/b.wav", "cd1/c.wav", "single.wav"]
    assert r.outputs == [out / "a.wav", out / "cd1" / "b.wav", out / "cd1" / "c.wav",
                         out / "single.wav"]
    assert [p.name for p, _ in r.failures] == ["broken.wav"]
    assert "1 failed" in r.summary()
    y, rate = read_audio(out / "cd1" / "b.wav")
    assert rate == 22050 and y.shape == (2, round(0.7 * 22050))
    y, rate = read_audio(out / "cd1" / "c.wav")  # ogg length is what pedalboard reads back
    with AudioFile(str(album / "cd1" / "c.ogg")) as f:
        assert rate == 44100 and y.shape == (1, f.frames)


def test_messages_name_the_cause_and_the_output(codec: Codec, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A symlink loop said "no such file", an unreadable file "not a known format", and a
    write error named the hidden temporary file instead of the output."""
    import errno
    import re

    from flowdec.files import _Translate

    ok = write_audio(tmp_path / "ok.wav", make_audio(48000, 1, 0.3), 48000)
    (tmp_path / "a.wav").symlink_to(tmp_path / "b.wav")
    (tmp_path / "b.wav").symlink_to(tmp_path / "a.wav")
    with pytest.raises(FlowdecError, match=os.strerror(errno.ELOOP)):
        encode_file(codec, tmp_path / "a.wav", tmp_path / "x.fdc", progress=False)

    secret = write_audio(tmp_path / "secret.wav", make_audio(48000, 1, 0.3), 48000)
    secret.chmod(0)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root reads and writes anyway: refuse as the kernel refuses others
        real_open, real_access = os.open, os.access

        def deny_open(path: object, flags: int, *a: object, **k: object) -> int:
            if Path(str(path)) == secret:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_open(path, flags, *a, **k)  # type: ignore[arg-type]

        def deny_access(path: object, mode: int, *a: object, **k: object) -> bool:
            return Path(str(path)) != locked and real_access(
                path, mode, *a, **k)  # type: ignore[arg-type, call-overload]

        monkeypatch.setattr(os, "open", deny_open)
        monkeypatch.setattr(os, "access", deny_access)
    denied = os.strerror(errno.EACCES)
    with pytest.raises(FlowdecError, match=f"secret.wav: cannot read the file \\({denied}\\)"):
        encode_file(codec, secret, tmp_path / "x.fdc", progress=False)
    for out in (locked / "out.fdc", locked / "out.wav"):
        with pytest.raises(FlowdecError) as e:
            if out.suffix == ".fdc":
                encode_file(codec, ok, out, progress=False)
            else:
                roundtrip_file(codec, ok, out, postfilter=False, progress=False)
        assert str(e.value).startswith(f"{out}: ") and denied in str(e.value)
        assert ".tmp" not in str(e.value)
    monkeypatch.undo()
    locked.chmod(0o755)

    tmp = tmp_path / ".out.fdc.0123abcd.tmp"
    want = re.escape(f"{tmp_path / 'out.fdc'}: No space left")
    with pytest.raises(FlowdecError, match=f"^{want}"), _Translate():
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))


def test_bounce_says_why_a_folder_inside_the_output_is_skipped(codec: Codec,
                                                              tmp_path: Path) -> None:
    """bounce parent/sub -o parent said "no audio files": its files are skipped as being
    inside the output folder, and the message says so."""
    sub = tmp_path / "sub"
    sub.mkdir()
    write_audio(sub / "a.wav", make_audio(48000, 1, 0.3), 48000)
    r = bounce(codec, [sub], tmp_path, postfilter=False, progress=False)
    assert r.outputs == [] and len(r.failures) == 1
    assert "inside the output folder" in r.failures[0][1]
    assert "no audio files" not in r.failures[0][1]


def test_outputs_never_replace_their_input(codec: Codec, model_dir: Path,
                                           tmp_path: Path) -> None:
    """roundtrip x.wav x.wav, enhance x.wav x.wav (also through a link) and bounce x.wav
    -o its folder used to replace the original with the result."""
    src = write_audio(tmp_path / "x.wav", make_audio(48000, 1, 0.5), 48000)
    write_audio(tmp_path / "y.flac", make_audio(48000, 1, 0.5), 48000)
    original = src.read_bytes()
    os.link(src, tmp_path / "hard.wav")
    (tmp_path / "soft.wav").symlink_to("x.wav")
    pf = Postfilter(model_dir, threads=2)
    for out in ("x.wav", "hard.wav", "soft.wav"):
        with pytest.raises(FlowdecError, match="is the input file; the result would replace"):
            roundtrip_file(codec, src, tmp_path / out, postfilter=False, progress=False)
        with pytest.raises(FlowdecError, match="is the input file"):
            enhance_file(pf, src, tmp_path / out, nfe=2, progress=False)
    # y.flac -> y.wav is new; x.wav -> x.wav is itself; x.flac -> x.wav would be x.wav
    write_audio(tmp_path / "x.flac", make_audio(48000, 1, 0.5), 48000)
    r = bounce(codec, [src, tmp_path / "x.flac", tmp_path / "y.flac"], tmp_path,
               postfilter=False, progress=False)
    assert r.outputs == [tmp_path / "y.wav"]
    assert sorted(p.name for p, _ in r.failures) == ["x.flac", "x.wav"]
    assert all("is an input file" in why for _, why in r.failures)
    assert src.read_bytes() == original
    assert folder_files(tmp_path) == ["hard.wav", "soft.wav", "x.flac", "x.wav", "y.flac",
                                      "y.wav"]


@pytest.mark.parametrize(("rate", "shape"), [(48000, (2, 2)), (8000, (3, 5001)), (96000, (1, 1))])
def test_tiny_odd_and_multichannel_inputs(codec: Codec, tmp_path: Path, rate: int,
                                          shape: tuple[int, int]) -> None:
    x = make_audio(rate, shape[0], shape[1] / rate)
    with AudioFile(str(tmp_path / "in.wav"), "w", rate, shape[0], bit_depth=32) as f:
        f.write(x[:, :1])  # pedalboard needs a non-square first block
        f.write(x[:, 1:])
    r = roundtrip_file(codec, tmp_path / "in.wav", tmp_path / "out.wav", nfe=2, seed=0,
                       progress=False)
    y, out_rate = read_audio(r.output)
    assert out_rate == rate and y.shape == shape and np.isfinite(y).all()


def test_short_last_postfilter_chunk(codec: Codec, tmp_path: Path) -> None:
    """1.48 s in 0.5-s chunks leaves a 1-frame last postfilter chunk (used to crash)."""
    x = make_audio(48000, 1, 71040 / 48000)
    src = write_audio(tmp_path / "in.wav", x, 48000)
    roundtrip_file(codec, src, tmp_path / "out.wav", nfe=2, seed=4, postfilter=True,
                   chunk_seconds=0.5, progress=False)
    y, _ = read_audio(tmp_path / "out.wav")
    assert y.shape == x.shape
    assert rel_rms(y, codec.roundtrip(x, 48000, 6.0, nfe=2, seed=4,
                                                   postfilter=True)) <= POSTFILTER_REL_RMS

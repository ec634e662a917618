"""Audio files in and out: checked reading in chunks, atomic writing with the peak limiter.

Inputs are anything pedalboard.io reads (wav, flac, ogg, mp3, aiff) at a rate flowdec
accepts; a reader refuses what it cannot read with one line and warns about truncated or
clipped input. A writer writes under a hidden temporary name in the destination folder and
renames it when complete, so an error, Ctrl-C or a full disk never leaves a partial file
under the real name. ``.wav`` is 32-bit float and keeps peaks above full scale; ``.flac``
and ``.aiff`` (24-bit) and the lossy formats go through :mod:`flowdec.audio.limiter`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import FlowdecError, FlowdecWarning, one_line
from ..format.bitstream import MAGIC
from . import check_rate
from .limiter import CEILING_DB, PeakLimiter

log = logging.getLogger("flowdec")

PathLike = str | os.PathLike[str]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".bwf")
"""Extensions :func:`bounce` picks up inside folders (what pedalboard.io reads)."""
WRITE_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff")
_BIT_DEPTH = {".wav": 32, ".flac": 24, ".aiff": 24}  # 32-bit wav is float
DISK_FULL_BYTES = 1 << 20
"""A write that fails with less free space than this (1 MiB) is reported as a full disk."""
CLIP_LEVEL = 0.999
"""Three consecutive equal samples at or above this magnitude (a flat top) count as clipping;
overs above full scale in a float file do not (a float file keeps them)."""


def size_text(n: int) -> str:
    """A byte count as kB or MB for messages."""
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


# -- input -----------------------------------------------------------------------------------
def input_path(path: PathLike) -> Path:
    """``path`` when it is a file this process can read, else a :class:`FlowdecError` that
    says why (no such file, a symlink loop, permission denied, a folder)."""
    p = Path(path)
    try:
        p.stat()
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise FlowdecError(f"{p}: no such file") from None
        raise FlowdecError(f"{p}: {e.strerror or one_line(e)}") from None
    if p.is_dir():
        raise FlowdecError(f"{p}: is a folder, not a file")
    try:  # pedalboard reports a file it may not read as "not a known or supported format"
        os.close(os.open(p, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as e:
        raise FlowdecError(f"{p}: cannot read the file ({e.strerror or one_line(e)})") from None
    return p


_PCM_WAV = (1, 3, 0xFFFE)  # WAVE_FORMAT_PCM, _IEEE_FLOAT, _EXTENSIBLE: a frame is block_align
_PCM_AIFC = (b"NONE", b"sowt", b"twos", b"raw ", b"in24", b"42ni", b"in32", b"23ni", b"fl32",
             b"FL32", b"fl64", b"FL64")


def _frames_held(path: Path) -> int | None:
    """Sample frames an uncompressed WAV (RIFF, RF64) or AIFF file holds: the whole frames
    between the start of its sample data and the end of the file; None for other files.

    The length in the header can say more (a truncated file, a recorder that never wrote
    it: 0xFFFFFFFF), and pedalboard.io reads silence up to what the header says.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            size = os.fstat(f.fileno()).st_size
            if head[:4] in (b"RIFF", b"RF64") and head[8:] == b"WAVE":
                order: Any = "little"
            elif head[:4] == b"FORM" and head[8:] in (b"AIFF", b"AIFC"):
                order = "big"
            else:
                return None
            pos, frame_bytes = 12, 0
            while pos + 8 <= size:
                f.seek(pos)
                chunk = f.read(8)
                kind, n = chunk[:4], int.from_bytes(chunk[4:], order)
                if kind == b"fmt ":
                    fmt = f.read(16)
                    if int.from_bytes(fmt[:2], "little") not in _PCM_WAV:
                        return None
                    frame_bytes = int.from_bytes(fmt[12:14], "little")
                elif kind == b"COMM":
                    comm = f.read(22)
                    if head[8:] == b"AIFC" and comm[18:22] not in _PCM_AIFC:
                        return None
                    bits = int.from_bytes(comm[6:8], "big")
                    frame_bytes = int.from_bytes(comm[:2], "big") * (-(-bits // 8))
                elif kind in (b"data", b"SSND"):
                    start = pos + 8
                    if kind == b"SSND":
                        start += 8 + int.from_bytes(f.read(4), "big")  # offset, block size
                    return max(0, size - start) // frame_bytes if frame_bytes else None
                pos += 8 + n + (n & 1)
    except OSError:
        pass
    return None


class AudioReader:
    """A pedalboard.io reader yielding checked float32 chunks ``[channels, n]`` of
    ``chunk_seconds``, shorter when ``channel_seconds`` (a memory budget) says so."""

    def __init__(self, path: PathLike, chunk_seconds: float,
                 channel_seconds: float | None = None) -> None:
        from pedalboard.io import AudioFile

        self.path = input_path(path)
        try:
            self.file: Any = AudioFile(str(self.path))
        except Exception as e:  # pedalboard raises ValueError/RuntimeError with long text
            raise FlowdecError(f"{self.path}: cannot read audio ({one_line(e)})"
                               + _fdc_hint(self.path)) from None
        try:
            self.rate = check_rate(self.file.samplerate)
        except ValueError as e:
            self.file.close()
            raise FlowdecError(f"{self.path}: {e}") from None
        self.channels = int(self.file.num_channels)
        self._estimate = int(self.file.frames)
        self.read = 0
        self.done = False
        self.peak = 0.0
        self.clipped = 0
        if channel_seconds is not None:
            chunk_seconds = min(chunk_seconds, channel_seconds / self.channels)
        self.chunk = max(1, int(chunk_seconds * self.rate))
        # pedalboard trusts a WAV/AIFF header's length and reads silence past the data
        self.limit = _frames_held(self.path)
        if self.limit is not None and self.limit < self._estimate:
            declared, self._estimate = self._estimate, self.limit
            if self.limit:
                warnings.warn(
                    f"{self.path}: the header declares {declared} samples per channel but the "
                    f"file holds {self.limit} ({self.limit / self.rate:.2f} s): it is truncated "
                    "or was never finished; using the samples it holds", FlowdecWarning,
                    stacklevel=3)
        if self._estimate == 0:
            self.file.close()
            raise FlowdecError(f"{self.path}: the file has no audio samples")

    @property
    def frames(self) -> int:
        """Samples per channel: exact once read to the end, else a lower-bounded estimate."""
        return self.read if self.done else max(self._estimate, self.read)

    @property
    def seconds(self) -> float:
        return self.frames / self.rate

    def chunks(self) -> Iterator[np.ndarray]:
        while self.limit is None or self.read < self.limit:
            n = self.chunk if self.limit is None else min(self.chunk, self.limit - self.read)
            try:
                x = np.asarray(self.file.read(n), dtype=np.float32)
            except Exception as e:
                raise FlowdecError(f"{self.path}: cannot read audio at {self.read / self.rate:.1f}"
                                   f" s ({one_line(e)})") from None
            if x.shape[-1] == 0:
                break
            self._check(x)
            self.read += x.shape[-1]
            yield x
        self.done = True
        if self.read == 0:
            raise FlowdecError(f"{self.path}: the file has no audio samples")
        if self.peak == 0.0:
            log.info("%s is digital silence; encoding it anyway", self.path)
        if self.clipped:
            warnings.warn(f"{self.path}: the input looks clipped ({self.clipped} samples in flat "
                          "tops at full scale); the output will keep that distortion",
                          FlowdecWarning, stacklevel=2)

    def _check(self, x: np.ndarray) -> None:
        a = np.abs(x)
        peak = float(a.max())
        if not np.isfinite(peak):
            bad = int(np.argmax(~np.isfinite(x).all(axis=0)))
            raise FlowdecError(f"{self.path}: NaN or infinite sample at "
                               f"{(self.read + bad) / self.rate:.3f} s; the file is damaged")
        self.peak = max(self.peak, peak)
        if peak >= CLIP_LEVEL:
            mid = x[:, 1:-1]
            flat = (a[:, 1:-1] >= CLIP_LEVEL) & (x[:, :-2] == mid) & (mid == x[:, 2:])
            self.clipped += int(flat.sum())

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fdc_hint(path: Path) -> str:
    """A hint to use ``flowdec decode`` when ``path`` is a ``.fdc`` bitstream, else ""."""
    try:
        with open(path, "rb") as f:
            fdc = f.read(len(MAGIC)) == MAGIC
    except OSError:
        fdc = False
    return f"; it is a .fdc bitstream: decode it with `flowdec decode {path} OUT.wav`" if fdc \
        else ""


_TMP_NAME = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp(\.[^.]*)?")


def visible_name(filename: str | os.PathLike[str]) -> str:
    """The output a hidden temporary file (``.NAME.<8 hex>.tmp[.ext]``, renamed to NAME when
    complete) stands for, so that messages name the file the user asked for; any other
    name as it is."""
    p = Path(filename)
    m = _TMP_NAME.fullmatch(p.name)
    return str(p.with_name(m.group("name"))) if m else str(filename)


# -- output ----------------------------------------------------------------------------------
def prepare_output(path: PathLike, allowed: Sequence[str],
                    source: PathLike | None = None) -> Path:
    """``path`` checked as an output (of ``source``, which it must not be: the result would
    replace the original), its folder created."""
    p = Path(path)
    try:
        same = source is not None and os.path.samefile(p, source)
    except OSError:  # one of them does not exist (yet)
        same = False
    if same:
        raise FlowdecError(f"{p}: is the input file; the result would replace the original: "
                           "write it to another file")
    if p.is_dir():
        raise FlowdecError(f"{p}: is a folder; give a file name (e.g. {p / 'out.wav'})")
    if p.suffix.lower() not in allowed:
        raise FlowdecError(f"{p}: cannot write '{p.suffix or p.name}' files; use one of "
                           + ", ".join(allowed))
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FlowdecError(f"{p.parent}: cannot create the folder ({e.strerror})") from None
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise FlowdecError(f"{p}: cannot write into {p.parent} "
                           f"({os.strerror(errno.EACCES)})")
    return p


class AudioWriter:
    """Writes ``path`` via a temporary file in the same folder, renamed on success only."""

    def __init__(self, path: Path, sample_rate: int, channels: int) -> None:
        from pedalboard.io import AudioFile

        self.path, self.sample_rate = path, sample_rate
        self.tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        self.samples = 0  # given to write()
        self.written = 0  # in the file
        self.peak = 0.0
        # float WAV keeps overs; integer formats get a look-ahead limiter instead of clipping
        self.limiter = (PeakLimiter(channels, sample_rate) if path.suffix.lower() != ".wav"
                        else None)
        kw: dict[str, Any] = {}
        if path.suffix.lower() in _BIT_DEPTH:
            kw["bit_depth"] = _BIT_DEPTH[path.suffix.lower()]
        try:
            self.file: Any = AudioFile(str(self.tmp), "w", sample_rate, channels, **kw)
        except Exception as e:
            self._unlink()
            why = one_line(e).replace(str(self.tmp), str(path))
            raise FlowdecError(f"{path}: cannot write {path.suffix} at {sample_rate} Hz, "
                               f"{channels} ch ({why})") from None

    def write(self, audio: np.ndarray) -> None:
        """Write ``audio`` (through the limiter, which may hold back its last 5 ms until
        the file closes); ``samples`` counts what was given."""
        if audio.shape[1]:
            self.samples += audio.shape[1]
            self.peak = max(self.peak, float(np.abs(audio).max()))
            self._put(self.limiter.push(audio) if self.limiter is not None else audio)

    def _put(self, audio: np.ndarray) -> None:
        if audio.shape[1]:
            a = np.ascontiguousarray(audio, dtype=np.float32)
            if self.written == 0 and a.shape[0] == a.shape[1] > 1:
                # pedalboard cannot tell [C, n] from [n, C] when C == n in the first write
                self.file.write(np.ascontiguousarray(a[:, :1]))
                a = np.ascontiguousarray(a[:, 1:])
            try:
                self.file.write(a)
            except Exception as e:  # pedalboard: "Unable to write data to audio file."
                raise write_error(self.path, e, self.tmp) from None
            self.written += audio.shape[1]

    def _unlink(self) -> None:
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass

    def _discard(self) -> None:
        """Close (a failure to, e.g. on a full disk, changes nothing) and delete the
        temporary file."""
        try:
            if not self.file.closed:
                self.file.close()
        except Exception:
            pass
        finally:
            self._unlink()

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            if self.limiter is not None:
                self._put(self.limiter.finish())
            try:
                self.file.close()
                os.replace(self.tmp, self.path)
            except Exception as e:
                raise write_error(self.path, e, self.tmp) from None
        except BaseException:
            self._discard()
            raise
        if self.limiter is not None and self.limiter.limited:
            log.warning("%s: the decoded audio peaks at %+.1f dBFS; a peak limiter held it "
                        "to %.1f dBFS (%.2f s of it) instead of clipping at full scale; "
                        "write a .wav (32-bit float) to keep it unchanged", self.path,
                        20 * np.log10(self.peak), CEILING_DB,
                        self.limiter.limited / self.sample_rate)


def write_error(path: Path, e: Exception, tmp: Path | None = None) -> FlowdecError:
    """A failed write as one line naming the output (not its temporary file) and saying so
    when the disk is full."""
    try:
        free: int | None = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or (
            free is not None and free < DISK_FULL_BYTES):
        left = "" if free is None else f" ({size_text(free)} free)"
        return FlowdecError(f"{path}: cannot write: the disk is full{left}")
    why = e.strerror if isinstance(e, OSError) and e.strerror else one_line(e)
    if tmp is not None:
        why = why.replace(str(tmp), str(path))
    return FlowdecError(f"{path}: cannot write ({why})")

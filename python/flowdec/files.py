"""Audio files in and out of the codec: encode, decode, round-trip, bounce and enhance
(the postfilter alone), streaming.

Every function here reads and writes in chunks of ``chunk_seconds`` (10 s by default; the
postfilter works in windows of at most :data:`POSTFILTER_CHANNEL_SECONDS`), so memory is
bounded whatever the file length: a 1-hour stereo file needs what a 10-s one does
(``benchmarks/bench_memory.py``). The path is always the same:

    file ─ pedalboard.io.AudioFile ─ StreamResampler (→ 48 kHz) ─ EncoderStage ─ codes
    codes ─ DecoderStage ─ PostfilterStage ─ StreamResampler (→ original rate) ─ file

and the chunked result equals :meth:`flowdec.Codec.roundtrip` on the whole clip: exactly on
the codec path (``postfilter=False``) and within the postfilter stage's seam tolerance with
the postfilter (same ``seed``; ``tests/test_files.py`` holds the tolerance).

Inputs are anything pedalboard.io reads (wav, flac, ogg, mp3, aiff), at any rate from 8 kHz
to 768 kHz, any channel count; outputs keep the input's rate, channels and length. Outputs
are written under a temporary name in the destination folder and renamed when complete, so
an error or Ctrl-C never leaves a partial file under the real name (an existing file is left
untouched). The output format follows the extension: ``.wav`` is 32-bit float, ``.flac`` and
``.aiff`` 24-bit, ``.ogg``/``.mp3`` lossy. Decoded audio can peak above full scale; ``.wav``
keeps such peaks, the other formats get them held below it by :mod:`flowdec.peak_limit`
(with a warning) instead of clipped.

Problems the caller can fix are :class:`FlowdecError` with a one-line message; a clipping
input gives a :class:`FlowdecWarning`, digital silence a log note (it is encoded anyway).

Example:
    >>> from flowdec.codec import Codec, example_clip
    >>> from flowdec.files import encode_file, decode_file
    >>> codec = Codec.load()
    >>> r = encode_file(codec, example_clip(), "clip.fdc", bitrate=6.0)  # kbit/s per channel
    >>> r.sample_rate, r.channels                                       # the clip's
    (44100, 2)
    >>> r = decode_file(codec, "clip.fdc", "clip.wav", nfe=6, seed=1)   # at the input's rate
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import secrets
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from .audio import CODEC_RATE, StreamResampler, check_rate
from .bitstream import (
    FILE_FRAMES_PER_GAIN,
    FORMAT_VERSION,
    MAGIC,
    BitstreamError,
    FdcReader,
    FdcWriter,
    StreamHeader,
)
from .codec import Codec, CodeChunk
from .model import check_stream
from .model_files import CodecCard, ModelError, load_cards, resolve
from .peak_limit import CEILING_DB, PeakLimiter
from .postfilter import DEFAULT_NFE, DEFAULT_SEED, Postfilter
from .sessions import DeviceError
from .solver import SOLVERS

__all__ = [
    "AUDIO_EXTENSIONS",
    "BounceResult",
    "FileResult",
    "FlowdecError",
    "FlowdecWarning",
    "Progress",
    "StreamInfo",
    "ChunkProcessor",
    "bounce",
    "decode_file",
    "encode_file",
    "enhance_file",
    "process_file",
    "roundtrip_file",
    "stream_info",
]

log = logging.getLogger("flowdec")

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".bwf")
"""Extensions :func:`bounce` picks up inside folders (what pedalboard.io reads)."""
WRITE_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff")
_BIT_DEPTH = {".wav": 32, ".flac": 24, ".aiff": 24}  # 32-bit wav is float
PROGRESS_MIN_SECONDS = 5.0
"""Audio shorter than this gets no progress bar."""
CHANNEL_SECONDS = 20.0
"""The encoder and decoder work on chunks of at most this many channel-seconds (10 s of
stereo): more channels get shorter chunks, so memory does not grow with the channel count."""
POSTFILTER_CHANNEL_SECONDS = 5.0
"""The postfilter runs on windows of at most this many channel-seconds (2.5 s for stereo):
its ONNX activations, not the file length, set the peak memory."""
DISK_FULL_BYTES = 1 << 20
"""A write that fails with less free space than this (1 MiB) is reported as a full disk."""
CLIP_LEVEL = 0.999
"""Three consecutive equal samples at or above this magnitude (a flat top) count as clipping;
overs above full scale in a float file do not (a float file keeps them)."""

Progress = bool | Callable[[float, float], None] | None
"""``None``: a tqdm bar when stderr is a terminal and the audio is longer than 5 s;
``False``: none; ``True``: always a bar; a callable: called as ``f(done_s, total_s)``
(seconds of audio) after each chunk instead of a bar (it may raise to stop the run)."""

PathLike = str | os.PathLike[str]


class FlowdecError(Exception):
    """A problem the user can fix (missing or unreadable file, bad option, damaged stream).

    ``str(error)`` is one line naming the file and the problem.
    """


class FlowdecWarning(UserWarning):
    """Something is probably wrong with the input (e.g. it is clipped) but it was processed."""


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileResult:
    """What one file operation did. ``seconds`` is audio time, ``wall_seconds`` real time."""

    verb: str
    input: Path
    output: Path
    seconds: float
    wall_seconds: float
    sample_rate: int
    channels: int
    bitrate: float | None  # kbit/s per channel (nominal: codebooks × bits × frame rate)
    output_bytes: int
    postfilter: bool = False
    nfe: int = 0
    seed: int | None = None

    @property
    def speed(self) -> float:
        """Audio seconds processed per wall-clock second ("x real time")."""
        return self.seconds / max(self.wall_seconds, 1e-9)

    def summary(self) -> str:
        """One line: verb, paths, bitrate, duration, speed.

        Example: ``encoded a.wav -> a.fdc: 12.0 s, 2 ch, 44100 Hz, 6 kbit/s per channel,
        18.3 kB, 41.2x real time``
        """
        parts = [f"{self.seconds:.1f} s", f"{self.channels} ch", f"{self.sample_rate} Hz"]
        if self.bitrate is not None:
            parts.append(f"{self.bitrate:g} kbit/s per channel")
        if self.verb in ("decoded", "round-tripped", "enhanced"):
            parts.append(f"postfilter nfe {self.nfe} seed {self.seed}" if self.postfilter
                         else "no postfilter")
        parts += [_size(self.output_bytes), f"{self.speed:.1f}x real time"]
        return f"{self.verb} {self.input} -> {self.output}: " + ", ".join(parts)


@dataclass
class BounceResult:
    """Outputs of :func:`bounce` and the inputs that failed (path, one-line reason)."""

    outputs: list[Path] = field(default_factory=list)
    results: list[FileResult] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)

    def summary(self) -> str:
        speed = self.seconds / max(self.wall_seconds, 1e-9)
        s = (f"bounced {len(self.outputs)} file{'s' if len(self.outputs) != 1 else ''} "
             f"({self.seconds:.1f} s of audio) in {self.wall_seconds:.1f} s, "
             f"{speed:.1f}x real time")
        return s + (f"; {len(self.failures)} failed" if self.failures else "")


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


# -- progress --------------------------------------------------------------------------------
class _Progress:
    def __init__(self, progress: Progress, total_seconds: float, desc: str) -> None:
        self.total = total_seconds
        self.callback = progress if callable(progress) else None
        self.t0 = time.perf_counter()
        self.bar: Any = None
        show = progress is True or (progress is None and total_seconds > PROGRESS_MIN_SECONDS
                                    and sys.stderr.isatty())
        if show and self.callback is None:
            from tqdm import tqdm

            self.bar = tqdm(total=round(total_seconds, 1), desc=desc, unit="s", file=sys.stderr,
                            leave=False,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                                       "[{elapsed}<{remaining}{postfix}]")

    def update(self, done_seconds: float) -> None:
        if self.callback is not None:
            self.callback(done_seconds, self.total)
        if self.bar is not None:
            speed = done_seconds / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix_str(f"{speed:.1f}x real time", refresh=False)
            self.bar.update(round(done_seconds, 1) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- input -----------------------------------------------------------------------------------
def _input_path(path: PathLike) -> Path:
    """``path`` when it is a file this process can read, else a :class:`FlowdecError` that
    says why (no such file, a symlink loop, permission denied, a folder)."""
    p = Path(path)
    try:
        p.stat()
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise FlowdecError(f"{p}: no such file") from None
        raise FlowdecError(f"{p}: {e.strerror or _oneline(e)}") from None
    if p.is_dir():
        raise FlowdecError(f"{p}: is a folder, not a file")
    try:  # pedalboard reports a file it may not read as "not a known or supported format"
        os.close(os.open(p, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as e:
        raise FlowdecError(f"{p}: cannot read the file ({e.strerror or _oneline(e)})") from None
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


class _AudioIn:
    """A pedalboard.io reader yielding checked float32 chunks ``[channels, n]``."""

    def __init__(self, path: PathLike, chunk_seconds: float) -> None:
        from pedalboard.io import AudioFile

        self.path = _input_path(path)
        try:
            self.file: Any = AudioFile(str(self.path))
        except Exception as e:  # pedalboard raises ValueError/RuntimeError with long text
            raise FlowdecError(f"{self.path}: cannot read audio ({_oneline(e)})"
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
        self.chunk = max(1, int(_chunk_seconds(chunk_seconds, self.channels) * self.rate))
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
                                   f" s ({_oneline(e)})") from None
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

    def __enter__(self) -> _AudioIn:
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


def _visible(filename: str | os.PathLike[str]) -> str:
    """The output a hidden temporary file (``.NAME.<8 hex>.tmp[.ext]``, renamed to NAME when
    complete) stands for, so that messages name the file the user asked for; any other
    name as it is."""
    p = Path(filename)
    m = _TMP_NAME.fullmatch(p.name)
    return str(p.with_name(m.group("name"))) if m else str(filename)


def _oneline(e: BaseException) -> str:
    s = " ".join(str(e).split())
    for prefix in ("Failed to open audio file: ",):
        s = s.removeprefix(prefix)
    return s or type(e).__name__


# -- output ----------------------------------------------------------------------------------
def _prepare_output(path: PathLike, allowed: Sequence[str],
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
    if p.suffix.lower() not in allowed:
        raise FlowdecError(f"{p}: cannot write '{p.suffix or p.name}' files; use one of "
                           + ", ".join(allowed))
    if p.is_dir():
        raise FlowdecError(f"{p}: is a folder; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FlowdecError(f"{p.parent}: cannot create the folder ({e.strerror})") from None
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise FlowdecError(f"{p}: cannot write into {p.parent} "
                           f"({os.strerror(errno.EACCES)})")
    return p


class _AudioOut:
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
            why = _oneline(e).replace(str(self.tmp), str(path))
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
                raise _write_error(self.path, e, self.tmp) from None
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

    def __enter__(self) -> _AudioOut:
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
                raise _write_error(self.path, e, self.tmp) from None
        except BaseException:
            self._discard()
            raise
        if self.limiter is not None and self.limiter.limited:
            log.warning("%s: the decoded audio peaks at %+.1f dBFS; a peak limiter held it "
                        "to %.1f dBFS (%.2f s of it) instead of clipping at full scale; "
                        "write a .wav (32-bit float) to keep it unchanged", self.path,
                        20 * np.log10(self.peak), CEILING_DB,
                        self.limiter.limited / self.sample_rate)


def _write_error(path: Path, e: Exception, tmp: Path | None = None) -> FlowdecError:
    """A failed write as one line naming the output (not its temporary file) and saying so
    when the disk is full."""
    try:
        free: int | None = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or (
            free is not None and free < DISK_FULL_BYTES):
        left = "" if free is None else f" ({_size(free)} free)"
        return FlowdecError(f"{path}: cannot write: the disk is full{left}")
    why = e.strerror if isinstance(e, OSError) and e.strerror else _oneline(e)
    if tmp is not None:
        why = why.replace(str(tmp), str(path))
    return FlowdecError(f"{path}: cannot write ({why})")


# -- checks ----------------------------------------------------------------------------------
def _codebooks(codec: Codec, bitrate: float) -> int:
    try:
        return codec.card.codebooks_for(float(bitrate))
    except ValueError as e:
        raise FlowdecError(str(e)) from None


def _check_decode(codec: Codec, nfe: int, solver: str, postfilter: bool, chunk_seconds: float
                  ) -> None:
    if not chunk_seconds > 0:
        raise FlowdecError(f"chunk_seconds must be > 0, got {chunk_seconds}")
    if not postfilter:
        return
    if not codec.has_postfilter:
        raise FlowdecError(f"model {codec.folder} has no postfilter; use postfilter=False "
                           "(--no-postfilter)")
    _check_solver(nfe, solver)


def _check_solver(nfe: int, solver: str) -> None:
    if solver not in SOLVERS:
        raise FlowdecError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    if nfe < 1 or (solver == "midpoint" and nfe % 2):
        raise FlowdecError(f"nfe must be a positive{' even' if solver == 'midpoint' else ''} "
                           f"number for the {solver} solver, got {nfe}")


def _chunk_seconds(chunk_seconds: float, channels: int, postfilter: bool = False) -> float:
    """``chunk_seconds`` cut to the channel-seconds the codec (:data:`CHANNEL_SECONDS`) or
    the postfilter (:data:`POSTFILTER_CHANNEL_SECONDS`) may hold at once."""
    budget = POSTFILTER_CHANNEL_SECONDS if postfilter else CHANNEL_SECONDS
    return min(chunk_seconds, budget / channels)


def _seed(seed: int, postfilter: bool) -> int | None:
    """The seed a result reports: None when the postfilter did not run."""
    return int(seed) if postfilter else None


class _Translate:
    """Turn library refusals (damaged stream, model, device, OS) into :class:`FlowdecError`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None or isinstance(exc, FlowdecError):
            return
        if isinstance(exc, BitstreamError | ModelError | DeviceError):
            raise FlowdecError(_oneline(exc)) from exc
        if isinstance(exc, OSError) and exc.strerror:
            where = f"{_visible(exc.filename)}: " if exc.filename else ""
            raise FlowdecError(f"{where}{exc.strerror}") from exc


# -- the pipeline pieces ---------------------------------------------------------------------
def _encode_codes(codec: Codec, src: _AudioIn, n_q: int, chunk_seconds: float,
                  level_bands: int) -> Iterator[CodeChunk]:
    """Codes ``[C, n_q, k]``, level gains and band gains for successive input chunks (48 kHz
    resampling inside), as :meth:`Codec.encode_chunks` gives them."""
    rs = StreamResampler(src.rate, CODEC_RATE, src.channels)

    def audio48() -> Iterator[np.ndarray]:
        for x in src.chunks():
            yield rs.push(x)
        if not rs.identity:
            yield rs.push(np.zeros((src.channels, 0), np.float32), last=True)

    yield from codec.encode_chunks(audio48(), src.channels, n_q, FILE_FRAMES_PER_GAIN,
                                   _chunk_seconds(chunk_seconds, src.channels), level_bands)


def _write_audio(audio48: Iterable[np.ndarray], rate: int, channels: int,
                 length: Callable[[], int], out: _AudioOut, progress: _Progress) -> None:
    """Resample 48 kHz chunks to ``rate`` and write exactly ``length()`` samples.

    Mirrors :meth:`Codec.decode`: the 48 kHz signal is cut (or zero-padded) to
    ceil(length·48000/rate) samples, resampled, and cut to ``length`` samples. A stream that
    ends early (a truncated file) gives only the audio it holds.
    """
    rs = StreamResampler(CODEC_RATE, rate, channels)
    fed = 0

    def t48() -> int:
        return -(-length() * CODEC_RATE // rate)

    def emit(z: np.ndarray) -> None:
        out.write(z[:, : max(0, length() - out.samples)])
        progress.update(out.samples / rate)

    for y in audio48:
        y = y[:, : max(0, t48() - fed)]
        if y.shape[1]:
            fed += y.shape[1]
            emit(rs.push(y))
    if fed < t48():
        target = fed * rate // CODEC_RATE  # truncated stream: keep what was decoded
    else:
        target = length()
    if not rs.identity:
        emit(rs.push(np.zeros((channels, 0), np.float32), last=True))
    if out.samples < target:
        out.write(np.zeros((channels, target - out.samples), np.float32))
    progress.update(out.samples / rate)


# -- public API ------------------------------------------------------------------------------
def encode_file(codec: Codec, in_path: PathLike, out_path: PathLike, bitrate: float = 6.0,
                chunk_seconds: float = 10.0, progress: Progress = None,
                level_bands: int = 0) -> FileResult:
    """Encode an audio file to a ``.fdc`` bitstream, streaming in chunks of ``chunk_seconds``.

    Args:
        bitrate: kbit/s per channel, one of ``codec.bitrates`` (3, 4.5, 6, 7.5).
        level_bands: also send band gains in this many ERB bands per second
            (:mod:`flowdec.band_level`; 24 costs 96 bit/s per channel); 0: none.

    Raises:
        FlowdecError: missing/unreadable/empty input, NaN samples, unknown bitrate, write error.

    Example:
        >>> encode_file(codec, "in.flac", "out.fdc", bitrate=6.0).summary()  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    n_q = _codebooks(codec, bitrate)
    out = _prepare_output(out_path, (".fdc",), in_path)
    with _Translate(), _AudioIn(in_path, chunk_seconds) as src:
        header = codec.header(src.channels, src.rate, src.frames, n_q, level_bands=level_bands)
        bar = _Progress(progress, src.seconds, f"encode {src.path.name}")
        try:
            with FdcWriter(out, header) as w:
                for codes, gains, bands in _encode_codes(codec, src, n_q, chunk_seconds,
                                                         level_bands):
                    w.write(codes, gains, bands)
                    bar.update(src.read / src.rate)
                if src.frames != header.original_length:  # e.g. an mp3's estimated length
                    w.header = dataclasses.replace(w.header, original_length=src.frames)
        except OSError as e:  # the temporary file is gone (FdcWriter.abort)
            raise _write_error(out, e) from None
        finally:
            bar.close()
        return FileResult("encoded", src.path, out, src.seconds, time.perf_counter() - t0,
                          src.rate, src.channels, header.nominal_kbps, out.stat().st_size)


def decode_file(codec: Codec, in_path: PathLike, out_path: PathLike, nfe: int | None = None,
                seed: int | None = None, postfilter: bool | None = None, solver: str = "midpoint",
                chunk_seconds: float = 10.0, progress: Progress = None) -> FileResult:
    """Decode a ``.fdc`` file to audio at its original rate, channels and length.

    The output format follows ``out_path``'s extension (.wav float32, .flac 24-bit, ...).
    A truncated file decodes up to its last complete packet, with a
    :class:`flowdec.bitstream.BitstreamWarning`.

    Args:
        nfe: postfilter network evaluations (even for the midpoint solver; None: 6).
        seed: postfilter noise seed (None: 0; reported in the result).
        postfilter: False gives the plain codec output; None (default): on when ``nfe`` or
            ``seed`` is given, else as the model card recommends (:meth:`Codec.use_postfilter`).

    Raises:
        FlowdecError: missing file, not an .fdc file, corrupt packet, model mismatch, ...

    Example:
        >>> decode_file(codec, "x.fdc", "x.wav", seed=1).summary()  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    postfilter, nfe, seed = codec.postfilter_settings(postfilter, nfe, seed)
    _check_decode(codec, nfe, solver, postfilter, chunk_seconds)
    src = _input_path(in_path)
    with _Translate(), FdcReader(src) as reader:
        h = reader.header
        codec.check_stream(h, str(src))
        out = _prepare_output(out_path, WRITE_EXTENSIONS, in_path)
        used_seed = _seed(seed, postfilter)
        bar = _Progress(progress, h.duration_s, f"decode {src.name}")
        try:
            codes = ((p.codes, p.gains_db, p.band_gains_db) for p in reader)
            audio = codec.decode_chunks(codes, h, nfe, used_seed, postfilter, solver,
                                        _chunk_seconds(chunk_seconds, h.channels, postfilter))
            with _AudioOut(out, h.original_rate, h.channels) as w:
                _write_audio(audio, h.original_rate, h.channels, lambda: h.original_length, w,
                             bar)
                seconds = w.samples / h.original_rate
        finally:
            bar.close()
    return FileResult("decoded", src, out, seconds, time.perf_counter() - t0, h.original_rate,
                      h.channels, h.nominal_kbps, out.stat().st_size, postfilter, nfe, used_seed)


def roundtrip_file(codec: Codec, in_path: PathLike, out_path: PathLike, bitrate: float = 6.0,
                   nfe: int | None = None, seed: int | None = None,
                   postfilter: bool | None = None,
                   solver: str = "midpoint", chunk_seconds: float = 10.0,
                   progress: Progress = None, level_bands: int = 0) -> FileResult:
    """Encode and decode a file without an intermediate ``.fdc`` (what a listener hears).

    Equals ``decode_file(encode_file(...))`` with the same settings and chunking; the output
    keeps the input's rate, channels and length. ``nfe``, ``seed``, ``postfilter``: as for
    :func:`decode_file`.

    Example:
        >>> roundtrip_file(codec, "in.wav", "out.wav", bitrate=3.0, seed=0)  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    n_q = _codebooks(codec, bitrate)
    postfilter, nfe, seed = codec.postfilter_settings(postfilter, nfe, seed)
    _check_decode(codec, nfe, solver, postfilter, chunk_seconds)
    out = _prepare_output(out_path, WRITE_EXTENSIONS, in_path)
    with _Translate(), _AudioIn(in_path, chunk_seconds) as src:
        h = codec.header(src.channels, src.rate, src.frames, n_q, level_bands=level_bands)
        used_seed = _seed(seed, postfilter)
        bar = _Progress(progress, src.seconds, f"roundtrip {src.path.name}")
        try:
            codes = _encode_codes(codec, src, n_q, chunk_seconds, level_bands)
            audio = codec.decode_chunks(codes, h, nfe, used_seed, postfilter, solver,
                                        _chunk_seconds(chunk_seconds, h.channels, postfilter))
            with _AudioOut(out, src.rate, src.channels) as w:
                _write_audio(audio, src.rate, src.channels, lambda: src.frames, w, bar)
        finally:
            bar.close()
        return FileResult("round-tripped", src.path, out, src.seconds, time.perf_counter() - t0,
                          src.rate, src.channels, h.nominal_kbps, out.stat().st_size, postfilter,
                          nfe, used_seed)


def enhance_file(postfilter: Postfilter, in_path: PathLike, out_path: PathLike,
                 nfe: int | None = None,
                 seed: int | None = None, solver: str = "midpoint", chunk_seconds: float = 10.0,
                 progress: Progress = None) -> FileResult:
    """Run the postfilter alone on an audio file the codec decoded (e.g. with
    ``--no-postfilter``, or by another program), streaming in chunks; the output keeps the
    input's rate, channels and length. Equals :meth:`flowdec.Postfilter.enhance` on the whole
    clip within the postfilter stage's seam tolerance (same ``seed``). ``nfe`` None: 6,
    ``seed`` None: 0 (:data:`~flowdec.postfilter.DEFAULT_NFE`, ``DEFAULT_SEED``).

    Example:
        >>> enhance_file(Postfilter.load(), "plain.wav", "enhanced.wav", seed=1)  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if not chunk_seconds > 0:
        raise FlowdecError(f"chunk_seconds must be > 0, got {chunk_seconds}")
    nfe = DEFAULT_NFE if nfe is None else nfe
    _check_solver(nfe, solver)
    out = _prepare_output(out_path, WRITE_EXTENSIONS, in_path)
    with _Translate(), _AudioIn(in_path, chunk_seconds) as src:
        used_seed = DEFAULT_SEED if seed is None else int(seed)
        window = _chunk_seconds(chunk_seconds, src.channels, True)
        chain = postfilter.chain(src.channels, nfe, used_seed, solver,
                                 chunk_frames=int(window * CODEC_RATE / postfilter.card.hop))
        rs = StreamResampler(src.rate, CODEC_RATE, src.channels)
        bar = _Progress(progress, src.seconds, f"enhance {src.path.name}")

        def audio48() -> Iterator[np.ndarray]:
            for x in src.chunks():
                yield chain.push(rs.push(x))
            if not rs.identity:
                yield chain.push(rs.push(np.zeros((src.channels, 0), np.float32), last=True))
            yield chain.finish()

        try:
            with _AudioOut(out, src.rate, src.channels) as w:
                _write_audio(audio48(), src.rate, src.channels, lambda: src.frames, w, bar)
        finally:
            bar.close()
        return FileResult("enhanced", src.path, out, src.seconds, time.perf_counter() - t0,
                          src.rate, src.channels, None, out.stat().st_size, True, nfe, used_seed)


ChunkProcessor = Callable[[Iterator[np.ndarray], int, int], Iterable[np.ndarray]]
"""``process(chunks, sample_rate, channels)``: output chunks ``[channels, n]`` for the input
chunks, at the input's rate, aligned with it and as long in total."""


def process_file(in_path: PathLike, out_path: PathLike, process: ChunkProcessor,
                 chunk_seconds: float = 10.0, progress: Progress = None) -> FileResult:
    """Stream an audio file through ``process`` into ``out_path`` with the writer every verb
    uses: the output format follows the extension (``.wav`` 32-bit float keeps overs;
    ``.flac``/``.aiff`` 24-bit and the lossy formats get them held below full scale by the
    peak limiter, with a warning), it is written under a temporary name that is renamed
    when complete (or deleted on any error), and it never replaces ``in_path``. Used by
    :meth:`flowdec.effect.Pipeline.process_file`.

    Example:
        >>> double = lambda chunks, rate, channels: (2 * x for x in chunks)
        >>> process_file("in.wav", "louder.flac", double)  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if not chunk_seconds > 0:
        raise FlowdecError(f"chunk_seconds must be > 0, got {chunk_seconds}")
    out = _prepare_output(out_path, WRITE_EXTENSIONS, in_path)
    with _Translate(), _AudioIn(in_path, chunk_seconds) as src:
        bar = _Progress(progress, src.seconds, f"process {src.path.name}")
        try:
            with _AudioOut(out, src.rate, src.channels) as w:
                for y in process(src.chunks(), src.rate, src.channels):
                    w.write(np.asarray(y, np.float32).reshape(src.channels, -1))
                    bar.update(w.samples / src.rate)
        finally:
            bar.close()
        return FileResult("processed", src.path, out, src.seconds, time.perf_counter() - t0,
                          src.rate, src.channels, None, out.stat().st_size)


def _bounce_jobs(inputs: Iterable[PathLike], out_dir: Path, suffix: str
                 ) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    jobs: list[tuple[Path, Path]] = []
    failures: list[tuple[Path, str]] = []
    out_abs = out_dir.resolve()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            audio = [f for f in sorted(p.rglob("*")) if f.is_file()
                     and f.suffix.lower() in AUDIO_EXTENSIONS and not f.name.startswith(".")]
            found = [f for f in audio if not f.resolve().is_relative_to(out_abs)]
            if audio and not found:  # e.g. bounce sub -o . : sub is inside the output folder
                failures.append((p, f"{p}: skipped, its audio files are inside the output "
                                    f"folder {out_dir}; choose an output folder outside it"))
            elif not found:
                failures.append((p, f"{p}: no audio files ({', '.join(AUDIO_EXTENSIONS)})"))
            jobs += [(f, out_dir / f.relative_to(p).with_suffix(suffix)) for f in found]
        elif os.path.lexists(p):  # a file, or a link the round trip reports on (e.g. a loop)
            jobs.append((p, out_dir / p.with_suffix(suffix).name))
        else:
            failures.append((p, f"{p}: no such file or folder"))
    seen: dict[Path, Path] = {}
    unique = []
    sources = {src.resolve() for src, _ in jobs}
    for src, dst in jobs:
        if dst.resolve() in sources:  # e.g. bounce x.wav -o . (its own folder)
            failures.append((src, f"{src}: skipped, its output {dst} is an input file (the "
                                  "result would replace it); choose another output folder"))
        elif dst in seen:
            failures.append((src, f"{src}: skipped, its output {dst} is also the output of "
                                  f"{seen[dst]}"))
        else:
            seen[dst] = src
            unique.append((src, dst))
    return unique, failures


def bounce(codec: Codec, inputs: Sequence[PathLike], out_dir: PathLike, bitrate: float = 6.0,
           nfe: int | None = None, seed: int | None = None, postfilter: bool | None = None,
           solver: str = "midpoint", chunk_seconds: float = 10.0, progress: Progress = None,
           suffix: str = ".wav",
           on_result: Callable[[FileResult], None] | None = None,
           level_bands: int = 0) -> BounceResult:
    """Round-trip files and whole folders into ``out_dir``, keeping the folder tree.

    A file ``IN/a/b.flac`` under a folder input ``IN`` goes to ``out_dir/a/b.wav`` (the
    extension is ``suffix``); a file input goes to ``out_dir/<name>.wav``. A file that fails
    is logged (logger ``flowdec``, level ERROR) and skipped; the result lists the outputs
    and the failures. ``on_result`` is called after each file (e.g. to print a line).

    Example:
        >>> r = bounce(codec, ["album/"], "album-6k/", bitrate=6.0, seed=0)  # doctest: +SKIP
        >>> print(r.summary())                                              # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if not suffix.startswith("."):
        suffix = "." + suffix
    if suffix.lower() not in WRITE_EXTENSIONS:
        raise FlowdecError(f"cannot write '{suffix}' files; use one of "
                           + ", ".join(WRITE_EXTENSIONS))
    _codebooks(codec, bitrate)
    postfilter, checked_nfe, _ = codec.postfilter_settings(postfilter, nfe, seed)
    _check_decode(codec, checked_nfe, solver, postfilter, chunk_seconds)
    dest = Path(out_dir)
    if dest.exists() and not dest.is_dir():
        raise FlowdecError(f"{dest}: exists and is not a folder")
    jobs, failures = _bounce_jobs(inputs, dest, suffix)
    result = BounceResult(failures=list(failures))
    for _, msg in failures:
        log.error("%s", msg)
    for src, dst in jobs:
        try:
            r = roundtrip_file(codec, src, dst, bitrate, nfe, seed, postfilter, solver,
                               chunk_seconds, progress, level_bands)
        except FlowdecError as e:
            log.error("%s", e)
            result.failures.append((src, str(e)))
            continue
        result.outputs.append(dst)
        result.results.append(r)
        if on_result is not None:
            on_result(r)
    result.wall_seconds = time.perf_counter() - t0
    return result


# -- info ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamInfo:
    """What :func:`stream_info` found in a ``.fdc`` file."""

    path: Path
    header: StreamHeader
    file_bytes: int
    packets: int
    frames: int  # frames per channel actually present
    complete: bool  # False: truncated (fewer frames than the header announces)
    installed_model: str | None  # id of the model we compare with, None if none found
    problem: str | None = None  # a corrupt packet, if any
    gain_range_db: tuple[float, float, float] | None = None  # level gains min, mean, max
    band_range_db: tuple[float, float, float] | None = None  # band gains min, mean, max
    format_version: int = FORMAT_VERSION  # the file's .fdc format version

    @property
    def seconds(self) -> float:
        return self.header.duration_s

    @property
    def file_kbps(self) -> float:
        """Whole-file bitrate in kbit/s (all channels, header and packet framing included)."""
        return self.file_bytes * 8 / 1000 / max(self.seconds, 1e-9)

    @property
    def model_matches(self) -> bool | None:
        return None if self.installed_model is None else (
            self.installed_model == self.header.model_id)

    def lines(self) -> list[str]:
        h = self.header
        match = {True: "matches the installed model", False:
                 f"does NOT match the installed model {self.installed_model}",
                 None: "no installed model to compare with"}[self.model_matches]
        status = "complete" if self.complete else (
            f"truncated: {self.frames} of {h.total_frames} frames present")
        if self.problem:
            status = f"damaged: {self.problem}"
        return [
            f"file:            {self.path} ({_size(self.file_bytes)}, {status})",
            f"model id:        {h.model_id} ({match})",
            f"format:          version {self.format_version}",
            f"duration:        {self.seconds:.3f} s ({h.original_length} samples at "
            f"{h.original_rate} Hz)",
            f"channels:        {h.channels}",
            f"bitrate:         {h.nominal_kbps:g} kbit/s per channel nominal, "
            f"{self.file_kbps:.2f} kbit/s for the whole file",
            f"codec:           {h.sample_rate} Hz, {float(h.frame_rate):g} frames/s, "
            f"{h.n_codebooks} codebooks x {h.bits_per_code} bits",
            f"packets:         {self.packets} of up to {h.frames_per_packet} frames, "
            f"{self.frames} frames",
            f"level gains:     {self._gains_line()}",
            f"band gains:      {self._bands_line()}",
        ]

    def _gains_line(self) -> str:
        h = self.header
        if not h.frames_per_gain:
            return ("none (format version 1 has none)" if self.format_version < 2 else
                    "none (encoded without them)")
        every = f"one per {float(h.frames_per_gain / h.frame_rate):g} s per channel"
        return every + _range(self.gain_range_db)

    def _bands_line(self) -> str:
        h = self.header
        if not h.level_bands:
            return (f"none (format version {self.format_version} has none)"
                    if self.format_version < 3 else "none (encoded without them)")
        every = (f"{h.level_bands} ERB bands per {float(h.frames_per_gain / h.frame_rate):g} s "
                 "per channel")
        return every + _range(self.band_range_db)


def _range(r: tuple[float, float, float] | None) -> str:
    return "" if r is None else f"; min {r[0]:+.2f} dB, mean {r[1]:+.2f} dB, max {r[2]:+.2f} dB"


def stream_info(path: PathLike, model: PathLike | None = None) -> StreamInfo:
    """Read a ``.fdc`` file's header and walk its packets (bounded memory).

    ``model`` is the model folder to compare the file's model id with (default: the shipped
    model, if installed). Only ``model_card.json`` is read, no network is loaded.

    Raises:
        FlowdecError: missing file, not a .fdc file, or a corrupt header.
    """
    p = _input_path(path)
    card: CodecCard | None = None
    with _Translate():
        try:
            card = load_cards(resolve(model))[0]
        except ModelError:
            if model is not None:
                raise
    packets = frames = 0
    stats = {"gains": [np.inf, -np.inf, 0.0, 0], "bands": [np.inf, -np.inf, 0.0, 0]}

    def add(what: str, g: np.ndarray | None) -> None:
        if g is not None and g.size:
            s = stats[what]
            s[0], s[1] = min(s[0], float(g.min())), max(s[1], float(g.max()))
            s[2] += float(g.sum())
            s[3] += g.size

    def summary(what: str) -> tuple[float, float, float] | None:
        lo, hi, total, n = stats[what]
        return (lo, total / n, hi) if n else None

    problem = None
    with _Translate(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation is reported in the result
        with FdcReader(p) as r:
            h, version = r.header, r.format_version
            if card is not None and card.model_id == h.model_id:
                try:
                    check_stream(h, card, str(p))
                except BitstreamError as e:  # the model's decoder would refuse it
                    problem = _oneline(e)
            try:
                for pk in r if problem is None else ():
                    packets += 1
                    frames += pk.frames
                    add("gains", pk.gains_db)
                    add("bands", pk.band_gains_db)
            except BitstreamError as e:
                problem = _oneline(e)
    return StreamInfo(p, h, p.stat().st_size, packets, frames,
                      problem is None and frames >= h.total_frames,
                      None if card is None else card.model_id, problem,
                      summary("gains"), summary("bands"), version)

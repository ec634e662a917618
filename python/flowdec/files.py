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
keeps such peaks, the other formats get them held below it by :mod:`flowdec.audio.limiter`
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
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from .audio import CODEC_RATE, StreamResampler
from .audio.io import (
    AUDIO_EXTENSIONS,
    WRITE_EXTENSIONS,
    AudioReader,
    AudioWriter,
    PathLike,
    input_path,
    prepare_output,
    size_text,
    visible_name,
    write_error,
)
from .codec import Codec, CodeChunk
from .dsp.solver import SOLVERS
from .errors import FlowdecError, FlowdecWarning, one_line
from .format.bitstream import (
    FILE_FRAMES_PER_GAIN,
    FORMAT_VERSION,
    BitstreamError,
    FdcReader,
    FdcWriter,
    StreamHeader,
)
from .model.files import CodecCard, ModelError, load_cards, resolve
from .model.sessions import DeviceError
from .pipeline.model import check_stream
from .pipeline.postfilter import DEFAULT_NFE, DEFAULT_SEED
from .postfilter import Postfilter

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

PROGRESS_MIN_SECONDS = 5.0
"""Audio shorter than this gets no progress bar."""
CHANNEL_SECONDS = 20.0
"""The encoder and decoder work on chunks of at most this many channel-seconds (10 s of
stereo): more channels get shorter chunks, so memory does not grow with the channel count."""
POSTFILTER_CHANNEL_SECONDS = 5.0
"""The postfilter runs on windows of at most this many channel-seconds (2.5 s for stereo):
its ONNX activations, not the file length, set the peak memory."""

Progress = bool | Callable[[float, float], None] | None
"""``None``: a tqdm bar when stderr is a terminal and the audio is longer than 5 s;
``False``: none; ``True``: always a bar; a callable: called as ``f(done_s, total_s)``
(seconds of audio) after each chunk instead of a bar (it may raise to stop the run)."""



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
        parts += [size_text(self.output_bytes), f"{self.speed:.1f}x real time"]
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
            raise FlowdecError(one_line(exc)) from exc
        if isinstance(exc, OSError) and exc.strerror:
            where = f"{visible_name(exc.filename)}: " if exc.filename else ""
            raise FlowdecError(f"{where}{exc.strerror}") from exc


# -- the pipeline pieces ---------------------------------------------------------------------
def _encode_codes(codec: Codec, src: AudioReader, n_q: int, chunk_seconds: float,
                  level_bands: int) -> Iterator[CodeChunk]:
    """Codes ``[C, n_q, k]``, level gains and band gains for successive input chunks (48 kHz
    resampling inside), as :meth:`Codec.encode_chunks` gives them."""
    rs = StreamResampler(src.rate, CODEC_RATE, src.channels)

    def audio48() -> Iterator[np.ndarray]:
        for x in src.chunks():
            yield rs.push(x)
        yield rs.finish()

    yield from codec.encode_chunks(audio48(), src.channels, n_q, FILE_FRAMES_PER_GAIN,
                                   _chunk_seconds(chunk_seconds, src.channels), level_bands)


def _write_audio(audio48: Iterable[np.ndarray], rate: int, channels: int,
                 length: Callable[[], int], out: AudioWriter, progress: _Progress) -> None:
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
    emit(rs.finish())
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
            (:mod:`flowdec.dsp.band_level`; 24 costs 96 bit/s per channel); 0: none.

    Raises:
        FlowdecError: missing/unreadable/empty input, NaN samples, unknown bitrate, write error.

    Example:
        >>> encode_file(codec, "in.flac", "out.fdc", bitrate=6.0).summary()  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    n_q = _codebooks(codec, bitrate)
    out = prepare_output(out_path, (".fdc",), in_path)
    with _Translate(), AudioReader(in_path, chunk_seconds, CHANNEL_SECONDS) as src:
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
            raise write_error(out, e) from None
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
    :class:`flowdec.format.bitstream.BitstreamWarning`.

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
    src = input_path(in_path)
    with _Translate(), FdcReader(src) as reader:
        h = reader.header
        codec.check_stream(h, str(src))
        out = prepare_output(out_path, WRITE_EXTENSIONS, in_path)
        used_seed = _seed(seed, postfilter)
        bar = _Progress(progress, h.duration_s, f"decode {src.name}")
        try:
            codes = ((p.codes, p.gains_db, p.band_gains_db) for p in reader)
            audio = codec.decode_chunks(codes, h, nfe, used_seed, postfilter, solver,
                                        _chunk_seconds(chunk_seconds, h.channels, postfilter))
            with AudioWriter(out, h.original_rate, h.channels) as w:
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
    out = prepare_output(out_path, WRITE_EXTENSIONS, in_path)
    with _Translate(), AudioReader(in_path, chunk_seconds, CHANNEL_SECONDS) as src:
        h = codec.header(src.channels, src.rate, src.frames, n_q, level_bands=level_bands)
        used_seed = _seed(seed, postfilter)
        bar = _Progress(progress, src.seconds, f"roundtrip {src.path.name}")
        try:
            codes = _encode_codes(codec, src, n_q, chunk_seconds, level_bands)
            audio = codec.decode_chunks(codes, h, nfe, used_seed, postfilter, solver,
                                        _chunk_seconds(chunk_seconds, h.channels, postfilter))
            with AudioWriter(out, src.rate, src.channels) as w:
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
    ``seed`` None: 0 (:data:`~flowdec.pipeline.postfilter.DEFAULT_NFE`, ``DEFAULT_SEED``).

    Example:
        >>> enhance_file(Postfilter.load(), "plain.wav", "enhanced.wav", seed=1)  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if not chunk_seconds > 0:
        raise FlowdecError(f"chunk_seconds must be > 0, got {chunk_seconds}")
    nfe = DEFAULT_NFE if nfe is None else nfe
    _check_solver(nfe, solver)
    out = prepare_output(out_path, WRITE_EXTENSIONS, in_path)
    with _Translate(), AudioReader(in_path, chunk_seconds, CHANNEL_SECONDS) as src:
        used_seed = DEFAULT_SEED if seed is None else int(seed)
        window = _chunk_seconds(chunk_seconds, src.channels, True)
        chain = postfilter.chain(src.channels, nfe, used_seed, solver,
                                 chunk_frames=int(window * CODEC_RATE / postfilter.card.hop))
        rs = StreamResampler(src.rate, CODEC_RATE, src.channels)
        bar = _Progress(progress, src.seconds, f"enhance {src.path.name}")

        def audio48() -> Iterator[np.ndarray]:
            for x in src.chunks():
                yield chain.push(rs.push(x))
            yield chain.push(rs.finish())
            yield chain.finish()

        try:
            with AudioWriter(out, src.rate, src.channels) as w:
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
    out = prepare_output(out_path, WRITE_EXTENSIONS, in_path)
    with _Translate(), AudioReader(in_path, chunk_seconds, CHANNEL_SECONDS) as src:
        bar = _Progress(progress, src.seconds, f"process {src.path.name}")
        try:
            with AudioWriter(out, src.rate, src.channels) as w:
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
            f"file:            {self.path} ({size_text(self.file_bytes)}, {status})",
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
    p = input_path(path)
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
                    problem = one_line(e)
            try:
                for pk in r if problem is None else ():
                    packets += 1
                    frames += pk.frames
                    add("gains", pk.gains_db)
                    add("bands", pk.band_gains_db)
            except BitstreamError as e:
                problem = one_line(e)
    return StreamInfo(p, h, p.stat().st_size, packets, frames,
                      problem is None and frames >= h.total_frames,
                      None if card is None else card.model_id, problem,
                      summary("gains"), summary("bands"), version)

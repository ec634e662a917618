"""The codec as a library: encode audio to a :class:`Bitstream`, decode it back.

Example:
    >>> import numpy as np, flowdec
    >>> codec = flowdec.Codec.load()                          # the shipped model
    >>> audio = np.random.default_rng(0).standard_normal((2, 44100)).astype(np.float32) * 0.1
    >>> stream = codec.encode(audio, 44100, bitrate=6.0)       # kbit/s per channel
    >>> out = codec.decode(stream, nfe=6, seed=1)              # [2, 44100] at 44.1 kHz
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .audio import CODEC_RATE, as_audio, check_int, check_rate, fit_length, resample
from .dsp.band_level import BAND_STEP_DB, BAND_STEP_RANGE
from .format.bitstream import (
    FILE_FRAMES_PER_GAIN,
    GAIN_LIMIT_DB,
    GAIN_STEP_DB,
    BitstreamError,
    StreamHeader,
    check_band_gains,
    check_codes,
    check_gains,
    read_fdc_gains,
    write_fdc,
)
from .pipeline.model import MAX_GAIN_BLOCK_SECONDS, MAX_PACKET_SECONDS, Model

__all__ = ["DEFAULT_CHUNK_SECONDS", "MAX_GAIN_BLOCK_SECONDS", "MAX_PACKET_SECONDS", "Bitstream",
           "Codec", "CodeChunk", "example_clip"]

DEFAULT_CHUNK_SECONDS = 10.0
"""Offline processing unit: memory is bounded by this, whatever the file length."""


CodeChunk = tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None"]
"""Codes ``[C, n_q, k]``, their level gains ``[C, blocks]`` in dB (None: no gains) and band
gains ``[C, blocks, bands]`` in dB (None: no level bands)."""


@dataclass
class Bitstream:
    """Codes of a whole clip plus the header that describes them.

    ``codes`` is ``[channels, n_codebooks, frames]`` uint16 at ``header.frame_rate``;
    ``gains_db`` the level gains ``[channels, header.gain_blocks(frames)]`` in dB (see
    :mod:`flowdec.dsp.level`), or None for a stream without them; ``band_gains_db`` the band
    gains ``[channels, header.gain_blocks(frames), header.level_bands]`` in dB (see
    :mod:`flowdec.dsp.band_level`), or None for a stream without level bands. ``input_1d``: encoded
    from mono ``[samples]``, so :meth:`Codec.decode` returns ``[samples]`` too (files do not
    keep it: a loaded stream decodes to ``[channels, samples]``).
    """

    header: StreamHeader
    codes: np.ndarray
    gains_db: np.ndarray | None = None
    band_gains_db: np.ndarray | None = None
    input_1d: bool = False

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write an ``.fdc`` file (atomically: a temporary name renamed when complete)."""
        write_fdc(path, self.header, self.codes, self.gains_db, self.band_gains_db)

    @classmethod
    def load(cls, path: str | os.PathLike[str], expected_model_id: str | None = None) -> Bitstream:
        return cls(*read_fdc_gains(path, expected_model_id=expected_model_id))

    @property
    def bitrate_kbps(self) -> float:
        return self.header.nominal_kbps

    @property
    def seconds(self) -> float:
        return self.header.original_length / self.header.original_rate



def _as_float(value: object) -> float:
    """``float(value)`` of a number, else NaN (``"10"`` is not a number of seconds)."""
    if isinstance(value, str | bytes):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


class Codec(Model):
    """The clip API on a loaded :class:`~flowdec.pipeline.model.Model` (its sessions, cards, stages
    and chains): :meth:`encode` and :meth:`decode` whole clips, :meth:`encode_chunks` and
    :meth:`decode_chunks` for long signals in bounded memory.

    Args:
        model: a model folder, a shipped model name, or None for the shipped default.
        device: "cpu" or "cuda" (onnxruntime-gpu).
        threads: onnxruntime intra-op threads (default: up to 4, the machine's cores).
    """

    @classmethod
    def load(cls, model: str | os.PathLike[str] | None = None, device: str = "cpu",
             threads: int | None = None) -> Codec:
        return cls(model, device, threads)

    # -- whole clips -----------------------------------------------------------------------
    def encode(self, audio: npt.ArrayLike, sample_rate: float, bitrate: float = 6.0,
               chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
               frames_per_gain: int = FILE_FRAMES_PER_GAIN, level_bands: int = 0) -> Bitstream:
        """Encode ``[channels, samples]`` (or mono ``[samples]``) at ``sample_rate`` Hz.

        ``frames_per_gain``: codec frames per level-gain block (see :mod:`flowdec.dsp.level`);
        0 leaves the gains out (and skips the decoder run that measures them).
        ``level_bands``: also send band gains in that many ERB bands per gain block
        (:mod:`flowdec.dsp.band_level`; :data:`~flowdec.format.bitstream.FILE_LEVEL_BANDS`
        = 24 costs 96 bit/s per channel); 0: none."""
        a = as_audio(audio)
        sr = check_rate(sample_rate)
        n_q = self.card.codebooks_for(bitrate)
        header = self.header(a.shape[0], sr, a.shape[1], n_q, frames_per_gain=frames_per_gain,
                             level_bands=level_bands)  # checks the settings before any work
        x = resample(a, sr, CODEC_RATE)
        parts = list(self.encode_chunks([x], a.shape[0], n_q, frames_per_gain, chunk_seconds,
                                        level_bands))
        codes = np.concatenate([c for c, _, _ in parts], axis=2)
        gains = np.concatenate([g for _, g, _ in parts], axis=1) if frames_per_gain else None
        bands = np.concatenate([b for _, _, b in parts], axis=1) if level_bands else None
        header = dataclasses.replace(header, total_frames=codes.shape[2])
        return Bitstream(header, codes.astype(np.uint16), gains, bands,
                         input_1d=np.ndim(audio) == 1)

    def encode_chunks(self, audio48: Iterable[np.ndarray], channels: int, n_codebooks: int,
                      frames_per_gain: int = FILE_FRAMES_PER_GAIN,
                      chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                      level_bands: int = 0) -> Iterator[CodeChunk]:
        """Codes, level gains and band gains for successive 48 kHz chunks ``[C, n]`` (bounded
        memory).

        Each yielded triple covers whole gain blocks (the last may end mid-block). With gains,
        the plain decoder runs alongside the encoder to measure them; with level bands, the
        band gains are measured on the plain decoder output and the level gains on that
        output after the band gains (as the decoder will apply them)."""
        chain = self.encode_chain(channels, n_codebooks, self._chunk_frames(chunk_seconds),
                                  frames_per_gain, level_bands)
        if not frames_per_gain:
            for x in audio48:
                codes = chain.push(x).codes
                if codes.shape[2]:
                    yield codes, None, None
            yield chain.finish().codes, None, None
            return
        # codes wait for their gains: each chunk is whole gain blocks
        held = np.zeros((channels, n_codebooks, 0), np.int64)
        bands_held = np.zeros((channels, 0, level_bands), np.float32)
        end: list[np.ndarray | None] = [None]
        for piece in itertools.chain(audio48, end):
            e = chain.push(piece) if piece is not None else chain.finish()
            held = np.concatenate([held, e.codes], axis=2)
            if e.bands is not None:
                bands_held = np.concatenate([bands_held, e.bands], axis=1)
            assert e.gains is not None
            n = e.gains.shape[1]
            if n or piece is None:
                k = held.shape[2] if piece is None else n * frames_per_gain
                yield held[:, :, :k], e.gains, bands_held[:, :n] if level_bands else None
                held, bands_held = held[:, :, k:], bands_held[:, n:]

    def _check_codes(self, codes: np.ndarray) -> None:
        if codes.size:
            lo, hi = int(codes.min()), int(codes.max())
            if lo < 0 or hi >= self.codebook_size:
                raise BitstreamError(
                    f"code {lo if lo < 0 else hi} is outside the model's codebooks "
                    f"(0..{self.codebook_size - 1}); the stream is damaged")

    def _chunk_frames(self, chunk_seconds: float) -> int:
        return max(1, int(chunk_seconds * self.card.frame_rate))

    def _checked_stream(self, stream: object) -> tuple[StreamHeader, CodeChunk]:
        """The header and (codes, gains, band gains) of ``stream``, checked against the
        header and this model: a clear error instead of NaN output, 5e9 peaks or a failure
        inside onnxruntime. Codes come back as uint16, gains as float32."""
        if not isinstance(stream, Bitstream):
            hint = ("; read a .fdc file with Bitstream.load(path)"
                    if isinstance(stream, str | bytes | os.PathLike) else "")
            raise TypeError(f"stream: expected a Bitstream, got {type(stream).__name__}{hint}")
        h = stream.header
        if not isinstance(h, StreamHeader):
            raise TypeError(f"stream.header: expected a StreamHeader, got {type(h).__name__}")
        self.check_stream(h)
        if h.frames_per_gain and stream.gains_db is None:
            raise ValueError(
                f"the stream's header has level gains (one per {h.frames_per_gain} frames) but "
                "the Bitstream has none: load files with Bitstream.load (or read_fdc_gains)")
        if h.level_bands and stream.band_gains_db is None:
            raise ValueError(
                f"the stream's header has band gains ({h.level_bands} bands) but the Bitstream "
                "has none: load files with Bitstream.load (or read_fdc_gains)")
        codes = check_codes(h, stream.codes, "stream.codes")
        frames = codes.shape[2]
        gains = check_gains(h, stream.gains_db, frames, "stream.gains_db")
        bands = check_band_gains(h, stream.band_gains_db, frames, "stream.band_gains_db")
        lo, hi = BAND_STEP_RANGE
        for name, raw, q, step, carried in [
            ("gains_db", stream.gains_db, gains, GAIN_STEP_DB, f"±{GAIN_LIMIT_DB:g} dB"),
            ("band_gains_db", stream.band_gains_db, bands, BAND_STEP_DB,
             f"{lo * BAND_STEP_DB:+g}..{hi * BAND_STEP_DB:+g} dB"),
        ]:
            if q is None or not q.size:
                continue
            r = np.asarray(raw, np.float64)
            off = np.abs(r - q)  # the quantizer clamps what a stream cannot carry
            if off.max() > step / 2 + 1e-6:
                bad = float(r.flat[int(np.argmax(off))])
                raise BitstreamError(f"stream.{name}: {bad:+g} dB is outside the {carried} "
                                     "a stream carries")
        return h, (codes,
                   None if gains is None else np.asarray(stream.gains_db, np.float32),
                   None if bands is None else np.asarray(stream.band_gains_db, np.float32))

    def decode(self, stream: Bitstream, nfe: int | None = None, seed: int | None = None,
               postfilter: bool | None = None, solver_name: str = "midpoint",
               chunk_seconds: float = DEFAULT_CHUNK_SECONDS, sigma: str = "band",
               envelope: bool = True) -> np.ndarray:
        """Decode to ``[channels, original_length]`` float32 at the original rate (``[samples]``
        for a stream encoded from ``[samples]``: :attr:`Bitstream.input_1d`).

        ``postfilter``: True/False, or None: on when ``nfe`` or ``seed`` is given, else as
        the model recommends (:meth:`use_postfilter`). ``nfe`` None: 6, ``seed`` None: 0.
        ``sigma`` and ``envelope``: postfilter options
        (:class:`flowdec.pipeline.postfilter.PostfilterSolve`,
        :func:`flowdec.pipeline.postfilter.postfilter_stage`; the defaults are the model's method).

        Raises ``TypeError`` when ``stream`` is not a :class:`Bitstream` and ``ValueError``
        (:class:`~flowdec.format.bitstream.BitstreamError` for the stream's contents) for codes that
        are not integers ``[channels, n_codebooks, frames]`` within the codebooks, gains that
        are NaN or beyond what a stream carries, or a bad ``nfe`` or ``chunk_seconds``."""
        h, chunk = self._checked_stream(stream)
        if not 0 < _as_float(chunk_seconds) < math.inf:
            raise ValueError(f"chunk_seconds: must be > 0 (seconds), got {chunk_seconds!r}")
        on, nfe, seed = self.postfilter_settings(postfilter, nfe, seed)
        if on:
            check_int(nfe, "nfe", 1, 10_000)
        out = list(self.decode_chunks(iter([chunk]), h, nfe, seed,
                                      on, solver_name, chunk_seconds, sigma, envelope))
        y = np.concatenate(out, axis=1) if out else np.zeros((h.channels, 0), np.float32)
        t48 = self.length_at_codec_rate(h)
        y = fit_length(y, t48)
        y = fit_length(resample(y, CODEC_RATE, h.original_rate), h.original_length)
        return y[0] if stream.input_1d and h.channels == 1 else y

    def length_at_codec_rate(self, h: StreamHeader) -> int:
        return int(-(-h.original_length * CODEC_RATE // h.original_rate))

    def decode_chunks(self, code_chunks: Iterable[CodeChunk], h: StreamHeader,
                      nfe: int | None = None,
                      seed: int | None = None, postfilter: bool | None = None,
                      solver_name: str = "midpoint",
                      chunk_seconds: float = DEFAULT_CHUNK_SECONDS, sigma: str = "band",
                      envelope: bool = True) -> Iterator[np.ndarray]:
        """Yield 48 kHz audio ``[channels, n]`` for successive (codes, gains, band gains)
        chunks (bounded memory). With band gains, the plain decoder output first gets the
        input's band balance (:class:`flowdec.dsp.band_level.BandGainStage`); with level gains,
        each gain block of the output (plain or postfiltered) is then brought to the input's
        loudness (:class:`flowdec.dsp.level.OutputLevel`). ``nfe``, ``seed``, ``postfilter``: as
        for :meth:`decode`."""
        chunk = self._chunk_frames(chunk_seconds)
        on, nfe, seed = self.postfilter_settings(postfilter, nfe, seed)
        chain = self.decode_chain(
            h.channels, h.n_codebooks, chunk, h.frames_per_gain, h.level_bands, postfilter=on,
            nfe=nfe, seed=seed, solver_name=solver_name, sigma=sigma, envelope=envelope,
            post_chunk_frames=(int(chunk_seconds * CODEC_RATE / self.postfilter_card().hop)
                               if on else None))
        for codes, gains, band_gains in code_chunks:
            self._check_codes(codes)
            chain.add_gains(gains, band_gains)
            # at most a chunk at a time, however long the packet: memory stays bounded
            for a in range(0, codes.shape[2], chunk):
                yield chain.push(codes[:, :, a : a + chunk].astype(np.int64))
        yield chain.finish()

    def roundtrip(self, audio: npt.ArrayLike, sample_rate: float, bitrate: float = 6.0,
                  nfe: int | None = None, seed: int | None = None,
                  postfilter: bool | None = None,
                  frames_per_gain: int = FILE_FRAMES_PER_GAIN, level_bands: int = 0
                  ) -> np.ndarray:
        """Encode then decode; returns audio shaped like the input, at its rate (``nfe``,
        ``seed``, ``postfilter``: as for :meth:`decode`).

        ``frames_per_gain``, ``level_bands``: level side information (see :meth:`encode`); a
        :class:`flowdec.Stream` uses :data:`~flowdec.format.bitstream.LIVE_FRAMES_PER_GAIN` and no
        level bands."""
        stream = self.encode(audio, sample_rate, bitrate, frames_per_gain=frames_per_gain,
                             level_bands=level_bands)
        return self.decode(stream, nfe, seed, postfilter)


def example_clip() -> Path:
    """Path of the bundled example clip (see ``flowdec/data/LICENSE-example.md``)."""
    return Path(__file__).resolve().parent / "data" / "example.flac"

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
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt

from . import features
from .audio import CODEC_RATE, as_audio, check_int, check_rate, fit_length, resample
from .band_level import BAND_STEP_DB, BAND_STEP_RANGE, BandGainStage, BandLevelMeter
from .batching import Batcher, BatchingSession
from .bitstream import (
    FILE_FRAMES_PER_GAIN,
    FILE_FRAMES_PER_PACKET,
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
from .level import LevelMeter, OutputLevel
from .model_files import (
    STREAM_DECODER,
    ModelError,
    PostfilterCard,
    foreign_model_message,
    load_cards,
    resolve,
)
from .postfilter import DEFAULT_NFE, DEFAULT_SEED, PostfilterSolve, make_stage, stft_config
from .sessions import DecoderNet, DecoderStreamNet, EncoderNet, PostfilterNet
from .stages import (
    DecoderStage,
    EncoderStage,
    PostfilterStage,
    StreamingDecoderStage,
)

DEFAULT_CHUNK_SECONDS = 10.0
"""Offline processing unit: memory is bounded by this, whatever the file length."""
MAX_PACKET_SECONDS = 60.0
"""Longest packet a stream may declare (flowdec writes 8-s packets to files, 0.2-s ones
live): a packet is read whole, so this bounds the memory one takes (255 channels of 60 s at
7.5 kbit/s: 14 MB of codes)."""
MAX_GAIN_BLOCK_SECONDS = 1.0
"""Longest level-gain block a stream may declare (flowdec writes 1-s blocks to files, 40-ms
ones live): the decoder holds a block's audio until its level is known."""


CodeChunk = tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None"]
"""Codes ``[C, n_q, k]``, their level gains ``[C, blocks]`` in dB (None: no gains) and band
gains ``[C, blocks, bands]`` in dB (None: no level bands)."""


@dataclass
class Bitstream:
    """Codes of a whole clip plus the header that describes them.

    ``codes`` is ``[channels, n_codebooks, frames]`` uint16 at ``header.frame_rate``;
    ``gains_db`` the level gains ``[channels, header.gain_blocks(frames)]`` in dB (see
    :mod:`flowdec.level`), or None for a stream without them; ``band_gains_db`` the band
    gains ``[channels, header.gain_blocks(frames), header.level_bands]`` in dB (see
    :mod:`flowdec.band_level`), or None for a stream without level bands. ``input_1d``: encoded
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


class Codec:
    """A loaded model: ONNX sessions created once and reused.

    Args:
        model: a model folder, a shipped model name, or None for the shipped default.
        device: "cpu" or "cuda" (onnxruntime-gpu).
        threads: onnxruntime intra-op threads (default: up to 4, the machine's cores).
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, device: str = "cpu",
                 threads: int | None = None) -> None:
        self.folder = resolve(model)
        self.card, self.post_card = load_cards(self.folder)
        self.device = device
        self.threads = threads
        self.encoder = EncoderNet(self.folder / "encoder.onnx", device, threads)
        self.decoder = DecoderNet(self.folder / "decoder.onnx", device, threads)
        self.decoder_stream = (
            DecoderStreamNet(self.folder / STREAM_DECODER, device, threads)
            if (self.folder / STREAM_DECODER).is_file() else None
        )
        self.postfilter_net = (
            PostfilterNet(self.folder / "postfilter.onnx", device, threads)
            if self.post_card is not None else None
        )
        if threads:
            features.set_num_threads(threads)

    @classmethod
    def load(cls, model: str | os.PathLike[str] | None = None, device: str = "cpu",
             threads: int | None = None) -> Codec:
        return cls(model, device, threads)

    def share_batches(self, batcher: Batcher) -> None:
        """Route every network call through ``batcher``: concurrent calls from its participant
        threads with matching shapes run as one batch (see :mod:`flowdec.batching`)."""
        for net in (self.encoder, self.decoder, self.decoder_stream, self.postfilter_net):
            if net is not None and not isinstance(net.session, BatchingSession):
                net.session = batcher.wrap(net.session)

    # -- facts -----------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.card.model_id

    @property
    def bitrates(self) -> list[float]:
        """Available bitrates in kbit/s per channel, ascending."""
        return sorted(self.card.bitrates_kbps.values())

    @property
    def has_postfilter(self) -> bool:
        return self.postfilter_net is not None

    @property
    def postfilter_recommended(self) -> bool:
        """Whether decoding uses the postfilter by default: the model has one and its card's
        evaluation found it better than the plain codec (``recommended`` in the card)."""
        return self.post_card is not None and self.post_card.recommended

    def use_postfilter(self, postfilter: bool | None, nfe: int | None = None,
                       seed: int | None = None) -> bool:
        """Whether the postfilter runs: the one rule of every entry point (:meth:`decode`,
        the file verbs, :class:`flowdec.Stream`, ``flowdec live``, ``FlowDecEffect``).

        True/False decide. None (the default) runs it when a postfilter setting (``nfe`` or
        ``seed``, i.e. ``--nfe``/``--seed``) is given, since asking for one asks for the
        postfilter; else as the model card recommends (:attr:`postfilter_recommended`).

        Example:
            >>> codec.use_postfilter(None), codec.use_postfilter(None, nfe=4)  # doctest: +SKIP
            (False, True)
        """
        if postfilter is not None:
            return bool(postfilter)
        return nfe is not None or seed is not None or self.postfilter_recommended

    def postfilter_settings(self, postfilter: bool | None, nfe: int | None = None,
                            seed: int | None = None) -> tuple[bool, int, int]:
        """``(runs, nfe, seed)``: :meth:`use_postfilter`, and the settings with
        :data:`~flowdec.postfilter.DEFAULT_NFE` and :data:`~flowdec.postfilter.DEFAULT_SEED`
        for those not given."""
        return (self.use_postfilter(postfilter, nfe, seed),
                DEFAULT_NFE if nfe is None else nfe, DEFAULT_SEED if seed is None else seed)

    # -- stages ----------------------------------------------------------------------------
    def encoder_stage(self, channels: int, chunk_frames: int) -> EncoderStage:
        return EncoderStage(self.encoder, self.card, channels, chunk_frames)

    def decoder_stage(self, channels: int, n_codebooks: int, chunk_frames: int
                      ) -> DecoderStage | StreamingDecoderStage:
        """Codes → audio in pieces: with the model's streaming decoder when it has one (each
        frame decoded once, its context carried as state), else by re-running the decoder
        over each chunk's context."""
        if self.decoder_stream is not None:
            return StreamingDecoderStage(self.decoder_stream, self.card, channels, n_codebooks,
                                         chunk_frames)
        return DecoderStage(self.decoder, self.card, channels, n_codebooks, chunk_frames)

    def stft_config(self) -> features.STFTConfig:
        return stft_config(self._post())

    def _post(self) -> PostfilterCard:
        if self.post_card is None:
            raise ValueError(f"model {self.folder} has no postfilter; use postfilter=False")
        return self.post_card

    def postfilter_stage(self, channels: int, chunk_frames: int, nfe: int, seed: int,
                         solver_name: str = "midpoint", context: int = 16,
                         sigma: str = "band", envelope: bool = True) -> PostfilterStage:
        """A postfilter stage (``chunk_frames`` and ``context`` in STFT frames of hop 384; see
        :class:`flowdec.postfilter.PostfilterSolve`)."""
        net = self.postfilter_net
        assert net is not None
        solve = PostfilterSolve(net, self._post(), self.device, nfe, seed, solver_name, sigma)
        return make_stage(solve, self._post(), channels, chunk_frames, context, envelope)

    # -- whole clips -----------------------------------------------------------------------
    def encode(self, audio: npt.ArrayLike, sample_rate: float, bitrate: float = 6.0,
               chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
               frames_per_gain: int = FILE_FRAMES_PER_GAIN, level_bands: int = 0) -> Bitstream:
        """Encode ``[channels, samples]`` (or mono ``[samples]``) at ``sample_rate`` Hz.

        ``frames_per_gain``: codec frames per level-gain block (see :mod:`flowdec.level`);
        0 leaves the gains out (and skips the decoder run that measures them).
        ``level_bands``: also send band gains in that many ERB bands per gain block
        (:mod:`flowdec.band_level`; :data:`~flowdec.bitstream.FILE_LEVEL_BANDS` = 24 costs
        96 bit/s per channel); 0: none."""
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
        cf = self._chunk_frames(chunk_seconds)
        enc = self.encoder_stage(channels, cf)
        if not frames_per_gain:
            for x in audio48:
                codes = enc.push(x)[:, :n_codebooks]
                if codes.shape[2]:
                    yield codes, None, None
            yield enc.finish()[:, :n_codebooks], None, None
            return
        hop = self.card.hop
        dec = self.decoder_stage(channels, n_codebooks, cf)
        meter = LevelMeter(channels, hop, frames_per_gain)
        band_meter = band_stage = None
        if level_bands:
            band_meter = BandLevelMeter(channels, hop, frames_per_gain, level_bands)
            band_stage = BandGainStage(channels, hop, frames_per_gain, level_bands)
        bands_held = np.zeros((channels, 0, level_bands), np.float32)  # band gains measured
        held = np.zeros((channels, n_codebooks, 0), np.int64)  # codes awaiting their gains

        def decoded(y: np.ndarray) -> np.ndarray:
            """The plain decoder output as the decoder will see it (band gains applied)."""
            nonlocal bands_held
            if band_meter is None or band_stage is None:
                return y
            band_meter.add_output(y)
            g = band_meter.gains()
            band_stage.add_gains(g)
            bands_held = np.concatenate([bands_held, g], axis=1)
            return band_stage.push(y)

        def chunk(codes: np.ndarray, gains: np.ndarray) -> CodeChunk:
            nonlocal bands_held
            n = gains.shape[1]
            bands = bands_held[:, :n] if level_bands else None
            bands_held = bands_held[:, n:]
            return codes, gains, bands

        for x in audio48:
            meter.add_input(x)
            if band_meter is not None:
                band_meter.add_input(x)
            codes = enc.push(x)[:, :n_codebooks]
            meter.add_output(decoded(dec.push(codes)))
            held = np.concatenate([held, codes], axis=2)
            gains = meter.gains()
            if gains.shape[1]:
                k = gains.shape[1] * frames_per_gain
                yield chunk(held[:, :, :k], gains)
                held = held[:, :, k:]
        codes = enc.finish()[:, :n_codebooks]
        frames = enc.next_frame
        meter.add_output(decoded(dec.push(codes)))
        meter.add_output(decoded(dec.finish()))
        if band_meter is not None and band_stage is not None:
            g = band_meter.finish(frames)
            band_stage.add_gains(g)
            bands_held = np.concatenate([bands_held, g], axis=1)
            meter.add_output(band_stage.finish(frames * hop))
        yield chunk(np.concatenate([held, codes], axis=2), meter.finish(frames))

    def header(self, channels: int, original_rate: int, original_length: int, n_codebooks: int,
               total_frames: int = 0, frames_per_packet: int = FILE_FRAMES_PER_PACKET,
               frames_per_gain: int = FILE_FRAMES_PER_GAIN, level_bands: int = 0
               ) -> StreamHeader:
        c = self.card
        return StreamHeader(
            model_id=c.model_id, sample_rate=c.sample_rate, channels=channels,
            original_rate=original_rate, original_length=original_length,
            frame_rate_num=c.sample_rate, frame_rate_den=c.hop, n_codebooks=n_codebooks,
            bits_per_code=c.bits_per_code, frames_per_packet=frames_per_packet,
            total_frames=total_frames, frames_per_gain=frames_per_gain, level_bands=level_bands,
        )

    def check_stream(self, header: StreamHeader, name: str = "the stream") -> None:
        """Refuse a stream encoded by another model (:class:`ModelError`, one line that
        names the model it needs and how to load it), or whose header does not fit this
        model's card or flowdec's limits (:class:`~flowdec.bitstream.BitstreamError`: the
        file is damaged or was not written by flowdec): codec rate, frame rate and bits per
        code as the card says, at most the card's codebooks, an original rate flowdec
        encodes (8 to 768 kHz), packets of at most :data:`MAX_PACKET_SECONDS` and gain
        blocks of at most :data:`MAX_GAIN_BLOCK_SECONDS`.

        Example:
            >>> codec = Codec.load()
            >>> h = codec.header(channels=1, original_rate=10**8, original_length=1,
            ...                  n_codebooks=8)
            >>> codec.check_stream(h, "x.fdc")
            Traceback (most recent call last):
            flowdec.bitstream.BitstreamError: x.fdc: header is corrupt (original rate ...
        """
        if header.model_id != self.model_id:
            raise ModelError(f"{name}: {foreign_model_message(header.model_id, self.card)}")
        c, h = self.card, header
        frame_rate = Fraction(c.sample_rate, c.hop)
        max_packet = int(MAX_PACKET_SECONDS * frame_rate)
        max_block = int(MAX_GAIN_BLOCK_SECONDS * frame_rate)
        problem = None
        if h.sample_rate != c.sample_rate:
            problem = f"codec rate {h.sample_rate} Hz, the model's is {c.sample_rate} Hz"
        elif h.frame_rate != frame_rate:
            problem = (f"{float(h.frame_rate):g} frames/s, the model's is "
                       f"{float(frame_rate):g}")
        elif h.bits_per_code != c.bits_per_code:
            problem = f"{h.bits_per_code} bits per code, the model's is {c.bits_per_code}"
        elif h.n_codebooks > c.codebooks:
            problem = f"{h.n_codebooks} codebooks, the model has {c.codebooks}"
        elif h.frames_per_packet > max_packet:
            problem = (f"packets of {h.frames_per_packet} frames, more than "
                       f"{MAX_PACKET_SECONDS:g} s ({max_packet})")
        elif h.frames_per_gain > max_block:
            problem = (f"gain blocks of {h.frames_per_gain} frames, more than "
                       f"{MAX_GAIN_BLOCK_SECONDS:g} s ({max_block})")
        else:
            try:
                check_rate(h.original_rate)
            except ValueError as e:
                problem = f"original rate {h.original_rate} Hz: " + str(e).split(": ", 1)[-1]
        if problem is not None:
            raise BitstreamError(f"{name}: header is corrupt ({problem}); the file is damaged "
                                 "or was not written by flowdec: re-encode it")

    @property
    def codebook_size(self) -> int:
        """Entries per codebook: every code is below this."""
        return int(self.card.raw.get("codebook_size", 1 << self.card.bits_per_code))

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
        (:class:`flowdec.postfilter.PostfilterSolve`, :func:`flowdec.postfilter.make_stage`;
        the defaults are the model's method).

        Raises ``TypeError`` when ``stream`` is not a :class:`Bitstream` and ``ValueError``
        (:class:`~flowdec.bitstream.BitstreamError` for the stream's contents) for codes that
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
        input's band balance (:class:`flowdec.band_level.BandGainStage`); with level gains,
        each gain block of the output (plain or postfiltered) is then brought to the input's
        loudness (:class:`flowdec.level.OutputLevel`). ``nfe``, ``seed``, ``postfilter``: as
        for :meth:`decode`."""
        chunk = self._chunk_frames(chunk_seconds)
        dec = self.decoder_stage(h.channels, h.n_codebooks, chunk)
        post = None
        on, nfe, seed = self.postfilter_settings(postfilter, nfe, seed)
        if on:
            pf_frames = int(chunk_seconds * CODEC_RATE / self._post().hop)
            post = self.postfilter_stage(h.channels, pf_frames, nfe, seed, solver_name,
                                         sigma=sigma, envelope=envelope)
        level = (OutputLevel(h.channels, self.card.hop, h.frames_per_gain)
                 if h.frames_per_gain else None)
        bands = (BandGainStage(h.channels, self.card.hop, h.frames_per_gain, h.level_bands)
                 if h.level_bands else None)
        empty = np.zeros((h.channels, 0), np.float32)

        def out(y: np.ndarray, z: np.ndarray) -> np.ndarray:
            return level.push(y, z) if level is not None else z

        for codes, gains, band_gains in code_chunks:
            self._check_codes(codes)
            if level is not None and gains is not None:
                level.add_gains(gains)
            if bands is not None and band_gains is not None:
                bands.add_gains(band_gains)
            # at most a chunk at a time, however long the packet: memory stays bounded
            for a in range(0, codes.shape[2], chunk):
                y = dec.push(codes[:, :, a : a + chunk].astype(np.int64))
                if bands is not None:
                    y = bands.push(y)
                yield out(y, post.push(y) if post is not None else y)
        y = dec.finish()
        if bands is not None:
            y = np.concatenate([bands.push(y), bands.finish(dec.received * self.card.hop)], axis=1)
        yield out(y, post.push(y) if post is not None else y)
        if post is not None:
            yield out(empty, post.finish())
        if level is not None:
            yield level.finish(dec.received)

    def roundtrip(self, audio: npt.ArrayLike, sample_rate: float, bitrate: float = 6.0,
                  nfe: int | None = None, seed: int | None = None,
                  postfilter: bool | None = None,
                  frames_per_gain: int = FILE_FRAMES_PER_GAIN, level_bands: int = 0
                  ) -> np.ndarray:
        """Encode then decode; returns audio shaped like the input, at its rate (``nfe``,
        ``seed``, ``postfilter``: as for :meth:`decode`).

        ``frames_per_gain``, ``level_bands``: level side information (see :meth:`encode`); a
        :class:`flowdec.Stream` uses :data:`~flowdec.bitstream.LIVE_FRAMES_PER_GAIN` and no
        level bands."""
        stream = self.encode(audio, sample_rate, bitrate, frames_per_gain=frames_per_gain,
                             level_bands=level_bands)
        return self.decode(stream, nfe, seed, postfilter)


def example_clip() -> Path:
    """Path of the bundled example clip (see ``flowdec/data/LICENSE-example.md``)."""
    return Path(__file__).resolve().parent / "data" / "example.flac"

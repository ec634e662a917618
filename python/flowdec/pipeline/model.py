"""A loaded model: its ONNX sessions, its cards, and the factories of its stages and chains.

:class:`Model` is what every path shares — :class:`flowdec.Codec` (the clip API, a
:class:`Model` with ``encode``/``decode``), :class:`flowdec.Stream`, the file verbs, the
effect and the plugin backend all build their stages and chains here, so each is built in
one place (:mod:`flowdec.pipeline.chain`).

Example:
    >>> from flowdec.pipeline.model import Model
    >>> m = Model()                                             # the shipped model
    >>> chain = m.decode_chain(channels=2, n_codebooks=8, chunk_frames=750)
"""

from __future__ import annotations

import os
from fractions import Fraction

from ..audio import check_rate
from ..dsp import features
from ..dsp.band_level import BandGainStage
from ..format.bitstream import (
    FILE_FRAMES_PER_GAIN,
    FILE_FRAMES_PER_PACKET,
    BitstreamError,
    StreamHeader,
)
from ..model.batching import Batcher, BatchingSession
from ..model.files import (
    STREAM_DECODER,
    CodecCard,
    ModelError,
    PostfilterCard,
    foreign_model_message,
    load_cards,
    resolve,
)
from ..model.sessions import DecoderNet, DecoderStreamNet, EncoderNet, PostfilterNet
from .chain import DecodeChain, EncodeChain
from .postfilter import (
    DEFAULT_CONTEXT,
    DEFAULT_NFE,
    DEFAULT_SEED,
    postfilter_stage,
    stft_config,
)
from .stages import DecoderStage, EncoderStage, PostfilterStage, StreamingDecoderStage
from .stream_encoder import StreamingEncoderStage, load_stream_encoder

MAX_PACKET_SECONDS = 60.0
"""Longest packet a stream may declare (flowdec writes 8-s packets to files, 0.2-s ones
live): a packet is read whole, so this bounds the memory one takes (255 channels of 60 s at
7.5 kbit/s: 14 MB of codes)."""
MAX_GAIN_BLOCK_SECONDS = 1.0
"""Longest level-gain block a stream may declare (flowdec writes 1-s blocks to files, 40-ms
ones live): the decoder holds a block's audio until its level is known."""


class Model:
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
        self.encoder_stream = load_stream_encoder(self.folder, device, threads)
        self.postfilter_net = (
            PostfilterNet(self.folder / "postfilter.onnx", device, threads)
            if self.post_card is not None else None
        )
        if threads:
            features.set_num_threads(threads)

    def share_batches(self, batcher: Batcher) -> None:
        """Route every network call through ``batcher``: concurrent calls from its participant
        threads with matching shapes run as one batch (see :mod:`flowdec.model.batching`)."""
        for net in (self.encoder, self.encoder_stream, self.decoder, self.decoder_stream,
                    self.postfilter_net):
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

    @property
    def codebook_size(self) -> int:
        """Entries per codebook: every code is below this."""
        return int(self.card.raw.get("codebook_size", 1 << self.card.bits_per_code))

    def use_postfilter(self, postfilter: bool | None, nfe: int | None = None,
                       seed: int | None = None) -> bool:
        """Whether the postfilter runs: the one rule of every entry point
        (:meth:`flowdec.Codec.decode`, the file verbs, :class:`flowdec.Stream`,
        ``flowdec live``, ``FlowDecEffect``).

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
                            seed: int | None = None, default_nfe: int = DEFAULT_NFE
                            ) -> tuple[bool, int, int]:
        """``(runs, nfe, seed)``: :meth:`use_postfilter`, and the settings with
        ``default_nfe`` (files: :data:`~flowdec.pipeline.postfilter.DEFAULT_NFE`; streams
        their own) and :data:`~flowdec.pipeline.postfilter.DEFAULT_SEED` for those not
        given."""
        return (self.use_postfilter(postfilter, nfe, seed),
                default_nfe if nfe is None else nfe, DEFAULT_SEED if seed is None else seed)

    # -- stages ----------------------------------------------------------------------------
    def encoder_stage(self, channels: int, chunk_frames: int | None
                      ) -> EncoderStage | StreamingEncoderStage:
        """48 kHz audio → codes in pieces of ``chunk_frames`` frames (None: all that is final
        at each push): with the model's streaming encoder when it has one (each hop encoded
        once, the same codes for any split; :mod:`flowdec.pipeline.stream_encoder`), else by
        re-running the encoder over each chunk's context."""
        if self.encoder_stream is not None:
            return StreamingEncoderStage(self.encoder_stream, self.card, channels, chunk_frames)
        return EncoderStage(self.encoder, self.card, channels, chunk_frames)

    def decoder_stage(self, channels: int, n_codebooks: int, chunk_frames: int | None
                      ) -> DecoderStage | StreamingDecoderStage:
        """Codes → audio in pieces: with the model's streaming decoder when it has one (each
        frame decoded once, its context carried as state), else by re-running the decoder
        over each chunk's context."""
        if self.decoder_stream is not None:
            return StreamingDecoderStage(self.decoder_stream, self.card, channels, n_codebooks,
                                         chunk_frames)
        return DecoderStage(self.decoder, self.card, channels, n_codebooks, chunk_frames)

    def postfilter_card(self) -> PostfilterCard:
        """The postfilter's card (``ValueError`` for a model without a postfilter)."""
        if self.post_card is None:
            raise ValueError(f"model {self.folder} has no postfilter; use postfilter=False")
        return self.post_card

    def stft_config(self) -> features.STFTConfig:
        return stft_config(self.postfilter_card())

    def postfilter_stage(self, channels: int, chunk_frames: int, nfe: int, seed: int,
                         solver_name: str = "midpoint", context: int = DEFAULT_CONTEXT,
                         sigma: str = "band", envelope: bool = True) -> PostfilterStage:
        """The postfilter stage (:func:`flowdec.pipeline.postfilter.postfilter_stage`)."""
        card = self.postfilter_card()
        assert self.postfilter_net is not None
        return postfilter_stage(self.postfilter_net, card, self.device, channels, chunk_frames,
                                nfe, seed, solver_name, sigma, context, envelope)

    # -- chains ----------------------------------------------------------------------------
    def encode_chain(self, channels: int, n_codebooks: int, chunk_frames: int | None,
                     frames_per_gain: int = 0, level_bands: int = 0) -> EncodeChain:
        """48 kHz audio → codes, with the level gains (``frames_per_gain`` > 0) and band
        gains (``level_bands`` > 0) measured by the plain decoder run alongside
        (:class:`flowdec.pipeline.chain.EncodeChain`). ``chunk_frames``: codec frames per
        network run (None: one run per push)."""
        dec = (self.decoder_stage(channels, n_codebooks, chunk_frames)
               if frames_per_gain else None)
        return EncodeChain(self.encoder_stage(channels, chunk_frames), dec, channels,
                           n_codebooks, self.card.hop, frames_per_gain, level_bands)

    def decode_chain(self, channels: int, n_codebooks: int, chunk_frames: int | None,
                     frames_per_gain: int = 0, level_bands: int = 0, *, decoder: bool = True,
                     postfilter: bool = False, nfe: int = DEFAULT_NFE, seed: int = DEFAULT_SEED,
                     solver_name: str = "midpoint", sigma: str = "band",
                     envelope: bool = True, context: int = DEFAULT_CONTEXT,
                     post_chunk_frames: int | None = None) -> DecodeChain:
        """Codes → 48 kHz audio (:class:`flowdec.pipeline.chain.DecodeChain`): the decoder
        (``decoder=False``: the chain takes its output), band gains (``level_bands``),
        the postfilter (``postfilter``; ``post_chunk_frames`` and ``context`` in STFT frames,
        None: the codec chunk), the output level (``frames_per_gain``)."""
        hop = self.card.hop
        dec = self.decoder_stage(channels, n_codebooks, chunk_frames) if decoder else None
        bands = (BandGainStage(channels, hop, frames_per_gain, level_bands)
                 if level_bands else None)
        post = None
        if postfilter:
            if post_chunk_frames is None:
                if chunk_frames is None:
                    raise ValueError("decode_chain: a chain that runs once per push needs the "
                                     "postfilter's post_chunk_frames")
                post_chunk_frames = chunk_frames * hop // self.postfilter_card().hop
            post = self.postfilter_stage(channels, post_chunk_frames, nfe, seed, solver_name,
                                         context, sigma, envelope)
        return DecodeChain(channels, dec, bands, post, hop, frames_per_gain)

    # -- streams ---------------------------------------------------------------------------
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
        """Refuse a stream this model cannot decode: :func:`check_stream` with its card.

        Example:
            >>> codec = Model()
            >>> h = codec.header(channels=1, original_rate=10**8, original_length=1,
            ...                  n_codebooks=8)
            >>> codec.check_stream(h, "x.fdc")
            Traceback (most recent call last):
            flowdec.format.bitstream.BitstreamError: x.fdc: header is corrupt (original rate ...
        """
        check_stream(header, self.card, name)


def check_stream(header: StreamHeader, card: CodecCard, name: str = "the stream") -> None:
    """Refuse a stream encoded by another model (:class:`ModelError`, one line that
    names the model it needs and how to load it), or whose header does not fit the
    model's card or flowdec's limits (:class:`~flowdec.format.bitstream.BitstreamError`: the
    file is damaged or was not written by flowdec): codec rate, frame rate and bits per
    code as the card says, at most the card's codebooks, an original rate flowdec
    encodes (8 to 768 kHz), packets of at most :data:`MAX_PACKET_SECONDS` and gain
    blocks of at most :data:`MAX_GAIN_BLOCK_SECONDS`.
    """
    if header.model_id != card.model_id:
        raise ModelError(f"{name}: {foreign_model_message(header.model_id, card)}")
    c, h = card, header
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

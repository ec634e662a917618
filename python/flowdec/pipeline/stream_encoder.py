"""The streaming encoder: each hop of audio is analysed and encoded once, the encoder's
context carried as network state (``encoder_stream.onnx``, written by
:func:`flowdec.train.export.export_stream`).

:class:`EncoderStage` re-runs ``encoder.onnx`` over 0.3 s of past context for every chunk,
so a chunk of a few frames costs as much as one of many. :class:`StreamingEncoderStage`
has the same interface and emits the same frames at the same moments in the same pieces,
but feeds each hop to the network once.

Exactness: the streaming graph computes every frame with the same arithmetic whatever the
number of frames per call (``codec_model.StreamEncoder``), so its codes do not depend on
how the audio is pushed, bit for bit, and equal the codes of one call over the whole signal
(:func:`encode_offline`). Every path gets its encoder from
:meth:`flowdec.pipeline.model.Model.encoder_stage` (clip API and files in 10-s chunks, the streaming
engine a chunk at a time), so offline and live codes are the same. They are not
bit-identical to ``encoder.onnx``'s: the two graphs sum in different orders, and a frame
whose best codeword wins by a float rounding can pick another one (then the later levels of
that frame follow); ``benchmarks/bench_latency.py --codes`` counts them (about 1 % of
frames). The decoder is the same, so streams of either decode alike.

Example:
    >>> import numpy as np, flowdec
    >>> stage = flowdec.Codec.load().encoder_stage(channels=1, chunk_frames=6)
    >>> type(stage).__name__
    'StreamingEncoderStage'
    >>> x = np.zeros((1, 4000), np.float32)
    >>> parts = [stage.push(x[:, :1000]), stage.push(x[:, 1000:]), stage.finish()]
    >>> [p.shape[2] for p in parts]  # a 6-frame piece needs 8 hops; 4000 samples are 6.25
    [0, 0, 8]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model.files import CodecCard
from ..model.sessions import make_session
from .stages import UNKNOWN_END, EncoderStage

RUN_FRAMES = 750
"""Most frames one network run covers unless the chunk is longer (10 s: bounded memory)."""
STREAM_ENCODER = "encoder_stream.onnx"
"""The streaming encoder; it holds no weights of its own but points into ``encoder.onnx``."""


class EncoderStreamNet:
    """``encoder_stream.onnx``: audio [B, N·hop] (hops [first, first + N)) and the carried
    state → codes [B, n_q, N] of frames [first − delay, …) and the new state. ``end`` is
    the stream's frame count (a large number while unknown): frames from there on are the
    offline encoder's zero padding."""

    state_inputs = ("analysis_state", "trunk_state")

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None) -> None:
        self.session = make_session(path, device, threads)
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.state_shapes = [tuple(int(d) for d in shapes[n][1:]) for n in self.state_inputs]
        self.hop = self.state_shapes[0][0]

    def initial_state(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, *s), np.float32) for s in self.state_shapes]

    def __call__(self, x: np.ndarray, first: int, end: int, state: list[np.ndarray]
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
        b = x.shape[0]
        feeds = {"audio": np.ascontiguousarray(x, np.float32),
                 "first": np.full(b, first, np.int64), "end": np.full(b, end, np.int64)}
        feeds.update(zip(self.state_inputs, state, strict=True))
        out = self.session.run(None, feeds)
        return np.asarray(out[0]), [np.asarray(s) for s in out[1:]]


def load_stream_encoder(folder: Path, device: str = "cpu", threads: int | None = None
                        ) -> EncoderStreamNet | None:
    """The model folder's streaming encoder, or None for a folder without one."""
    path = Path(folder) / STREAM_ENCODER
    return EncoderStreamNet(path, device, threads) if path.is_file() else None


class StreamingEncoderStage:
    """:class:`~flowdec.pipeline.stages.EncoderStage` with the streaming encoder: 48 kHz audio
    [C, n] → codes [C, n_q, k] (int64), each hop encoded once.

    ``push`` returns whole pieces of ``chunk`` frames once the audio they need (``future``
    frames beyond, :attr:`latency` samples) has arrived, or with ``chunk_frames=None`` every
    frame that is final; ``finish()`` ends the stream with ceil(T / hop) + 1 frames (so that
    the decoder's output covers every input sample), as ``EncoderStage`` does. ``chunk``,
    ``next_frame`` and ``future`` mean what they mean there. The network runs once per push
    that completes a piece, on every whole hop received so far."""

    def __init__(self, net: EncoderStreamNet, card: CodecCard, channels: int,
                 chunk_frames: int | None) -> None:
        if net.hop != card.hop:
            raise ValueError(f"the streaming encoder works in hops of {net.hop} samples, the "
                             f"card says {card.hop}: the model folder is inconsistent")
        self.net, self.card, self.channels = net, card, channels
        self.hop = card.hop
        self.future = card.encoder_future_frames
        self.delay = self.future  # the network emits frame k once it has hop k + delay
        self.chunk = None if chunk_frames is None else max(1, chunk_frames)
        self.reset()

    @property
    def latency(self) -> int:
        """Samples past a frame's end that must have arrived before its code is returned."""
        return self.future * self.hop

    def reset(self) -> None:
        self.state = self.net.initial_state(self.channels)
        self.pending = np.zeros((self.channels, 0), np.float32)  # samples not yet fed
        self.fed = 0  # hops given to the network
        self.codes = np.zeros((self.channels, self.card.codebooks, 0), np.int64)
        self.codes_start = 0  # frame of codes[:, :, 0]
        self.received = 0
        self.next_frame = 0

    total_frames = staticmethod(EncoderStage.total_frames)

    def _feed(self, hops: int, end: int) -> None:
        """Give the network the next ``hops`` hops of ``pending`` (zeros past its end), at
        most ``max(chunk, RUN_FRAMES)`` per run (bounded memory on long pushes; the codes do
        not depend on the split)."""
        step = max(self.chunk or 1, RUN_FRAMES) * self.hop
        n = hops * self.hop
        x = self.pending[:, :n]
        if x.shape[1] < n:
            x = np.pad(x, ((0, 0), (0, n - x.shape[1])))
        self.pending = self.pending[:, n:]
        parts = [self.codes]
        for i in range(0, n, step):
            piece = x[:, i : i + step]
            codes, self.state = self.net(piece, self.fed, end, self.state)
            first = self.fed - self.delay
            self.fed += piece.shape[1] // self.hop
            parts.append(codes[:, :, max(0, -first) :])
        self.codes = np.concatenate(parts, axis=2)

    def _take(self, upto: int) -> np.ndarray:
        out = self.codes[:, :, self.next_frame - self.codes_start : upto - self.codes_start]
        self.codes = self.codes[:, :, upto - self.codes_start :]
        self.codes_start = self.next_frame = upto
        return out

    def push(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        self.pending = np.concatenate([self.pending, audio], axis=1)
        self.received += audio.shape[1]
        final = self.received // self.hop - self.future  # frames whose audio has all arrived
        out = []
        while final > self.next_frame and (self.chunk is None
                                           or final >= self.next_frame + self.chunk):
            if self.fed < final + self.delay:
                self._feed(self.received // self.hop - self.fed, UNKNOWN_END)
            out.append(self._take(final if self.chunk is None else self.next_frame + self.chunk))
        return _cat(out, self.channels, self.card.codebooks)

    def finish(self) -> np.ndarray:
        k = self.total_frames(self.received, self.hop)
        self._feed(k + self.delay - self.fed, k)
        out = []
        while self.next_frame < k:
            step = k if self.chunk is None else self.next_frame + self.chunk
            out.append(self._take(min(step, k)))
        return _cat(out, self.channels, self.card.codebooks)


def _cat(parts: list[np.ndarray], channels: int, codebooks: int) -> np.ndarray:
    if not parts:
        return np.zeros((channels, codebooks, 0), np.int64)
    return np.concatenate(parts, axis=2)


def encode_offline(net: EncoderStreamNet, card: CodecCard, audio: np.ndarray) -> np.ndarray:
    """Codes of 48 kHz audio [C, T] from one call of the streaming encoder over the whole
    signal (zero-padded to ceil(T / hop) + 1 frames, as the stages end a stream): the
    reference every push pattern reproduces."""
    hop, delay = card.hop, card.encoder_future_frames
    k = EncoderStage.total_frames(audio.shape[1], hop)
    x = np.pad(np.asarray(audio, np.float32), ((0, 0), (0, (k + delay) * hop - audio.shape[1])))
    codes, _ = net(x, 0, k, net.initial_state(audio.shape[0]))
    return codes[:, :, delay:]

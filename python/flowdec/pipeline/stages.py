"""The one processing contract (:class:`Stage`) and the model's stages: encoder, decoder,
postfilter.

Every path — a short clip in one go, a long file in chunks with bounded memory, a live stream
— pushes audio or codes through these stages (assembled by :mod:`flowdec.pipeline.chain`); only the
chunk size differs. Sample ``i`` of a stage's output always corresponds to sample ``i`` of
its input (the stages add no delay of their own; what they need is *availability*: a stage
can emit output only once the future context it needs has arrived, its :attr:`Stage.latency`).

Context rules (frames of hop 640 for the codec, hop 384 for the postfilter):

- The encoder's code for frame k depends on samples [640·(k−1−P_e), 640·(k+1+A_e)), P_e and
  A_e from the model card. Running the network on a window that starts at frame s gives exact
  codes for frames ≥ s + 1 + P_e, and at the true start (s = 0) for all frames.
- The decoder's output hop k depends on codes [k − P_d, k + 1 + A_d]. :class:`DecoderStage`
  re-runs the decoder over each chunk's past context; :class:`StreamingDecoderStage` (models
  with ``decoder_stream.onnx``) decodes each frame once and carries the context as network
  state — same audio to float rounding, emitted in the same pieces.
- The postfilter solves on a window of STFT frames with ``context`` frames on each side and
  cross-fades chunk seams; its result depends weakly on the window (each of the NFE network
  evaluations widens the dependence), so chunked output matches one-shot output within a
  small tolerance, not exactly. The prior noise is keyed by the global frame index.

``chunk_frames`` of the encoder and decoder stages is the most frames one network run
covers; ``None`` runs once per push over everything the push made final (the streaming
engine pushes exactly one chunk's input at a time, so each stage runs once per chunk).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from ..audio import CODEC_RATE
from ..dsp.envelope import EnvelopeMatch
from ..dsp.level import PeakNormalizer
from ..model.files import CodecCard, PostfilterCard

ArrayFn = Callable[[np.ndarray], np.ndarray]


@runtime_checkable
class Stage(Protocol):
    """The contract of every stage: encoder, decoder, postfilter, band and output level,
    peak limiter, and the decode chain built of them (:mod:`flowdec.pipeline.chain`; the
    encode chain has the same calls and returns codes with their gains).

    Unit: samples (at 48 kHz, the codec rate; the peak limiter runs at its file's rate). A
    code frame stands for ``hop`` samples. ``push(block)`` takes any amount of input
    (``[channels, samples]`` audio, or ``[channels, codebooks, frames]`` codes) and returns
    the output that is now final, from where the last call stopped; ``finish()`` ends the
    stream — its length is what was pushed, so it takes no argument — and returns the rest;
    ``reset()`` starts a new stream. Side information a stage needs (level gains) is added
    before the audio it covers (``add_gains``).

    Example:
        >>> import numpy as np
        >>> from flowdec.audio.limiter import PeakLimiter
        >>> lim = PeakLimiter(channels=1, sample_rate=48000)
        >>> isinstance(lim, Stage), lim.latency                 # 5 ms of look-ahead
        (True, 240)
        >>> x = np.zeros((1, 1000), np.float32)
        >>> [lim.push(x).shape[1], lim.push(x).shape[1], lim.finish().shape[1]]
        [760, 1000, 240]
    """

    @property
    def latency(self) -> int:
        """Look-ahead in samples: input past an output sample that must have arrived before
        the stage returns it (beyond the wait for the stage's own chunk or block)."""
        ...

    def push(self, block: np.ndarray) -> np.ndarray: ...

    def finish(self) -> np.ndarray: ...

    def reset(self) -> None: ...


class StreamNet(Protocol):
    """A streaming network (:mod:`flowdec.model.sessions`): ``net(x, first, end, state) →
    (y, state)``."""

    def initial_state(self, batch: int) -> list[np.ndarray]: ...

    def __call__(self, x: np.ndarray, first: int, end: int, state: list[np.ndarray]
                 ) -> tuple[np.ndarray, list[np.ndarray]]: ...


def _cat(parts: list[np.ndarray], shape_head: tuple[int, ...], dtype: type) -> np.ndarray:
    if not parts:
        return np.zeros((*shape_head, 0), dtype)
    return np.concatenate(parts, axis=-1)


class EncoderStage:
    """48 kHz audio [C, n] → codes [C, n_q, k] (int64), exact for any push pattern.

    ``finish()`` ends the stream: the total frame count is ceil(T / hop) + 1 so that the
    decoder's output covers every input sample.
    """

    def __init__(self, encode: ArrayFn, card: CodecCard, channels: int,
                 chunk_frames: int | None) -> None:
        self.encode, self.card, self.channels = encode, card, channels
        self.hop = card.hop
        self.past = card.encoder_past_frames + 1
        self.future = card.encoder_future_frames
        self.chunk = None if chunk_frames is None else max(1, chunk_frames)
        self.reset()

    @property
    def latency(self) -> int:
        return self.future * self.hop

    def reset(self) -> None:
        self.buf = np.zeros((self.channels, 0), np.float32)
        self.buf_start = 0  # global sample index of buf[:, 0]
        self.received = 0
        self.next_frame = 0

    @staticmethod
    def total_frames(samples: int, hop: int) -> int:
        return -(-samples // hop) + 1

    def _run(self, a: int, b: int, end: int) -> np.ndarray:
        s = max(0, a - self.past)
        lo, hi = s * self.hop - self.buf_start, end * self.hop - self.buf_start
        codes = self.encode(self.buf[:, lo:hi])
        self.next_frame = b
        drop = max(0, (b - self.past) * self.hop - self.buf_start)
        self.buf = self.buf[:, drop:]
        self.buf_start += drop
        return codes[:, :, a - s : b - s]

    def push(self, audio: np.ndarray) -> np.ndarray:
        self.buf = np.concatenate([self.buf, np.asarray(audio, np.float32)], axis=1)
        self.received += audio.shape[1]
        out = []
        if self.chunk is None:
            b = self.received // self.hop - self.future
            if b > self.next_frame:
                out.append(self._run(self.next_frame, b, b + self.future))
        else:
            while (self.next_frame + self.chunk + self.future) * self.hop <= self.received:
                a = self.next_frame
                out.append(self._run(a, a + self.chunk, a + self.chunk + self.future))
        return _cat(out, (self.channels, self.card.codebooks), np.int64)

    def finish(self) -> np.ndarray:
        k = self.total_frames(self.received, self.hop)
        pad = k * self.hop - self.buf_start - self.buf.shape[1]
        self.buf = np.pad(self.buf, ((0, 0), (0, pad)))
        out = []
        while self.next_frame < k:
            a = self.next_frame
            b = k if self.chunk is None else min(a + self.chunk, k)
            out.append(self._run(a, b, min(b + self.future, k)))
        return _cat(out, (self.channels, self.card.codebooks), np.int64)


class DecoderStage:
    """Codes [C, n, k] → 48 kHz audio [C, k·hop], exact for any push pattern."""

    def __init__(self, decode: ArrayFn, card: CodecCard, channels: int, n_codebooks: int,
                 chunk_frames: int | None) -> None:
        self.decode, self.card = decode, card
        self.channels, self.n = channels, n_codebooks
        self.hop = card.hop
        self.past = card.decoder_past_frames
        self.future = card.decoder_future_frames + 1  # output hop k also uses segment k+1
        self.chunk = None if chunk_frames is None else max(1, chunk_frames)
        self.reset()

    @property
    def latency(self) -> int:
        return self.future * self.hop

    def reset(self) -> None:
        self.codes = np.zeros((self.channels, self.n, 0), np.int64)
        self.codes_start = 0
        self.received = 0
        self.next_hop = 0

    def _run(self, a: int, b: int, end: int) -> np.ndarray:
        s = max(0, a - self.past)
        audio = self.decode(self.codes[:, :, s - self.codes_start : end - self.codes_start])
        self.next_hop = b
        drop = max(0, b - self.past - self.codes_start)
        self.codes = self.codes[:, :, drop:]
        self.codes_start += drop
        return audio[:, (a - s) * self.hop : (b - s) * self.hop]

    def push(self, codes: np.ndarray) -> np.ndarray:
        self.codes = np.concatenate([self.codes, np.asarray(codes, np.int64)], axis=2)
        self.received += codes.shape[2]
        out = []
        if self.chunk is None:
            b = self.received - self.future
            if b > self.next_hop:
                out.append(self._run(self.next_hop, b, b + self.future))
        else:
            while self.next_hop + self.chunk + self.future <= self.received:
                a = self.next_hop
                out.append(self._run(a, a + self.chunk, a + self.chunk + self.future))
        return _cat(out, (self.channels,), np.float32)

    def finish(self) -> np.ndarray:
        k = self.received
        out = []
        while self.next_hop < k:
            a = self.next_hop
            b = k if self.chunk is None else min(a + self.chunk, k)
            out.append(self._run(a, b, min(b + self.future, k)))
        return _cat(out, (self.channels,), np.float32)


UNKNOWN_END = 2**62
"""The ``end`` a streaming network gets while the stream's length is unknown."""


class StreamingDecoderStage:
    """:class:`DecoderStage` with the streaming decoder (``decoder_stream.onnx``): each code
    frame is decoded once, its context carried as network state. Same audio (up to float
    rounding), emitted at the same moments in the same pieces."""

    def __init__(self, net: StreamNet, card: CodecCard, channels: int, n_codebooks: int,
                 chunk_frames: int | None) -> None:
        self.net, self.card = net, card
        self.channels, self.n = channels, n_codebooks
        self.hop = card.hop
        self.future = card.decoder_future_frames + 1  # output hop k also uses segment k+1
        self.delay = self.future  # the network emits hop k once it has code frame k + delay
        self.chunk = None if chunk_frames is None else max(1, chunk_frames)
        self.reset()

    @property
    def latency(self) -> int:
        return self.future * self.hop

    def reset(self) -> None:
        self.state = self.net.initial_state(self.channels)
        self.fed = 0
        self.audio = np.zeros((self.channels, 0), np.float32)
        self.audio_start = 0  # hop of audio[:, 0]
        self.received = 0
        self.next_hop = 0

    def _feed(self, codes: np.ndarray, end: int, step: int) -> None:
        for a in range(0, codes.shape[2], step):
            n = min(step, codes.shape[2] - a)
            audio, self.state = self.net(codes[:, :, a : a + n], self.fed, end, self.state)
            first = self.fed - self.delay
            self.fed += n
            self.audio = np.concatenate([self.audio, audio[:, max(0, -first) * self.hop :]],
                                        axis=1)

    def _take(self, upto: int) -> np.ndarray:
        h = self.hop
        out = self.audio[:, (self.next_hop - self.audio_start) * h : (upto - self.audio_start) * h]
        self.audio = self.audio[:, (upto - self.audio_start) * h :]
        self.audio_start = self.next_hop = upto
        return out

    def push(self, codes: np.ndarray) -> np.ndarray:
        final = self.received + codes.shape[2] - self.future  # hops this push makes final
        step = max(1, final - self.next_hop) if self.chunk is None else self.chunk
        self._feed(np.asarray(codes, np.int64), UNKNOWN_END, step)
        self.received += codes.shape[2]
        out = []
        if self.chunk is None:
            if final > self.next_hop:
                out.append(self._take(final))
        else:
            while self.next_hop + self.chunk + self.future <= self.received:
                out.append(self._take(self.next_hop + self.chunk))
        return _cat(out, (self.channels,), np.float32)

    def finish(self) -> np.ndarray:
        k = self.received
        self._feed(np.zeros((self.channels, self.n, self.delay), np.int64), k,
                   self.delay if self.chunk is None else self.chunk)
        out = []
        while self.next_hop < k:
            out.append(self._take(k if self.chunk is None else min(self.next_hop + self.chunk, k)))
        return _cat(out, (self.channels,), np.float32)


class SolveFn(Protocol):
    """solve(Y [C, 2, F, N], frame_offset) → X̂ [C, 2, F, N] (the postfilter's ODE solve,
    :class:`flowdec.pipeline.postfilter.PostfilterSolve`): ``nfe`` evaluations (0: Y itself), the
    noise keyed by global frame ``frame_offset + frame_origin``."""

    nfe: int
    frame_origin: int

    def __call__(self, Y: np.ndarray, frame_offset: int) -> np.ndarray: ...


class PostfilterStage:
    """48 kHz audio y [C, n] → enhanced audio [C, n], in windows of STFT frames.

    Output samples [h·n0, h·n1) come from a window of frames [n0 − 2 − L, n1 + 2 + R + X/h)
    with L = R = ``context`` frames; the first X = 2·h samples of each chunk are cross-faded
    with the previous chunk's tail. When the card gives an ``input_level``, y is presented at
    that level (:class:`flowdec.dsp.level.PeakNormalizer`: its gains look one frame ahead at
    most, so chunking does not change them) and the output is scaled back. When it gives an
    ``envelope`` (and ``envelope`` is true), each solved frame gets y's band envelope
    (:mod:`flowdec.dsp.envelope`; per frame, so chunking does not change it either), twice: on the
    solver's frames, then on the STFT of the signal they synthesise.
    """

    def __init__(self, analysis: Callable[[np.ndarray], np.ndarray],
                 synthesis: Callable[[np.ndarray, int], np.ndarray], solve: SolveFn,
                 card: PostfilterCard, channels: int, chunk_frames: int, context: int,
                 envelope: bool = True) -> None:
        self.analysis, self.synthesis, self.solve = analysis, synthesis, solve
        self.envelope = (EnvelopeMatch(card.envelope, card.n_fft, CODEC_RATE, card.alpha)
                         if envelope and card.envelope is not None else None)
        self.channels = channels
        self.h = card.hop
        self.half = card.n_fft // 2
        self.m = card.frames_multiple
        self.chunk = max(1, chunk_frames)
        self.context = -(-context // self.m) * self.m
        self.fade_frames = 2
        self.fade = self.fade_frames * self.h
        self.input_level = card.input_level
        self.reset()

    def reset(self) -> None:
        lv = self.input_level
        self.level = (PeakNormalizer(self.channels, self.h, lv.peak_dbfs, lv.release_db_per_s,
                                     lv.floor_dbfs, CODEC_RATE / self.h)
                      if lv is not None else None)
        self.buf = np.zeros((self.channels, 0), np.float32)
        self.buf_start = 0
        self.received = 0
        self.next_frame = 0  # output emitted up to sample h·next_frame
        self.tail: np.ndarray | None = None

    @property
    def latency(self) -> int:
        return self.future_frames * self.h

    @property
    def future_frames(self) -> int:
        """Frames after a chunk's end whose samples must have arrived before it runs."""
        held = PeakNormalizer.HOLD_FRAMES if self.input_level is not None else 0
        return 2 + self.context + self.fade_frames + 2 + held  # +2: last frame's window half

    def _segment(self, g0: int, g1: int) -> np.ndarray:
        """y over global samples [g0, g1), zero outside the signal received so far."""
        out = np.zeros((self.channels, g1 - g0), np.float32)
        lo, hi = max(g0, self.buf_start), min(g1, self.buf_start + self.buf.shape[1])
        if hi > lo:
            out[:, lo - g0 : hi - g0] = self.buf[:, lo - self.buf_start : hi - self.buf_start]
        return out

    def _run(self, n0: int, n1: int, total_frames: int | None) -> np.ndarray:
        h = self.h
        m0 = max(0, (n0 - 2 - self.context) // self.m * self.m)
        m1 = n1 + 2 + self.context + self.fade_frames
        if total_frames is not None:
            m1 = min(m1, total_frames)
        m1 = m0 + -(-(m1 - m0) // self.m) * self.m  # whole patches; extra frames are zeros
        seg = self._segment(m0 * h - self.half, (m1 + 1) * h)
        feats = self.analysis(seg)[..., 2 : 2 + (m1 - m0)]
        feats = np.ascontiguousarray(feats)
        solved = self.solve(feats, m0)
        n = (m1 - m0 - 1) * h
        # a solve with no evaluations (the streaming engine's cheapest level under load) gives
        # y's own frames back: nothing to match, and no time to spend on it
        if self.envelope is not None and solved is not feats:
            # only frames that reach the output samples need it (a frame spans ±2 hops, and
            # the second match's analysis reaches 2 frames further)
            a = max(0, n0 - m0 - 4)
            b = min(m1 - m0, n1 - m0 + self.fade_frames + 4)
            if not solved.flags.writeable:
                solved = solved.copy()
            y, target = feats[..., a:b], self.envelope.energy(feats[..., a:b])
            solved[..., a:b] = self.envelope(solved[..., a:b], y, target)
            # the solver's frames are not the STFT of one signal, so overlap-add loses about
            # 1 dB of the matched energy: match once more on the STFT of the signal they make
            again = self.analysis(self.synthesis(solved, n))[..., a:b]
            solved[..., a:b] = self.envelope(again, y, target)
        x = self.synthesis(solved, n)
        lo = (n0 - m0) * h
        out = x[:, lo : lo + (n1 - n0) * h + self.fade].copy()
        if self.tail is not None:
            # near the end of the signal the previous tail or this chunk can be shorter
            k = min(self.fade, self.tail.shape[1], out.shape[1])
            ramp = (np.arange(k, dtype=np.float32) + 0.5) / self.fade
            out[:, :k] = self.tail[:, :k] * (1 - ramp) + out[:, :k] * ramp
        self.tail = out[:, (n1 - n0) * h :].copy()
        self.next_frame = n1
        keep_from = max(0, (n1 - 4 - self.context - self.m) * h - self.half)
        drop = max(0, keep_from - self.buf_start)
        self.buf = self.buf[:, drop:]
        self.buf_start += drop
        return out[:, : (n1 - n0) * h]

    def push(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, np.float32)
        if self.level is not None:
            y = self.level.push(y)
        self.buf = np.concatenate([self.buf, y], axis=1)
        self.received += y.shape[1]
        out = []
        # ``received`` counts samples the normaliser has released; it holds at most
        # HOLD_FRAMES frames, which future_frames includes
        held = PeakNormalizer.HOLD_FRAMES if self.level is not None else 0
        while (self.next_frame + self.chunk + self.future_frames - held) * self.h <= self.received:
            a = self.next_frame
            out.append(self._run(a, a + self.chunk, None))
        return self._restore(_cat(out, (self.channels,), np.float32))

    def _restore(self, out: np.ndarray) -> np.ndarray:
        return self.level.restore(out) if self.level is not None else out

    def finish(self) -> np.ndarray:
        if self.level is not None:  # the samples the normaliser still holds
            self.buf = np.concatenate([self.buf, self.level.finish()], axis=1)
            self.received = self.buf_start + self.buf.shape[1]
        total = self.received // self.h + 1  # frames of the one-shot analysis
        end_frame = math.ceil(self.received / self.h)
        out = []
        while self.next_frame < end_frame:
            a = self.next_frame
            b = min(a + self.chunk, end_frame)
            out.append(self._run(a, b, total))
        res = _cat(out, (self.channels,), np.float32)
        emitted = self.next_frame * self.h
        return self._restore(res[:, : res.shape[1] - max(0, emitted - self.received)])

"""Block-buffering streaming engine: the one processing contract on live audio.

:class:`Stream` implements ``prepare(sample_rate, max_block, channels)``,
``process(block) -> block``, ``reset()`` and ``latency_samples`` around the model's encode
and decode chains (:mod:`flowdec.pipeline.chain`: encoder → plain decoder → [postfilter] → output
level); it only schedules them (rings, resampling, the worker, degradation, statistics).

How it works:

- Host audio (any rate soxr supports) is resampled to 48 kHz in fixed pieces of
  :data:`RESAMPLE_PIECE` host samples, so the result never depends on the host's block
  sizes, and back to the host rate after processing (soxr streams are delay-compensated:
  the resamplers only add *availability* delay, which is included in the latency).
- The model works on chunks of ``chunk`` samples at 48 kHz: whole 40-ms level-gain blocks
  (a multiple of :data:`CHUNK_QUANTUM` = 1920 = lcm(codec hop 640, STFT hop 384)). Chunk ``k``
  produces output samples ``[k·chunk, (k+1)·chunk)`` once input up to
  ``(k+1)·chunk + lookahead`` has arrived; ``lookahead`` is the chains' latency (their stages'
  look-ahead: encoder, decoder, postfilter window + cross-fade), rounded to codec frames.
  Each stage runs exactly once per chunk.
- The output is preloaded with ``latency_samples`` of silence and every output sample is
  written at ``its index + latency_samples``: a late worker leaves gaps (zeros, counted as
  under-runs) but never shifts timing. ``latency = availability delay (one chunk + lookahead
  + resamplers, :func:`availability`) + margin`` in host samples. With the worker thread the
  processing margin (:func:`processing_margin`) is one chunk rounded up to whole host blocks
  (one chunk + one host block when blocks are a chunk or longer): a chunk made ready by one
  ``process`` call is read no earlier than ``margin`` host samples later, so with host
  blocks of a fixed size the worker has at least one chunk of time for each chunk, and with
  blocks of varying size (up to ``max_block``) at least half a chunk. Without the worker
  (``worker=False``) a chunk runs inside the ``process`` call that completes it, and the
  margin is 0.
- ``worker=True``: ``process`` only copies into an input ring and out of an output ring and
  wakes the worker thread; the worker pulls whole chunks. When it falls behind it degrades one
  step per late chunk — two postfilter evaluations fewer per step, then the plain decoder output
  (the postfilter's seams stay cross-faded) — and recovers one step after
  :data:`RECOVER_AFTER` chunks on time. A chunk is dropped (silence) only when the caller has
  already read past its output: lateness alone never throws away audio that can still be on
  time. ``worker=False`` does the work inside
  ``process`` (deterministic: used by tests, pedalboard effects and offline bounces).

Level gains (:mod:`flowdec.dsp.level`): each chunk is whole 40 ms gain blocks
(:data:`~flowdec.format.bitstream.LIVE_FRAMES_PER_GAIN`), so the engine measures the decoder's
loudness loss on the chunk and gives the output (plain or postfiltered) the input's loudness
per block without extra latency; the packets carry the same gains.

Chunk invariance (tested): with ``worker=False``, the output does not depend on the host
block sizes at all, and after removing the latency it equals :meth:`flowdec.Codec.roundtrip`
with ``frames_per_gain=LIVE_FRAMES_PER_GAIN`` to float precision for the codec path
(postfilter=False) at 44.1/48/96 kHz; the postfilter
path differs from the offline one only by its shorter window context (see ``tests/test_stream.py``
for the measured tolerance).

Example:
    >>> import numpy as np, flowdec
    >>> s = flowdec.Stream(flowdec.Codec.load(), bitrate=6.0, worker=False)
    >>> s.prepare(44100, max_block=512, channels=2)
    >>> out = s.process(np.zeros((2, 512), np.float32))   # [2, 512], delayed by s.latency_samples
"""

from __future__ import annotations

import functools
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .audio import CODEC_RATE, MAX_CHANNELS, StreamResampler, as_audio, check_int, check_rate
from .format.bitstream import (
    LIVE_FRAMES_PER_GAIN,
    LIVE_FRAMES_PER_PACKET,
    Packet,
    StreamHeader,
    encode_packet,
)
from .pipeline.model import Model

CHUNK_QUANTUM = 1920
"""Chunks are multiples of this many samples at 48 kHz (40 ms: one level-gain block of
:data:`~flowdec.format.bitstream.LIVE_FRAMES_PER_GAIN` codec frames, five postfilter STFT
hops)."""
DEFAULT_CHUNK_MS = 40.0
"""Default chunk (1920 samples at 48 kHz), on both paths: the latency/cost trade-off.

The streaming encoder (``encoder_stream.onnx``) encodes each hop once, so small chunks cost
little more than large ones on the codec path, whose output is the same at any chunk. The
postfilter recomputes its window (the chunk and ``context`` frames each side) every chunk,
so it pays for short chunks with :data:`LIVE_NFE` and :data:`DEFAULT_CONTEXT`
(``benchmarks/bench_latency.py`` and ``bench_live_quality.py``; numbers in
benchmarks/README.md)."""
DEFAULT_CONTEXT = 0
"""Default postfilter window context in STFT frames (hop 384) on each side of a chunk."""
LIVE_NFE = 2
"""Postfilter network evaluations in a stream when none are asked for (files use
:data:`~flowdec.pipeline.postfilter.DEFAULT_NFE`): what keeps the postfilter path in real
time with 40-ms chunks on two cores."""
RESAMPLE_PIECE = 256
"""Host samples per resampler call (fixed, so the output is independent of block sizes)."""
RECOVER_AFTER = 4
"""Chunks on time before the engine recovers one degradation step."""
MAX_BLOCK = 8192
MAX_BLOCK_LIMIT = 1 << 20
"""Largest ``max_block`` :meth:`Stream.prepare` accepts (host samples)."""
MAX_RING_BYTES = 1 << 30
"""Largest input + output ring memory :meth:`Stream.prepare` allocates (1 GiB; a stereo
stream at 768 kHz with blocks of 2^20 samples needs about 110 MB)."""


@dataclass
class StreamStats:
    """Counters of a :class:`Stream` (read them any time; they are updated in place)."""

    underrun_samples: int = 0  # output samples (per channel) filled with zeros: not ready
    underrun_blocks: int = 0  # process() calls that had at least one such sample
    chunks: int = 0  # chunks processed by the model
    dropped_chunks: int = 0  # chunks replaced by silence (too late or overloaded)
    degradations: int = 0  # steps taken towards cheaper processing
    recoveries: int = 0  # steps back
    overflow_samples: int = 0  # input samples lost because the worker stalled (input ring full)
    nonfinite_samples: int = 0  # NaN or infinite input samples, replaced with silence
    errors: int = 0  # exceptions in the worker (the chunk is dropped, the stream goes on)
    last_error: str = ""
    level: int = 0  # 0 = full quality; see Stream.levels
    nfe: int = 0  # postfilter evaluations now (0: postfilter bypassed or off)
    work_seconds: float = 0.0  # worker time spent on chunks
    audio_seconds: float = 0.0  # audio time of those chunks
    rtf_last: float = 0.0  # real-time factor of the last chunk
    rtf_history: list[float] = field(default_factory=list)  # last 64 chunks

    @property
    def rtf(self) -> float:
        """Worker real-time factor over all chunks so far (work time / audio time)."""
        return self.work_seconds / self.audio_seconds if self.audio_seconds else 0.0


@functools.lru_cache(maxsize=64)
def resampler_release(from_rate: int, to_rate: int, piece: int, pieces: int
                      ) -> tuple[int, ...]:
    """Output samples a fresh resampler (:class:`~flowdec.audio.StreamResampler`, soxr HQ)
    has released after each of ``pieces`` input pieces of ``piece`` samples, cumulative.

    soxr compensates its filter delay (output sample i corresponds to input time
    i / to_rate) but releases output in internal blocks, not sample by sample, so when a
    resampled sample becomes available is a property of soxr measured here once per rate
    pair and piece size (``tests/test_stream.py`` checks it with an impulse)."""
    r = StreamResampler(from_rate, to_rate, 1)
    z = np.zeros((1, piece), np.float32)
    total, out = 0, []
    for _ in range(pieces):
        total += r.push(z).shape[1]
        out.append(total)
    return tuple(out)


def processing_margin(chunk_host: int, max_block: int) -> int:
    """Host samples of latency beyond :func:`availability` that give the worker time to run a
    chunk: one chunk rounded up to whole host blocks when blocks are shorter than a chunk,
    else one chunk + one block.

    A chunk becomes ready in the ``process`` call that brings its last input; its first output
    sample is read ``margin`` samples after that input. With blocks of a fixed size the calls
    in between span at least one chunk (the margin is whole blocks, or a block beyond a
    chunk); with varying sizes up to ``max_block``, at least ``margin - max_block + 1`` host
    samples, which is more than half a chunk."""
    c, b = chunk_host, max_block
    return -(-c // b) * b if b < c else c + b


def availability(host_rate: int, chunk: int, lookahead: int, piece: int) -> int:
    """Worst-case host samples between an input sample's arrival and its output being ready,
    for synchronous processing: chunks of ``chunk`` samples at 48 kHz that run once the
    input reaches ``lookahead`` samples past their end (the chains' look-ahead), the host
    audio resampled to 48 kHz in pieces of ``piece`` samples and back a chunk at a time."""
    c, la, sr = chunk, lookahead, host_rate
    if sr == CODEC_RATE:
        return c + la - 1
    p = piece
    seconds = 4.0 + 2 * (c + la) / CODEC_RATE
    n_pieces = int(seconds * sr / p) + 1
    ins = resampler_release(sr, CODEC_RATE, p, n_pieces)
    units = [max(0, (a - la) // c) for a in ins]
    outs = resampler_release(CODEC_RATE, sr, c, units[-1] + 1)
    worst = 0
    for j, u in enumerate(units):
        have = outs[u - 1] if u > 0 else 0
        worst = max(worst, (j + 2) * p - 1 - have)  # call ending just before piece j+1
    return worst


def fixed_block_availability(host_rate: int, chunk: int, lookahead: int, piece: int,
                             block: int) -> tuple[int, int]:
    """``(availability, preroll)`` for synchronous processing when every call brings exactly
    ``block`` host samples (a plugin backend's chunks): the input is preceded by ``preroll``
    host samples of silence, chosen so that chunks complete as blocks arrive, and the
    availability is the largest ``input so far − output ready`` after any call.

    With blocks of one chunk at 48 kHz this is the chains' look-ahead alone (one chunk less
    than :func:`availability`): the chunk a block completes is its own."""
    c, la, sr, b = chunk, lookahead, host_rate, block
    c_host = -(-c * sr // CODEC_RATE)
    seconds = 4.0 + 2 * (c + la) / CODEC_RATE
    calls = np.arange(1, int(seconds * sr / b) + 2, dtype=np.int64) * b
    z = np.arange(c_host, dtype=np.int64)[:, None]
    total = z + calls[None, :]  # host samples in (pre-roll included) after each call
    if sr == CODEC_RATE:
        have = np.maximum(0, (total - la) // c) * c
    else:
        n_pieces = int(total.max()) // piece + 1
        ins = np.array((0,) + resampler_release(sr, CODEC_RATE, piece, n_pieces), np.int64)
        units = np.maximum(0, (ins[total // piece] - la) // c)
        outs = np.array((0,) + resampler_release(CODEC_RATE, sr, c, int(units.max()) + 1),
                        np.int64)
        have = outs[units]
    worst = (total - have).max(axis=1)
    best = int(np.argmin(worst))
    return int(worst[best]), best


def _worker_main(ref: weakref.ReferenceType[Stream], wake: threading.Event) -> None:
    """Worker thread body; holds the stream only weakly so an abandoned stream is collected."""
    while True:
        wake.wait(0.05)
        wake.clear()
        s = ref()
        if s is None or s._stop:
            return
        s._service()
        del s


class Stream:
    """Streaming codec round trip with fixed, exact latency (see the module docstring).

    Args:
        codec: a loaded model (:class:`flowdec.Codec`, or any
            :class:`flowdec.pipeline.model.Model`): the stream runs its chains.
        bitrate: kbit/s per channel (one the model lists).
        nfe: postfilter network evaluations (even; degraded by 2 per step under load; None:
            :data:`LIVE_NFE`).
        postfilter: run the postfilter (else the plain decoder output); None: on when ``nfe``
            or ``seed`` is given, else as the model card recommends
            (:meth:`Codec.use_postfilter`, the rule of every entry point).
        seed: postfilter noise seed (the noise is keyed by global STFT frame: reproducible;
            None: :data:`~flowdec.pipeline.postfilter.DEFAULT_SEED`).
        chunk_ms: model chunk in ms at 48 kHz, rounded up to a multiple of 40 ms; None:
            :data:`DEFAULT_CHUNK_MS` (40).
        worker: process on a worker thread (real time) or inside ``process`` (deterministic).
        degrade: allow the worker to degrade under load (no effect with ``worker=False``).
        context: postfilter window context in STFT frames each side (more = closer to offline,
            more work and latency).
        on_packet: called from the worker with each ``.fdc`` packet (bytes) of
            :data:`~flowdec.format.bitstream.LIVE_FRAMES_PER_PACKET` frames the encoder
            produced, with their level gains (a packet leaves once its gains are measured);
            the matching header is :attr:`header` (after ``prepare``).

    Latency (host samples) = one chunk + lookahead + resampler delays (availability) + the
    worker's processing margin (:func:`processing_margin`): :attr:`latency_samples` (with the
    shipped model and the defaults at 48 kHz, host blocks of 64 to 1024 samples: 147–149 ms
    on the codec path, 213–216 ms with the postfilter; 107 / 173 ms with ``worker=False``).
    """

    def __init__(self, codec: Model, bitrate: float = 6.0, nfe: int | None = None,
                 postfilter: bool | None = None,
                 seed: int | None = None, chunk_ms: float | None = None,
                 worker: bool = True, degrade: bool = True, context: int = DEFAULT_CONTEXT,
                 on_packet: Callable[[bytes], None] | None = None) -> None:
        postfilter, nfe, seed = codec.postfilter_settings(postfilter, nfe, seed, LIVE_NFE)
        if nfe < 2 or nfe % 2:
            raise ValueError(f"nfe: must be an even number >= 2, got {nfe}")
        if postfilter and not codec.has_postfilter:
            raise ValueError("this model has no postfilter; use postfilter=False")
        self.codec = codec
        self.bitrate = bitrate
        self.n_q = codec.card.codebooks_for(bitrate)
        self.nfe, self.postfilter, self.seed = nfe, postfilter, seed
        q = CHUNK_QUANTUM
        if chunk_ms is None:
            chunk_ms = DEFAULT_CHUNK_MS
        self.chunk = max(q, math.ceil(chunk_ms * CODEC_RATE / 1000 / q - 1e-9) * q)
        self.worker, self.degrade, self.context = worker, degrade, context
        self.on_packet = on_packet
        self.levels: list[int] = (
            list(range(nfe, 0, -2)) + [0] if postfilter else [0]
        )  # postfilter evaluations per degradation level; the last is the plain decoder
        self.stats = StreamStats()
        self.header: StreamHeader | None = None
        self._prepared = False
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = False
        self._lock = threading.Lock()  # serialises the chain (worker vs reset)

    # -- contract ----------------------------------------------------------------------------
    def prepare(self, sample_rate: int, max_block: int, channels: int,
                fixed_block: bool = False) -> None:
        """Allocate for ``channels`` at ``sample_rate`` Hz, blocks of up to ``max_block``.

        ``fixed_block``: every ``process`` call brings exactly ``max_block`` samples (the
        plugin backend's chunks); the latency is then the least that pattern allows
        (:func:`fixed_block_availability`), and other block sizes raise ``ValueError``.

        Raises ``ValueError`` for a rate outside 8000..768000 Hz, ``max_block`` outside
        1..:data:`MAX_BLOCK_LIMIT`, ``channels`` outside 1..255, or a combination whose
        buffers would exceed :data:`MAX_RING_BYTES`."""
        sr = check_rate(sample_rate)
        max_block = check_int(max_block, "max_block", 1, MAX_BLOCK_LIMIT)
        channels = check_int(channels, "channels", 1, MAX_CHANNELS)
        self._shutdown()
        self._prepared = False
        self.sample_rate, self.max_block, self.channels = sr, max_block, channels
        self.fixed_block = bool(fixed_block)
        self._build_chains()
        self.piece = 1 if sr == CODEC_RATE else RESAMPLE_PIECE
        self.chunk_host = -(-self.chunk * sr // CODEC_RATE)
        if self.fixed_block:
            self.availability, self.preroll = fixed_block_availability(
                sr, self.chunk, self.lookahead, self.piece, max_block)
        else:
            self.availability = availability(sr, self.chunk, self.lookahead, self.piece)
            self.preroll = 0
        self.margin = processing_margin(self.chunk_host, self.max_block) if self.worker else 0
        self.latency = self.availability + self.margin
        self.header = self.codec.header(channels, sr, 0, self.n_q,
                                        frames_per_packet=LIVE_FRAMES_PER_PACKET,
                                        frames_per_gain=LIVE_FRAMES_PER_GAIN)
        cap_in = 4 * sr + 4 * self.max_block  # seconds of stall before input is lost
        cap_out = self.latency + 4 * self.max_block + 4 * self.chunk_host + sr
        need = channels * (cap_in + cap_out) * 4
        if need > MAX_RING_BYTES:
            raise ValueError(
                f"{channels} channels at {sr} Hz with max_block {max_block} need "
                f"{need / 2**30:.1f} GiB of stream buffers (limit {MAX_RING_BYTES / 2**30:g} "
                "GiB): use fewer channels, a lower rate or smaller blocks")
        self._in = np.zeros((channels, cap_in), np.float32)
        self._out = np.zeros((channels, cap_out), np.float32)
        self._prepared = True
        self.reset()

    def _build_chains(self) -> None:
        """The model's encode and decode chains at 48 kHz, each stage run once per chunk:
        encoder → plain decoder (level gains measured on it) → [postfilter] → output level."""
        c, hop = self.codec, self.codec.card.hop
        self.encode = c.encode_chain(self.channels, self.n_q, None, LIVE_FRAMES_PER_GAIN)
        self.decode = c.decode_chain(
            self.channels, self.n_q, None, LIVE_FRAMES_PER_GAIN, decoder=False,
            postfilter=self.postfilter, nfe=self.nfe, seed=self.seed, context=self.context,
            post_chunk_frames=(self.chunk // c.postfilter_card().hop if self.postfilter
                               else None))
        post = self.decode.post
        if post is not None and post.chunk * post.h != self.chunk:
            raise ValueError("chunk must be a multiple of the postfilter hop")
        # input needed past a chunk's end: the chains' look-ahead in whole codec frames
        self.lookahead = sum(-(-chain.latency // hop) * hop
                             for chain in (self.encode, self.decode))

    # -- scheduling: chunk k (counted from origin) is output [origin + k·chunk, ... + chunk)
    def _restart(self, origin: int, pending: np.ndarray) -> None:
        """Start the chains afresh at global 48 kHz sample ``origin`` (0, or after a dropped
        chunk) with ``pending``, the input from there on not yet used."""
        self._origin = origin
        post = self.decode.post
        if post is not None:
            post.solve.frame_origin = origin // post.h  # noise keyed by global frame
        self.encode.reset()
        self.decode.reset()
        self._k = 0  # next chunk (relative to origin)
        self._pending = pending  # 48 kHz input not yet in the encoder
        self._pending_start = origin  # global 48 kHz index of _pending[:, 0]

    def _need(self, k: int) -> int:
        """Global 48 kHz input count needed to run chunk k."""
        return self._origin + (k + 1) * self.chunk + self.lookahead

    def _ready(self) -> bool:
        return bool(self._pending_start + self._pending.shape[1] >= self._need(self._k))

    @property
    def _nfe(self) -> int:
        post = self.decode.post
        return post.solve.nfe if post is not None else 0

    @_nfe.setter
    def _nfe(self, nfe: int) -> None:
        """Postfilter evaluations for the next chunk (0: the plain decoder output, the
        postfilter's seams still cross-faded)."""
        if self.decode.post is not None:
            self.decode.post.solve.nfe = nfe

    def _run_chunk(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run chunk k; returns (audio [C, chunk], codes [C, n_q, frames] emitted, level
        gains [C, blocks] of the gain blocks completed)."""
        take = self._need(self._k) - self._pending_start
        x, self._pending = self._pending[:, :take], self._pending[:, take:]
        self._pending_start += take
        e = self.encode.push(x)
        assert e.gains is not None and e.decoded is not None
        # the plain decoder output runs ahead of the chunk: its gain blocks are in, and the
        # chunk is whole gain blocks, so the output level returns all of it
        self.decode.add_gains(e.gains)
        out = self.decode.push(e.decoded)
        self._k += 1
        if out.shape[1] != self.chunk:
            raise RuntimeError(f"chain produced {out.shape[1]} samples, expected {self.chunk}")
        return out, e.codes, e.gains

    @property
    def latency_samples(self) -> int:
        """Host samples: ``output[n + latency_samples]`` corresponds to ``input[n]``."""
        self._check_prepared()
        return self.latency

    def reset(self) -> None:
        """Forget all audio (and statistics); the latency stays the same."""
        self._check_prepared()
        self._shutdown()
        with self._lock:
            self._restart(0, np.zeros((self.channels, 0), np.float32))
            self._nfe = self.levels[0]
            self._rs_in = StreamResampler(self.sample_rate, CODEC_RATE, self.channels)
            self._rs_out = StreamResampler(CODEC_RATE, self.sample_rate, self.channels)
            self._in.fill(0)
            self._out.fill(0)
            self._in_write = self.preroll  # host samples in the ring (the pre-roll is silence)
            self._in_read = 0  # host samples taken by the worker
            self._out_read = 0  # host output samples returned by process
            self._out_written = self.latency  # output ready below this (preloaded silence)
            self._out_count = -self.preroll  # output samples so far, minus the pre-roll's
            self._level = 0
            self._on_time = 0
            self._packets = (LivePackets(self.header, self.on_packet)
                             if self.on_packet is not None and self.header is not None else None)
            self.stats = StreamStats(nfe=self.levels[0])
        if self.worker:
            self._stop = False
            self._thread = threading.Thread(target=_worker_main, name="flowdec-stream",
                                            args=(weakref.ref(self), self._wake), daemon=True)
            self._thread.start()

    def process(self, block: npt.ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
        """Push ``[channels, n]`` host samples; return ``[channels, n]`` float32 (into
        ``out`` when given). Never waits on the model when ``worker=True``.

        The block is converted as :class:`flowdec.FlowDecEffect` converts its input
        (:func:`flowdec.audio.as_audio`): integer PCM is scaled to [-1, 1); complex, object
        and non-numeric arrays raise ``ValueError``. NaN or infinite samples (a glitching
        host or plugin before this one) become silence, counted in
        ``stats.nonfinite_samples``: an audio callback must not die of them."""
        self._check_prepared()
        shape = np.shape(block)
        if len(shape) != 2 or shape[0] != self.channels or not 1 <= shape[1] <= self.max_block:
            raise ValueError(f"block: expected [{self.channels}, 1..{self.max_block}], "
                             f"got {shape}")
        if self.fixed_block and shape[1] != self.max_block:
            raise ValueError(f"block: this stream was prepared for blocks of exactly "
                             f"{self.max_block} samples (fixed_block), got {shape[1]}")
        a = np.asarray(block)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = ~np.isfinite(a)
            self.stats.nonfinite_samples += int(bad.sum())
            a = np.where(bad, np.float32(0), a)
        block = as_audio(a, "block")
        n = block.shape[1]
        if out is not None and (not isinstance(out, np.ndarray) or out.dtype != np.float32
                                or out.shape != (self.channels, n)):
            raise ValueError(f"out: expected a float32 array of shape {(self.channels, n)}, "
                             f"got {getattr(out, 'dtype', type(out).__name__)} "
                             f"{np.shape(out)}")
        # input ring
        cap = self._in.shape[1]
        w = self._in_write % cap
        k = min(n, cap - w)
        self._in[:, w : w + k] = block[:, :k]
        if k < n:
            self._in[:, : n - k] = block[:, k:]
        self._in_write += n
        if self.worker:
            self._wake.set()
        else:
            self._service()
        # output ring
        if out is None:
            out = np.empty((self.channels, n), np.float32)
        r = self._out_read
        ready = min(n, max(0, self._out_written - r))
        cap = self._out.shape[1]
        s = r % cap
        k = min(ready, cap - s)
        out[:, :k] = self._out[:, s : s + k]
        if k < ready:
            out[:, k:ready] = self._out[:, : ready - k]
        if ready < n:
            out[:, ready:] = 0.0
            self.stats.underrun_samples += n - ready
            self.stats.underrun_blocks += 1
        self._out_read = r + n
        return out

    def warm_up(self) -> None:
        """Run the model on two chunks of silence at this stream's shapes, in a synchronous
        twin (this stream's state is untouched). The networks' first calls at a shape
        allocate and plan; a real-time host calls this after ``prepare`` so that they do not
        make the first chunks late."""
        self._check_prepared()
        twin = Stream(self.codec, bitrate=self.bitrate, nfe=self.nfe,
                      postfilter=self.postfilter, seed=self.seed,
                      chunk_ms=self.chunk * 1000 / CODEC_RATE, worker=False, degrade=False,
                      context=self.context)
        twin.prepare(self.sample_rate, self.max_block, self.channels, self.fixed_block)
        silence = np.zeros((self.channels, self.max_block), np.float32)
        while twin.stats.chunks < 2:
            twin.process(silence)

    def close(self) -> None:
        """Stop the worker thread (also done by ``prepare``/``reset`` and at exit)."""
        self._shutdown()

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive (``worker=True``, prepared, not closed)."""
        return self._thread is not None and self._thread.is_alive()

    def caught_up(self) -> bool:
        """Whether all input so far is processed: the worker has taken every whole resampler
        piece of it and run every chunk it made ready (always true with ``worker=False``)."""
        self._check_prepared()
        with self._lock:
            return self._in_write - self._in_read < self.piece and not self._ready()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the worker (``worker=True``): inside this block no chunk runs, while
        ``process`` still copies audio in and out. For hosts that must pause processing, and
        for tests that build up a backlog."""
        if not self.worker:
            raise RuntimeError("held(): a stream with worker=False processes inside process()")
        with self._lock:
            yield

    def __del__(self) -> None:
        self._stop = True
        wake = getattr(self, "_wake", None)
        if wake is not None:
            wake.set()

    # -- worker -------------------------------------------------------------------------------
    def _check_prepared(self) -> None:
        if not self._prepared:
            raise RuntimeError("call prepare(sample_rate, max_block, channels) first")

    def _shutdown(self) -> None:
        t = self._thread
        if t is not None:
            self._stop = True
            self._wake.set()
            t.join()
            self._thread = None

    def _pull_input(self) -> None:
        """Move host input from the ring through the input resampler into the chain."""
        cap = self._in.shape[1]
        end = self._in_write
        if end - self._in_read > cap:  # stalled so long that the ring wrapped: lose input
            lost = end - cap - self._in_read
            self.stats.overflow_samples += lost
            self._feed(np.zeros((self.channels, lost - lost % self.piece), np.float32))
            self._in_read += lost - lost % self.piece
        n = (end - self._in_read) // self.piece * self.piece
        if n <= 0:
            return
        s = self._in_read % cap
        k = min(n, cap - s)
        x = self._in[:, s : s + k]
        if k < n:
            x = np.concatenate([x, self._in[:, : n - k]], axis=1)
        else:
            x = x.copy()
        self._in_read += n
        self._feed(x)

    def _feed(self, x: np.ndarray) -> None:
        p = self.piece
        if p == 1 or x.shape[1] == 0:
            if x.shape[1]:
                self._add_input(self._rs_in.push(x))
            return
        parts = [self._rs_in.push(x[:, i : i + p]) for i in range(0, x.shape[1], p)]
        self._add_input(np.concatenate(parts, axis=1))

    def _add_input(self, x: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, x], axis=1) if self._pending.size else x

    def _deadline_passed(self, k: int) -> bool:
        """True when the caller has already read past the end of chunk k's output."""
        end48 = self._origin + (k + 1) * self.chunk
        return (self._out_read >= end48 * self.sample_rate // CODEC_RATE + self.latency
                - self.preroll)

    def _service(self) -> None:
        with self._lock:
            self._pull_input()
            while self._ready():
                live = self.worker and self.degrade
                if live and self._deadline_passed(self._k):
                    self._drop()
                    continue
                self._nfe = self.levels[self._level]
                self.stats.nfe = self._nfe
                t0 = time.perf_counter()
                try:
                    y, codes, gains = self._run_chunk()
                except Exception as e:  # never crash the audio path: drop and go on
                    self.stats.errors += 1
                    self.stats.last_error = f"{type(e).__name__}: {e}"
                    if not self.worker:
                        raise
                    self._drop()
                    continue
                dt = time.perf_counter() - t0
                self._emit(y)
                if self._packets is not None:
                    self._packets.add(codes, gains)
                st = self.stats
                st.chunks += 1
                st.work_seconds += dt
                st.audio_seconds += self.chunk / CODEC_RATE
                st.rtf_last = dt * CODEC_RATE / self.chunk
                st.rtf_history = (st.rtf_history + [st.rtf_last])[-64:]
                if live:
                    self._pull_input()
                    self._adapt(self._ready(), self._slack(self._k))

    def _slack(self, k: int) -> int:
        """Host samples left before the caller reaches the start of chunk k's output."""
        start48 = self._origin + k * self.chunk
        return (start48 * self.sample_rate // CODEC_RATE + self.latency - self.preroll
                - self._out_read)

    def _adapt(self, ready: bool, slack: int) -> None:
        """One step cheaper when the next chunk is waiting and less of the margin is left
        than an on-time chunk has (``margin - max_block``, at least half a chunk); one step
        back after :data:`RECOVER_AFTER` chunks with the worker idle. The cheapest step is the
        plain decoder: dropping a chunk that could still be on time (a single hiccup of more
        than one host block) would cost a whole chunk of audio."""
        if ready and slack < self.margin - self.max_block:
            self._on_time = 0
            if self._level < len(self.levels) - 1:
                self._level += 1
                self.stats.degradations += 1
        elif not ready:
            self._on_time += 1
            if self._on_time >= RECOVER_AFTER and self._level > 0:
                self._level -= 1
                self._on_time = 0
                self.stats.recoveries += 1
        self.stats.level = self._level

    def _drop(self) -> None:
        """Replace chunk k with silence and restart the stages after it."""
        self.stats.dropped_chunks += 1
        self._emit(np.zeros((self.channels, self.chunk), np.float32))
        origin = self._origin + (self._k + 1) * self.chunk
        keep = self._pending[:, max(0, origin - self._pending_start):]
        if self._pending_start > origin:  # the encoder took input past the restart: zeros
            keep = np.concatenate([np.zeros((self.channels, self._pending_start - origin),
                                            np.float32), keep], axis=1)
        self._restart(origin, keep.copy())
        if self._packets is not None:
            self._packets.drop_unmeasured()

    def _emit(self, y48: np.ndarray) -> None:
        y = self._rs_out.push(y48)
        n = y.shape[1]
        if n == 0:
            return
        pos = self._out_count + self.latency
        self._out_count += n
        lo = max(pos, self._out_read)  # samples the caller already passed are not written
        if lo < pos + n:
            cap = self._out.shape[1]
            seg = y[:, lo - pos :]
            s, m = lo % cap, seg.shape[1]
            k = min(m, cap - s)
            self._out[:, s : s + k] = seg[:, :k]
            if k < m:
                self._out[:, : m - k] = seg[:, k:]
        self._out_written = pos + n


class LivePackets:
    """The live ``.fdc`` packets of a stream:
    :data:`~flowdec.format.bitstream.LIVE_FRAMES_PER_PACKET` frames each, with their level
    gains. Codes lead their gains (the gains wait for the decoder), so a packet goes to
    ``send`` once the gains of all its frames are known."""

    def __init__(self, header: StreamHeader, send: Callable[[bytes], None]) -> None:
        self.header, self.send = header, send
        self.codes = np.zeros((header.channels, header.n_codebooks, 0), np.uint16)
        self.gains = np.zeros((header.channels, 0), np.float32)
        self.index = 0

    def add(self, codes: np.ndarray, gains: np.ndarray) -> None:
        """Codes ``[C, n_q, k]`` as encoded and gains ``[C, b]`` as measured."""
        g, f = LIVE_FRAMES_PER_GAIN, LIVE_FRAMES_PER_PACKET
        self.codes = np.concatenate([self.codes, codes.astype(np.uint16)], axis=2)
        self.gains = np.concatenate([self.gains, gains], axis=1)
        ready = min(self.codes.shape[2], self.gains.shape[1] * g) // f * f
        for i in range(0, ready, f):
            packet = Packet(self.index, self.codes[:, :, i : i + f],
                            self.gains[:, i // g : (i + f) // g])
            self.send(encode_packet(self.header, packet))
            self.index += 1
        self.codes = self.codes[:, :, ready:]
        self.gains = self.gains[:, ready // g :]

    def drop_unmeasured(self) -> None:
        """Forget the codes whose gains are still being measured (their audio was dropped)."""
        self.codes = self.codes[:, :, : self.gains.shape[1] * LIVE_FRAMES_PER_GAIN]

"""pedalboard integration: :class:`FlowDecEffect` (called like a pedalboard plugin) and
:class:`Pipeline` (pedalboard plugins and FlowDec stages in one latency-compensated chain).

pedalboard cannot host effects written in Python (pedalboard issue #12), so these objects
mimic a plugin's calling convention instead of subclassing one.

Latency: a whole-buffer call with ``reset=True`` returns output aligned with the input and
of the same length, as pedalboard does for its own plugins that report latency (it feeds
extra silence and trims the head). With ``reset=False`` the effect streams: state is kept
across calls and the output is delayed by ``reported_latency_samples`` (what a host's
latency compensation would see). :class:`Pipeline` always returns aligned output.

Example:
    >>> import numpy as np, pedalboard, flowdec
    >>> chain = flowdec.Pipeline([pedalboard.Gain(-3), flowdec.FlowDecEffect(bitrate=6.0),
    ...                           pedalboard.Reverb()])
    >>> out = chain(np.zeros((2, 44100), np.float32), 44100)   # [2, 44100], aligned
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .audio import as_audio, check_int, check_rate
from .codec import Codec
from .stream import DEFAULT_CONTEXT, MAX_BLOCK_LIMIT, Stream


def _blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for i in range(0, n, size):
        yield i, min(n, i + size)


class FlowDecEffect:
    """The FlowDec round trip (encode → decode → postfilter) as a pedalboard-style effect.

    Args:
        bitrate: kbit/s per channel; nfe: postfilter evaluations (None:
        :data:`~flowdec.stream.LIVE_NFE`); postfilter: on/off, None: on when ``nfe`` or
        ``seed`` is given, else as the model card recommends (:meth:`Codec.use_postfilter`);
        seed: postfilter noise seed (None: 0); model: model
        folder or shipped name (None: default);
        codec: an already loaded :class:`Codec` (shares its sessions; overrides ``model``);
        chunk_ms, context: see :class:`flowdec.Stream`.

    Processing is synchronous (deterministic, no worker thread): the output does not depend
    on ``buffer_size`` or on how the audio is split across ``reset=False`` calls.
    """

    def __init__(self, bitrate: float = 6.0, nfe: int | None = None,
                 postfilter: bool | None = None, seed: int | None = None,
                 model: str | os.PathLike[str] | None = None, codec: Codec | None = None,
                 chunk_ms: float | None = None, context: int = DEFAULT_CONTEXT) -> None:
        self.codec = codec if codec is not None else Codec.load(model)
        self.stream = Stream(self.codec, bitrate=bitrate, nfe=nfe, postfilter=postfilter,
                             seed=seed, chunk_ms=chunk_ms, worker=False, degrade=False,
                             context=context)
        self._spec: tuple[int, int, int] | None = None

    def _prepare(self, sample_rate: int, buffer_size: int, channels: int) -> None:
        spec = (sample_rate, buffer_size, channels)
        if spec != self._spec:
            self.stream.prepare(sample_rate, buffer_size, channels)
            self._spec = spec

    @property
    def reported_latency_samples(self) -> int:
        """Latency of ``reset=False`` output in samples at the last rate used (48 kHz and
        buffer_size 8192 before the first call)."""
        if self._spec is None:
            self._prepare(48000, 8192, 1)
        return self.stream.latency_samples

    def reset(self) -> None:
        """Forget the streaming state (the next ``reset=False`` call starts afresh)."""
        if self._spec is not None:
            self.stream.reset()

    def process(self, input_array: npt.ArrayLike, sample_rate: float, buffer_size: int = 8192,
                reset: bool = True) -> np.ndarray:
        """Process ``[channels, samples]`` (or ``[samples]``) float32 audio; same shape out."""
        mono = np.ndim(input_array) == 1
        a = as_audio(input_array, "input_array")
        sr = check_rate(sample_rate)
        bs = check_int(buffer_size, "buffer_size", 1, MAX_BLOCK_LIMIT)
        channels_changed = self._spec is not None and self._spec[2] != a.shape[0]
        self._prepare(sr, bs, a.shape[0])
        if reset or channels_changed:
            self.stream.reset()
        n = a.shape[1]
        if not reset:
            out = np.empty_like(a)
            for i, j in _blocks(n, bs):
                self.stream.process(a[:, i:j], out[:, i:j])
        else:
            lat = self.stream.latency_samples
            full = np.concatenate([a, np.zeros((a.shape[0], lat), np.float32)], axis=1)
            res = np.empty_like(full)
            for i, j in _blocks(full.shape[1], bs):
                self.stream.process(full[:, i:j], res[:, i:j])
            out = res[:, lat : lat + n]
            self.stream.reset()
        return out[0] if mono else out

    __call__ = process


class Pipeline:
    """A chain of pedalboard plugins and :class:`FlowDecEffect` stages, latency-compensated.

    Every stage streams (``reset=False``) over blocks, so a whole buffer and the same audio
    in pieces (``process_file``) give the same output; the sum of the FlowDec stages'
    latencies is flushed with silence and trimmed, so the output is aligned with the input
    and has its length. pedalboard's own plugins are assumed to compensate their latency
    (pedalboard's built-in effects such as Gain, Compressor and Reverb report none).
    """

    def __init__(self, plugins: Sequence[Any]) -> None:
        self.plugins = list(plugins)
        for p in self.plugins:
            if not callable(p):
                raise TypeError(f"Pipeline: {p!r} is not a pedalboard plugin or FlowDecEffect")

    def reset(self) -> None:
        for p in self.plugins:
            p.reset()

    def latency_samples(self, sample_rate: int, buffer_size: int = 8192, channels: int = 1
                        ) -> int:
        """Total latency the pipeline compensates, in samples at ``sample_rate``."""
        total = 0
        for p in self.plugins:
            if isinstance(p, FlowDecEffect):
                p._prepare(sample_rate, buffer_size, channels)
                total += p.reported_latency_samples
        return total

    def _run(self, x: np.ndarray, sr: int, bs: int) -> np.ndarray:
        for p in self.plugins:
            y = p(x, sr, buffer_size=bs, reset=False)
            x = np.ascontiguousarray(np.asarray(y, np.float32).reshape(x.shape))
        return x

    def _stream(self, chunks: Iterator[np.ndarray], sr: int, bs: int, channels: int
                ) -> Iterator[np.ndarray]:
        """Aligned output for successive input chunks (same total length)."""
        self.reset()
        lat = self.latency_samples(sr, bs, channels)
        skip = lat
        carry = np.zeros((channels, 0), np.float32)

        def pieces() -> Iterator[np.ndarray]:
            # whole multiples of bs per call: the same block grid however the input is split
            nonlocal carry
            for c in chunks:
                buf = np.concatenate([carry, c], axis=1) if carry.shape[1] else c
                n = buf.shape[1] // bs * bs
                carry = buf[:, n:]
                if n:
                    yield buf[:, :n]
            if carry.shape[1]:
                yield carry

        for c in pieces():
            y = self._run(c, sr, bs)
            drop = min(skip, y.shape[1])
            skip -= drop
            if drop < y.shape[1]:
                yield y[:, drop:]
        rest = lat
        while rest > 0:  # flush the latency with silence
            m = min(rest, max(1, (1 << 15) // bs) * bs)
            y = self._run(np.zeros((channels, m), np.float32), sr, bs)
            drop = min(skip, m)
            skip -= drop
            rest -= m
            if drop < m:
                yield y[:, drop:]

    def process(self, audio: npt.ArrayLike, sample_rate: float, buffer_size: int = 8192,
                reset: bool = True) -> np.ndarray:
        """Run the chain over a whole buffer; output aligned with the input, same shape.

        ``reset`` is accepted for signature compatibility; the pipeline always starts afresh.
        """
        mono = np.ndim(audio) == 1
        a = as_audio(audio)
        sr = check_rate(sample_rate)
        bs = check_int(buffer_size, "buffer_size", 1, MAX_BLOCK_LIMIT)
        parts = list(self._stream(iter([a]), sr, bs, a.shape[0]))
        out = np.concatenate(parts, axis=1)[:, : a.shape[1]]
        return out[0] if mono else out

    __call__ = process

    def process_file(self, in_path: str | os.PathLike[str], out_path: str | os.PathLike[str],
                     chunk_seconds: float = 10.0, buffer_size: int = 8192) -> None:
        """Stream a file through the chain with bounded memory, written as the ``flowdec``
        verbs write (:func:`flowdec.files.process_file`: the format follows the extension,
        ``.wav`` 32-bit float, overs of integer formats held by the peak limiter with a
        warning; a temporary name renamed when complete; never over ``in_path``)."""
        from .files import process_file

        bs = check_int(buffer_size, "buffer_size", 1, MAX_BLOCK_LIMIT)
        process_file(in_path, out_path, lambda chunks, sr, ch: self._stream(chunks, sr, bs, ch),
                     chunk_seconds, progress=False)

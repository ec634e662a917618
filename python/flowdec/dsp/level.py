"""Level side information: the encoder measures, the decoder restores.

A regression codec loses energy (it averages what it cannot predict: noise, fine detail),
by 1–6 dB on typical material and up to ~20 dB on noise-like sounds. The encoder therefore
runs the plain decoder on its own codes and measures, per **gain block** of
``frames_per_gain`` codec frames and per channel, the loudness correction

    gain_dB = 10·log10((Σ K(x)² + ε) / (Σ K(y)² + ε))

over the block's frames (x the 48 kHz input, y the plain decoder output, K the K-weighting
of ITU-R BS.1770 — the loudness meters' weighting — applied per frame in the frequency
domain, ε a −100 dBFS floor per sample so silence gives 0 dB). The gains travel in the packets
(:mod:`flowdec.format.bitstream`, one signed byte per block in 0.25 dB steps). The decoder's last
stage (:class:`OutputLevel`) gives each block of its output the input's loudness: the
transmitted gain, plus — when the postfilter ran — the measured ratio of the plain output to
the postfiltered one (:class:`GainStage` applies the result with short ramps).

:class:`PeakNormalizer` is the postfilter's input stage: it presents y at the peak level the
postfilter was trained at and undoes the gain on its output.

All classes are incremental and exact for any push pattern: a gain depends only on samples
up to a fixed point, the applied gain curve only on the sample index and the gains.

Example:
    >>> import numpy as np
    >>> tone = np.sin(2 * np.pi * 1000 * np.arange(3840) / 48000)[None].astype(np.float32)
    >>> m = LevelMeter(channels=1, hop=640, frames_per_gain=3)
    >>> m.add_input(tone)
    >>> m.add_output(0.5 * tone)
    >>> m.gains().tolist()     # two complete blocks, each 6 dB too quiet
    [[6.0, 6.0]]
    >>> g = GainStage(channels=1, hop=640, frames_per_gain=3)
    >>> g.add_gains(np.array([[6.0, 6.0]]))
    >>> y = g.push(0.5 * tone)
    >>> round(float(np.abs(y).max()), 3)
    0.998
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ..pipeline.stages import Stage

FLOOR = 1e-10
"""Energy floor per sample (−100 dBFS) added to both sides of the ratio."""

Audio = npt.NDArray[np.float32]
Gains = npt.NDArray[np.float32]


# ITU-R BS.1770 K-weighting at 48 kHz: a high shelf (+4 dB above ~2 kHz) then a high-pass
# (the "RLB" curve), as two biquads (b, a) from the standard.
_K_SHELF = ([1.53512485958697, -2.69169618940638, 1.19839281085285],
            [1.0, -1.69065929318241, 0.73248077421585])
_K_HIGHPASS = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


GAIN_STEP_DB = 0.25
"""Gains are stored as signed bytes in steps of this many dB."""
GAIN_LIMIT_DB = 127 * GAIN_STEP_DB
"""Largest stored gain magnitude (31.75 dB); the encoder clamps to it."""


def quantize_gains(gains_db: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The gains a decoder will see for ``gains_db``: signed steps of :data:`GAIN_STEP_DB`,
    rounded and clamped to ±:data:`GAIN_LIMIT_DB`, as a ``.fdc`` file stores them.

    Example:
        >>> quantize_gains([2.13, -50.0]).tolist()
        [2.25, -31.75]
    """
    g = np.asarray(gains_db, np.float64)
    steps = np.clip(np.rint(g / GAIN_STEP_DB), -127, 127).astype(np.int8)
    return (steps.astype(np.float32) * GAIN_STEP_DB).reshape(g.shape)


def k_weights(n: int) -> npt.NDArray[np.float64]:
    """Power response |K(f)|² at the ``n // 2 + 1`` bins of an ``n``-point real FFT at 48 kHz,
    times the one-sided Parseval factors, over ``n``: ``Σ weights·|rfft(x)|²`` is the
    K-weighted energy of the frame ``x`` (+0.7 dB at 1 kHz, +4 dB above 5 kHz)."""
    z = np.exp(-1j * 2 * np.pi * np.arange(n // 2 + 1) / n)
    h = np.ones_like(z)
    for b, a in (_K_SHELF, _K_HIGHPASS):
        h *= np.polyval(b[::-1], z) / np.polyval(a[::-1], z)
    w: npt.NDArray[np.float64] = np.abs(h) ** 2 * 2 / n
    w[0] /= 2
    if n % 2 == 0:
        w[-1] /= 2
    return w


class _FrameEnergy:
    """Per-frame K-weighted energy (float64) of a signal pushed from sample 0 in any pieces."""

    def __init__(self, channels: int, hop: int) -> None:
        self.hop = hop
        self.weights = k_weights(hop)
        self.rest = np.zeros((channels, 0), np.float64)
        self.frames: list[npt.NDArray[np.float64]] = []
        self.total = 0  # complete frames pushed
        self.taken = 0  # frames handed out by take()

    @property
    def available(self) -> int:
        return self.total - self.taken

    @property
    def pushed(self) -> int:
        """Samples pushed (before any zero completion by :meth:`finish`)."""
        return self.total * self.hop + self.rest.shape[1]

    def push(self, x: npt.ArrayLike) -> None:
        a = np.concatenate([self.rest, np.asarray(x, np.float64)], axis=1)
        n = a.shape[1] // self.hop
        if n:
            spec = np.fft.rfft(a[:, : n * self.hop].reshape(a.shape[0], n, self.hop), axis=2)
            self.frames.append((spec.real**2 + spec.imag**2) @ self.weights)
            self.total += n
        self.rest = a[:, n * self.hop :]

    def finish(self, frames: int) -> None:
        """Complete the signal to ``frames`` frames with zeros (a partial last frame too)."""
        if self.total < frames:
            pad = (frames - self.total) * self.hop - self.rest.shape[1]
            self.push(np.zeros((self.rest.shape[0], pad), np.float64))

    def take(self, n: int) -> npt.NDArray[np.float64]:
        """Remove and return the next ``n`` frame energies ``[C, n]``."""
        e = np.concatenate(self.frames, axis=1) if len(self.frames) > 1 else self.frames[0]
        self.frames = [e[:, n:]] if e.shape[1] > n else []
        self.taken += n
        return e[:, :n]


class LevelMeter:
    """Gains of complete blocks from the input and the plain decoder output (48 kHz, both
    pushed from sample 0 in any pieces); :meth:`gains` returns each block once, quantised as
    the decoder will see it (``quantize=False``: as measured)."""

    def __init__(self, channels: int, hop: int, frames_per_gain: int,
                 quantize: bool = True) -> None:
        if frames_per_gain < 1:
            raise ValueError(f"frames_per_gain: must be >= 1, got {frames_per_gain}")
        self.channels, self.hop, self.g = channels, hop, frames_per_gain
        self.quantize = quantize  # to the transmitted grid (else float32 dB as measured)
        self.x = _FrameEnergy(channels, hop)
        self.y = _FrameEnergy(channels, hop)

    def add_input(self, x: npt.ArrayLike) -> None:
        self.x.push(x)

    def add_output(self, y: npt.ArrayLike) -> None:
        self.y.push(y)

    def _blocks(self, frames: int) -> Gains:
        ex, ey = self.x.take(frames), self.y.take(frames)
        nb = -(-frames // self.g)
        pad = ((0, 0), (0, nb * self.g - frames))
        ex = np.pad(ex, pad).reshape(self.channels, nb, self.g).sum(2)
        ey = np.pad(ey, pad).reshape(self.channels, nb, self.g).sum(2)
        # the floor scales with the block's real length (a short last block)
        n = np.minimum(self.g, frames - np.arange(nb) * self.g) * self.hop * FLOOR
        db = 10 * np.log10((ex + n) / (ey + n))
        return quantize_gains(db) if self.quantize else db.astype(np.float32)

    def gains(self) -> Gains:
        """Gains ``[C, b]`` in dB of the blocks completed since the last call."""
        ready = min(self.x.available, self.y.available) // self.g * self.g
        if ready == 0:
            return np.zeros((self.channels, 0), np.float32)
        return self._blocks(ready)

    def finish(self) -> Gains:
        """Gains of the remaining blocks: the stream is as many frames as the longer of the
        two signals pushed covers (the other is completed with silence; the last block may
        be short)."""
        total_frames = -(-max(self.x.pushed, self.y.pushed) // self.hop)
        self.x.finish(total_frames)
        self.y.finish(total_frames)
        left = total_frames - self.x.taken
        return self._blocks(left) if left > 0 else np.zeros((self.channels, 0), np.float32)


_SLICE = 1 << 20
"""Samples (all channels together) :class:`GainStage` scales at a time."""


class GainStage:
    """Plain decoder output (48 kHz, from sample 0, any pieces) → level-corrected output.

    Frame ``k`` belongs to block ``k // frames_per_gain``; its samples get that block's
    gain, except the first frame of each block after the first, which ramps (linearly in
    dB) from the previous block's gain, so gain changes never click. Gains must be added
    (:meth:`add_gains`) before the samples they cover are pushed.
    """

    def __init__(self, channels: int, hop: int, frames_per_gain: int) -> None:
        if frames_per_gain < 1:
            raise ValueError(f"frames_per_gain: must be >= 1, got {frames_per_gain}")
        self.channels, self.hop, self.g = channels, hop, frames_per_gain
        self.block_gains = np.zeros((channels, 0), np.float64)
        self.first_block = 0  # global index of block_gains[:, 0]
        self.pos = 0  # samples pushed so far

    def add_gains(self, gains_db: npt.ArrayLike) -> None:
        self.block_gains = np.concatenate(
            [self.block_gains, np.asarray(gains_db, np.float64).reshape(self.channels, -1)],
            axis=1)

    @property
    def samples_covered(self) -> int:
        """Samples from the start that the gains added so far cover."""
        return (self.first_block + self.block_gains.shape[1]) * self.g * self.hop

    def push(self, y: npt.ArrayLike) -> Audio:
        y = np.asarray(y, np.float32)
        n = y.shape[1]
        if n == 0:
            return y.copy()
        step = max(self.hop, _SLICE // self.channels)  # bounded float64 temporaries
        if n > step:
            return np.concatenate([self.push(y[:, a : a + step]) for a in range(0, n, step)],
                                  axis=1)
        if self.pos + n > self.samples_covered:
            raise ValueError(
                f"gains cover samples up to {self.samples_covered}, audio reaches "
                f"{self.pos + n}: add the gains of a block before its audio")
        idx = np.arange(self.pos, self.pos + n)
        frame = idx // self.hop
        block = frame // self.g - self.first_block
        cur = self.block_gains[:, block]
        prev = self.block_gains[:, np.maximum(block - 1, 0)]
        ramp = (frame % self.g == 0) & (frame >= self.g)
        t = ((idx % self.hop) + 0.5) / self.hop
        db = np.where(ramp, prev + (cur - prev) * t, cur)
        out = (y * 10.0 ** (db / 20.0)).astype(np.float32)
        self.pos += n
        # keep the block before the next sample's block (its ramp needs it)
        drop = max(0, (self.pos // self.hop) // self.g - 1 - self.first_block)
        if drop:
            self.block_gains = self.block_gains[:, drop:]
            self.first_block += drop
        return out


class PeakNormalizer:
    """Presents audio to the postfilter at the level it was trained at, and undoes it.

    The postfilter was trained on examples normalised to peak levels up to ``peak_dbfs``; its
    prior noise σ_y is fixed, so quiet input drowns in it. Per channel and frame, the peak
    envelope follows the frame peaks at once upwards and decays by ``release_db_per_s``
    (never below ``floor_dbfs``, so silence is boosted at most ``peak_dbfs − floor_dbfs``);
    a frame's gain brings the envelope of that frame *and the next* to ``peak_dbfs`` (the
    smaller of the two gains), so an onset is already attenuated when it starts and nothing
    is pushed far above the training range. Gains ramp within a frame as in
    :class:`GainStage`. :meth:`push` therefore returns a frame's samples once the next frame
    is complete (it holds back up to :data:`HOLD_FRAMES` frames; :meth:`finish` ends the
    stream), and :meth:`restore` applies the inverse gains to the postfilter output. The
    result does not depend on how the audio is split into pushes.

    Example:
        >>> import numpy as np
        >>> n = PeakNormalizer(1, hop=640, peak_dbfs=0.0, release_db_per_s=20.0,
        ...                    floor_dbfs=-50.0, frame_rate=75.0)
        >>> quiet = 0.01 * np.sin(np.arange(6400) / 5.0)[None].astype(np.float32)
        >>> y = np.concatenate([n.push(quiet), n.finish()], axis=1)
        >>> y.shape, round(float(np.abs(y).max()), 2)   # 0 dBFS peaks, all samples back
        ((1, 6400), 1.0)
        >>> bool(np.allclose(n.restore(y), quiet, atol=1e-6))
        True
    """

    HOLD_FRAMES = 2
    """Most frames :meth:`push` holds back: the incomplete one and the one before it."""

    def __init__(self, channels: int, hop: int, peak_dbfs: float, release_db_per_s: float,
                 floor_dbfs: float, frame_rate: float) -> None:
        self.channels, self.hop = channels, hop
        self.peak_dbfs, self.floor = peak_dbfs, 10.0 ** (floor_dbfs / 20)
        self.release = 10.0 ** (-release_db_per_s / 20 / frame_rate)  # per frame
        self.reset()

    @property
    def latency(self) -> int:
        return self.HOLD_FRAMES * self.hop

    def reset(self) -> None:
        channels, hop = self.channels, self.hop
        self.env = np.full(channels, self.floor)  # envelope of the last complete frame
        self.held = np.zeros((channels, 0), np.float32)  # samples not yet returned
        self.held_start = 0  # sample index of held[:, 0]
        self.wants: list[npt.NDArray[np.float64]] = []  # gains wanted by complete frames
        self.complete = 0  # complete frames seen
        self.gained = 0  # frames whose gain is decided
        self.forward = GainStage(channels, hop, 1)
        self.inverse = GainStage(channels, hop, 1)

    def _want(self, peak: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        self.env = np.maximum(np.maximum(peak, self.env * self.release), self.floor)
        want: npt.NDArray[np.float64] = self.peak_dbfs - 20 * np.log10(self.env)
        return want

    def _decide(self, upto: int) -> None:
        """Decide the gains of frames [gained, upto): min of the frame's and the next's."""
        gains = []
        while self.gained < upto:
            k = self.gained - (self.complete - len(self.wants))  # index into wants
            nxt = self.wants[k + 1] if k + 1 < len(self.wants) else self.wants[k]
            gains.append(np.minimum(self.wants[k], nxt))
            self.gained += 1
        if gains:
            g = np.stack(gains, axis=1)
            self.forward.add_gains(g)
            self.inverse.add_gains(-g)
            drop = len(self.wants) - (self.complete - self.gained) - 1
            del self.wants[: max(0, drop)]

    def _release(self, upto_sample: int) -> Audio:
        n = max(0, upto_sample - self.held_start)
        out, self.held = self.held[:, :n], self.held[:, n:]
        self.held_start += n
        return self.forward.push(out)

    def push(self, y: npt.ArrayLike) -> Audio:
        """Normalised samples, from where the previous call stopped, up to the start of the
        last complete frame (fewer than :data:`HOLD_FRAMES` frames stay held)."""
        self.held = np.concatenate([self.held, np.asarray(y, np.float32)], axis=1)
        end = self.held_start + self.held.shape[1]
        while (self.complete + 1) * self.hop <= end:
            a = self.complete * self.hop - self.held_start
            self.wants.append(self._want(np.abs(self.held[:, a : a + self.hop]).max(1)))
            self.complete += 1
        self._decide(max(0, self.complete - 1))
        return self._release(self.gained * self.hop)

    def finish(self) -> Audio:
        """The end of the stream: the held samples (a partial last frame counts as a frame)."""
        end = self.held_start + self.held.shape[1]
        if end > self.complete * self.hop:
            a = self.complete * self.hop - self.held_start
            self.wants.append(self._want(np.abs(self.held[:, a:]).max(1)))
            self.complete += 1
        self._decide(self.complete)
        return self._release(end)

    def restore(self, z: npt.ArrayLike) -> Audio:
        """Undo the gains on the postfilter output (pushed in order from sample 0, never past
        the samples returned so far)."""
        return self.inverse.push(z)


class OutputLevel:
    """The decoder's last stage, on both paths: each gain block of the output gets the
    input's loudness, around the stage before it (``inner``: the postfilter, or None).

    The transmitted gain says how much louder the input was than the plain decoder output y
    (what :meth:`push` takes); the inner stage changes the level again, so the block's final
    gain is the transmitted gain plus the measured ratio of y to the inner stage's output z
    (0 dB on the plain codec path, where z = y). A block's samples are returned once it is
    complete in both (at :meth:`finish` for the last one, whose stream is as long as the y
    pushed, whole codec frames).

    Example:
        >>> import numpy as np
        >>> tone = np.sin(2 * np.pi * 1000 * np.arange(3840) / 48000)[None].astype(np.float32)
        >>> class Quieter:  # a postfilter that loses 6 dB
        ...     latency = 0
        ...     def push(self, y): return 0.5 * y
        ...     def finish(self): return np.zeros((1, 0), np.float32)
        ...     def reset(self): pass
        >>> o = OutputLevel(channels=1, hop=640, frames_per_gain=3, inner=Quieter())
        >>> o.add_gains(np.array([[6.0, 6.0]]))     # the input was 6 dB louder than y
        >>> z = o.push(0.5 * tone)
        >>> round(float(np.abs(z).max()), 3)
        0.998
    """

    def __init__(self, channels: int, hop: int, frames_per_gain: int,
                 inner: Stage | None = None) -> None:
        self.channels, self.hop, self.g = channels, hop, frames_per_gain
        self.inner = inner
        self.reset()

    @property
    def latency(self) -> int:
        """The inner stage's (a block's own samples wait for the block to complete)."""
        return self.inner.latency if self.inner is not None else 0

    def reset(self) -> None:
        channels, hop, frames_per_gain = self.channels, self.hop, self.g
        self.meter = LevelMeter(channels, hop, frames_per_gain, quantize=False)
        self.stage = GainStage(channels, hop, frames_per_gain)
        self.transmitted = np.zeros((channels, 0), np.float32)  # gains not yet used
        self.held = np.zeros((channels, 0), np.float32)  # output not yet returned
        self.pushed = 0  # samples of y pushed
        if self.inner is not None:
            self.inner.reset()

    def add_gains(self, gains_db: npt.ArrayLike) -> None:
        g = np.asarray(gains_db, np.float32).reshape(self.channels, -1)
        self.transmitted = np.concatenate([self.transmitted, g], axis=1)

    def _use(self, ratio_db: Gains) -> Audio:
        n = ratio_db.shape[1]
        if n > self.transmitted.shape[1]:
            raise ValueError("the transmitted gains of a block must be added before its audio "
                             "is complete")
        self.stage.add_gains(self.transmitted[:, :n] + ratio_db)
        self.transmitted = self.transmitted[:, n:]
        k = min(self.held.shape[1], self.stage.samples_covered - self.stage.pos)
        out, self.held = self.held[:, :k], self.held[:, k:]
        return self.stage.push(out)

    def _add(self, z: npt.ArrayLike) -> Audio:
        z = np.asarray(z, np.float32)
        self.meter.add_output(z)
        self.held = np.concatenate([self.held, z], axis=1)
        return self._use(self.meter.gains())

    def push(self, y: npt.ArrayLike) -> Audio:
        """More plain decoder output (band gains applied); the output now final."""
        y = np.asarray(y, np.float32)
        self.meter.add_input(y)
        self.pushed += y.shape[1]
        return self._add(self.inner.push(y) if self.inner is not None else y)

    def finish(self) -> Audio:
        """The rest: the inner stage's, then the last blocks'."""
        out = self._add(self.inner.finish()) if self.inner is not None else None
        last = self._use(self.meter.finish())
        return last if out is None else np.concatenate([out, last], axis=1)

"""Level side information: the encoder measures, the decoder restores.

A regression codec loses energy (it averages what it cannot predict: noise, fine detail),
by 1–6 dB on typical material and up to ~20 dB on noise-like sounds. The encoder therefore
runs the plain decoder on its own codes and measures, per **gain block** of
``frames_per_gain`` codec frames and per channel, the loudness correction

    gain_dB = 10·log10((Σ K(x)² + ε) / (Σ K(y)² + ε))

over the block's frames (x the 48 kHz input, y the plain decoder output, K the K-weighting
of ITU-R BS.1770 — the loudness meters' weighting — applied per frame in the frequency
domain, ε a −100 dBFS floor per sample so silence gives 0 dB). The gains travel in the packets
(:mod:`flowdec.bitstream`, one signed byte per block in 0.25 dB steps) and the decoder
multiplies its plain output by them (:class:`GainStage`). The postfilter path does not
apply them: the postfilter was trained on the uncorrected decoder output and restores
level itself.

Both classes are incremental and exact for any push pattern: a gain depends only on the
samples of its block, the applied gain curve only on the sample index and the block gains.

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

import numpy as np
import numpy.typing as npt

from .bitstream import quantize_gains

FLOOR = 1e-10
"""Energy floor per sample (−100 dBFS) added to both sides of the ratio."""

Audio = npt.NDArray[np.float32]
Gains = npt.NDArray[np.float32]


# ITU-R BS.1770 K-weighting at 48 kHz: a high shelf (+4 dB above ~2 kHz) then a high-pass
# (the "RLB" curve), as two biquads (b, a) from the standard.
_K_SHELF = ([1.53512485958697, -2.69169618940638, 1.19839281085285],
            [1.0, -1.69065929318241, 0.73248077421585])
_K_HIGHPASS = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


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
    the decoder will see it."""

    def __init__(self, channels: int, hop: int, frames_per_gain: int) -> None:
        if frames_per_gain < 1:
            raise ValueError(f"frames_per_gain: must be >= 1, got {frames_per_gain}")
        self.channels, self.hop, self.g = channels, hop, frames_per_gain
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
        return quantize_gains(10 * np.log10((ex + n) / (ey + n)))

    def gains(self) -> Gains:
        """Gains ``[C, b]`` in dB of the blocks completed since the last call."""
        ready = min(self.x.available, self.y.available) // self.g * self.g
        if ready == 0:
            return np.zeros((self.channels, 0), np.float32)
        return self._blocks(ready)

    def finish(self, total_frames: int) -> Gains:
        """Gains of the remaining blocks of a stream of ``total_frames`` frames (the input
        and output beyond what was pushed count as silence; the last block may be short)."""
        self.x.finish(total_frames)
        self.y.finish(total_frames)
        left = total_frames - self.x.taken
        return self._blocks(left) if left > 0 else np.zeros((self.channels, 0), np.float32)


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

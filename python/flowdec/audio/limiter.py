"""A look-ahead peak limiter for integer output files, so decoded overs are not hard-clipped.

The codec does not keep a waveform's phases, so decoded audio can peak above full scale
where the input did not (a few dB over on the bundled example clip). 32-bit float WAV keeps
such peaks; an integer format (FLAC, AIFF, MP3, Ogg) would clip them.
:class:`PeakLimiter` instead lowers the gain around each over:

- ``r[n] = min(1, ceiling / max_c |x[c, n]|)``, the gain sample n can take (channels linked);
- ``h[m] = min r[m − hold … m + lookahead]``, held for ``hold`` samples after a peak;
- ``g[n] = mean h[n − lookahead … n]``, a linear ramp of ``lookahead`` samples in and out.

Every ``h[m]`` that ``g[n]`` averages has ``n`` in its window, so ``g[n] ≤ r[n]`` and the
output never exceeds the ceiling; where nothing within ``hold + lookahead`` samples exceeds
it the output is the input, bit for bit. The output is delayed by ``lookahead`` samples
inside the limiter (``push`` returns what is ready, ``finish`` the rest), and it does not
depend on how the input is split into pushes.

Example:
    >>> import numpy as np
    >>> lim = PeakLimiter(channels=1, sample_rate=48000)
    >>> x = np.zeros((1, 4800), np.float32); x[0, 2000] = 1.5
    >>> y = np.concatenate([lim.push(x), lim.finish()], axis=1)
    >>> y.shape, bool(np.abs(y).max() <= 10 ** (-0.3 / 20)), float(y[0, 0])
    ((1, 4800), True, 0.0)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

CEILING_DB = -0.3
"""Output peak ceiling, dBFS (room for the rounding of 16/24-bit formats and MP3 decoders)."""
LOOKAHEAD_S = 0.005
"""Look-ahead, and the length of the gain's ramps (5 ms)."""
HOLD_S = 0.05
"""How long the gain stays down after a peak before it ramps back (50 ms)."""


def running_min(r: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.float64]:
    """``out[j] = min(r[j : j + window])`` for every full window (van Herk / Gil-Werman:
    block-wise prefix and suffix minima, O(n) whatever the window)."""
    n = r.shape[0]
    count = n - window + 1
    if count <= 0:
        return np.zeros(0)
    blocks = np.concatenate([r, np.full((-n) % window, np.inf)]).reshape(-1, window)
    prefix = np.minimum.accumulate(blocks, axis=1).ravel()
    suffix = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    j = np.arange(count)
    out: npt.NDArray[np.float64] = np.minimum(suffix[j], prefix[j + window - 1])
    return out


class PeakLimiter:
    """Streaming look-ahead limiter for ``[channels, samples]`` float audio (module doc)."""

    def __init__(self, channels: int, sample_rate: float, ceiling_db: float = CEILING_DB,
                 lookahead_s: float = LOOKAHEAD_S, hold_s: float = HOLD_S) -> None:
        if not (ceiling_db <= 0 and lookahead_s > 0 and hold_s >= 0 and sample_rate > 0):
            raise ValueError("a peak limiter needs ceiling_db <= 0, lookahead_s > 0, "
                             "hold_s >= 0 and sample_rate > 0")
        self.ceiling = 10 ** (ceiling_db / 20)
        self.lookahead = max(1, int(round(lookahead_s * sample_rate)))
        self.hold = int(round(hold_s * sample_rate))
        self.channels = channels
        self.reset()

    @property
    def latency(self) -> int:
        """The look-ahead, in samples at the limiter's rate."""
        return self.lookahead

    def reset(self) -> None:
        channels = self.channels
        self.pending = np.zeros((channels, 0), np.float32)  # pushed, not yet returned
        # gains r of samples [returned − lookahead − hold, pushed); 1 before the start
        self.r = np.ones(self.lookahead + self.hold)
        self.limited = 0  # samples returned with a gain below 1

    def push(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Take ``x`` ``[channels, n]``; return the samples whose look-ahead is complete."""
        a = np.asarray(x, np.float32)
        if a.ndim != 2 or a.shape[0] != self.channels:
            raise ValueError(f"expected [{self.channels}, samples], got {a.shape}")
        peak = np.abs(a).max(axis=0) if a.shape[1] else np.zeros(0, np.float32)
        self.r = np.concatenate([self.r, np.minimum(1.0, self.ceiling / np.maximum(peak, 1e-30))])
        self.pending = np.concatenate([self.pending, a], axis=1)
        return self._emit(self.pending.shape[1] - self.lookahead)

    def finish(self) -> npt.NDArray[np.float32]:
        """The rest (the signal is taken to end here: silence after it)."""
        self.r = np.concatenate([self.r, np.ones(self.lookahead)])
        return self._emit(self.pending.shape[1])

    def _emit(self, k: int) -> npt.NDArray[np.float32]:
        if k <= 0:
            return np.zeros((self.channels, 0), np.float32)
        L = self.lookahead
        # h for samples [returned − L, returned + k): windows of r of length hold + L + 1
        h = running_min(self.r[: 2 * L + self.hold + k], self.hold + L + 1)
        # g = mean of h over [n − L, n]: 1 exactly where that is all ones, else summed per
        # window (not by a running sum), so no push pattern changes a bit of it
        low = np.flatnonzero(running_min(h, L + 1) < 1.0)
        out = self.pending[:, :k]
        if low.size:
            g = np.ones(k)
            g[low] = np.lib.stride_tricks.sliding_window_view(h, L + 1)[low].mean(axis=1)
            self.limited += int(low.size)
            out = (out * g).astype(np.float32)
        self.pending = self.pending[:, k:]
        self.r = self.r[k:]
        return out

"""Band levels: per gain block and ERB band, the encoder measures, the decoder restores.

The broadband level gains (:mod:`flowdec.dsp.level`) give each block the input's loudness, but
the codec's spectral balance is off by several dB per band on much material. So files also
carry, per gain block (1 s), channel and ERB-spaced band, a coarse gain that brings the
plain decoder output's level in that band to the input's, in :data:`BAND_STEP_DB` steps
stored in 4 bits (−24 … +21 dB). ``python benchmarks/bench_band_levels.py`` measures what
it buys (benchmarks/README.md).

The encoder measures a band's level change as the mean of two estimates in dB: the ratio of
the block's summed band energies (dominated by the loudest frames) and the mean of the
per-frame ratios (every frame counts the same). The first alone boosts bands the codec left
nearly empty in quiet frames, amplifying artefacts; the second alone loses on speech (the
comparison of rules is in benchmarks/README.md). The decoder only applies gains, so the
rule is the encoder's to change.

Both sides use the same short-time Fourier transform (Hann window of :data:`N_FFT` samples,
hop :data:`HOP`, the postfilter's features). Frame ``n`` covers samples
``[(n − 3)·HOP, (n + 1)·HOP)``, so every sample from 0 on lies in four frames; a frame
belongs to the gain block that holds its first sample (frames starting before 0 belong to
block 0). The encoder's :class:`BandLevelMeter` takes each block's frame energies per band
of the input x and the plain decoder output y; the decoder's :class:`BandGainStage` scales
each frame of y by its block's gains (interpolated across frequency, linearly in ERB rate
between band centres) and overlap-adds. A sample therefore depends only on the gains of its
own block and earlier ones, and block boundaries cross-fade over one window (32 ms).

Everything is incremental and exact for any push pattern; with 0 dB gains the stage gives
y back (to float rounding).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((1, 48000)).astype(np.float32) * 0.1
    >>> y = x * 10 ** (-6 / 20)                       # the "decoder" lost 6 dB everywhere
    >>> m = BandLevelMeter(channels=1, hop=640, frames_per_gain=75, bands=24)
    >>> m.add_input(x); m.add_output(y)
    >>> g = m.finish()
    >>> g.shape, sorted(set(g.ravel().tolist()))      # [channels, blocks, bands], 6 dB
    ((1, 1, 24), [6.0])
    >>> s = BandGainStage(channels=1, hop=640, frames_per_gain=75, bands=24)
    >>> s.add_gains(g)
    >>> z = np.concatenate([s.push(y), s.finish()], axis=1)
    >>> bool(np.allclose(z, x, atol=1e-5))
    True
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .envelope import band_edges, erb_rate

N_FFT = 1536
"""Window length of the band analysis (samples at 48 kHz)."""
HOP = 384
"""Hop of the band analysis (a quarter window, so Hann analysis and synthesis overlap-add to
a constant)."""
RATE = 48000
BAND_STEP_DB = 3.0
"""Band gains are stored as 4-bit signed steps of this many dB."""
BAND_STEP_RANGE = (-8, 7)
"""Smallest and largest stored step (−24 dB … +21 dB); the encoder clamps to them."""
FLOOR = 1e-10
"""Energy floor per sample (−100 dBFS), so silent bands get 0 dB instead of 0/0."""
_PAST = N_FFT // HOP - 1  # frame n starts _PAST hops before hop n

Audio = npt.NDArray[np.float32]
BandGains = npt.NDArray[np.float32]


def quantize_band_gains(gains_db: npt.ArrayLike) -> BandGains:
    """The band gains a decoder will see for ``gains_db`` (rounded to :data:`BAND_STEP_DB`
    steps, clamped to :data:`BAND_STEP_RANGE`).

    Example:
        >>> quantize_band_gains([1.4, 1.6, -40.0, 40.0]).tolist()
        [0.0, 3.0, -24.0, 21.0]
    """
    lo, hi = BAND_STEP_RANGE
    steps = np.clip(np.rint(np.asarray(gains_db, np.float64) / BAND_STEP_DB), lo, hi)
    return (steps * BAND_STEP_DB).astype(np.float32)


def _window() -> npt.NDArray[np.float64]:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann


class BandLayout:
    """The ``bands`` ERB-spaced bands of the analysis (:func:`flowdec.dsp.envelope.band_edges`
    at :data:`N_FFT`, 48 kHz) and the per-bin interpolation of band gains."""

    def __init__(self, bands: int) -> None:
        if bands < 1:
            raise ValueError(f"bands: must be >= 1, got {bands}")
        self.edges = band_edges(N_FFT, RATE, bands)
        self.bands = len(self.edges) - 1
        n_bins = N_FFT // 2 + 1
        erb = erb_rate(np.arange(n_bins) * RATE / N_FFT)
        centres = np.add.reduceat(erb, self.edges[:-1]) / np.diff(self.edges)
        # interp[f, b]: weight of band b's dB gain at bin f (linear in ERB rate between band
        # centres, flat outside the outermost ones)
        eye = np.eye(self.bands)
        self.interp = np.stack([np.interp(erb, centres, eye[b]) for b in range(self.bands)],
                               axis=1)
        self.bins = np.diff(self.edges)

    def energy(self, power: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Band energies ``[..., bands, k]`` of per-bin powers ``[..., bins, k]``."""
        return np.add.reduceat(power, self.edges[:-1], axis=-2)


class _Frames:
    """Spectra of the analysis frames of a signal pushed from sample 0 in any pieces."""

    def __init__(self, channels: int) -> None:
        self.window = _window()
        self.buf = np.zeros((channels, _PAST * HOP), np.float64)  # samples before 0 are 0
        self.buf_start = -_PAST * HOP  # sample index of buf[:, 0]
        self.received = 0
        self.next = 0  # next frame to analyse

    def push(self, x: npt.ArrayLike) -> npt.NDArray[np.complex128]:
        """Spectra ``[C, bins, k]`` of the frames completed by ``x``."""
        self.buf = np.concatenate([self.buf, np.asarray(x, np.float64)], axis=1)
        self.received += np.shape(x)[1]
        return self._analyse()

    def pad_to(self, length: int) -> npt.NDArray[np.complex128]:
        """Complete the signal with zeros so that every frame starting before ``length``
        (and after the ones analysed) is complete; their spectra."""
        frames = -(-length // HOP) + _PAST  # frames that start before ``length``
        need = frames * HOP - self.received
        if need > 0:
            self.buf = np.pad(self.buf, ((0, 0), (0, need)))
            self.received += need
        return self._analyse(frames)

    def _analyse(self, limit: int | None = None) -> npt.NDArray[np.complex128]:
        last = self.received // HOP  # frames 0 .. last-1 are complete
        if limit is not None:
            last = min(last, limit)
        k = last - self.next
        if k <= 0:
            return np.zeros((self.buf.shape[0], N_FFT // 2 + 1, 0), np.complex128)
        lo = (self.next - _PAST) * HOP - self.buf_start
        seg = self.buf[:, lo : lo + (k - 1) * HOP + N_FFT]
        frames = np.lib.stride_tricks.sliding_window_view(seg, N_FFT, axis=1)[:, ::HOP]
        spec = np.fft.rfft(frames * self.window, axis=2).transpose(0, 2, 1)
        self.next = last
        drop = (self.next - _PAST) * HOP - self.buf_start
        self.buf = self.buf[:, drop:]
        self.buf_start += drop
        return spec


def _block_of(frames: npt.NDArray[np.int64], block_samples: int) -> npt.NDArray[np.int64]:
    """Gain block of each frame: the block holding its first sample (block 0 before 0)."""
    return np.maximum(0, (frames - _PAST) * HOP) // block_samples


class BandLevelMeter:
    """Band gains ``[C, blocks, bands]`` of complete gain blocks from the input and the plain
    decoder output (48 kHz, both pushed from sample 0 in any pieces), quantised as the
    decoder will see them (``quantize=False``: float dB as measured)."""

    def __init__(self, channels: int, hop: int, frames_per_gain: int, bands: int,
                 quantize: bool = True) -> None:
        if frames_per_gain < 1:
            raise ValueError(f"frames_per_gain: must be >= 1, got {frames_per_gain}")
        self.layout = BandLayout(bands)
        self.channels, self.quantize, self.hop = channels, quantize, hop
        self.block_samples = frames_per_gain * hop
        self.x, self.y = _Frames(channels), _Frames(channels)
        self.pushed = 0  # samples of the longer signal pushed
        shape = (channels, self.layout.bands, 0)
        self.ex, self.ey = np.zeros(shape), np.zeros(shape)  # band energies of frames
        self.first = 0  # global frame index of ex[..., 0] (== ey's)
        self.blocks = 0  # blocks returned so far
        self.floor = FLOOR * float(np.sum(_window() ** 2)) * self.layout.bins[:, None]

    def add_input(self, x: npt.ArrayLike) -> None:
        self.ex = self._add(self.ex, self.x.push(x))
        self.pushed = max(self.pushed, self.x.received)

    def add_output(self, y: npt.ArrayLike) -> None:
        self.ey = self._add(self.ey, self.y.push(y))
        self.pushed = max(self.pushed, self.y.received)

    def _add(self, e: npt.NDArray[np.float64], spec: npt.NDArray[np.complex128]
             ) -> npt.NDArray[np.float64]:
        return np.concatenate([e, self.layout.energy(spec.real**2 + spec.imag**2)], axis=2)

    def _take(self, upto_frame: int, last_block: int) -> BandGains:
        """Gains of blocks [blocks, last_block) from frames [first, upto_frame)."""
        n = upto_frame - self.first
        idx = _block_of(np.arange(self.first, upto_frame), self.block_samples) - self.blocks
        nb = last_block - self.blocks
        onehot = (idx[:, None] == np.arange(nb)).astype(np.float64)  # [frames, blocks]
        ex, ey = self.ex[..., :n], self.ey[..., :n]
        frames = onehot.sum(0)
        eps = self.floor * frames
        of_sums = 10 * np.log10((ex @ onehot + eps) / (ey @ onehot + eps))
        per_frame = 10 * np.log10((ex + self.floor) / (ey + self.floor))
        db = 0.5 * (of_sums + (per_frame @ onehot) / frames)
        self.ex, self.ey = self.ex[..., n:], self.ey[..., n:]
        self.first, self.blocks = upto_frame, last_block
        db = db.transpose(0, 2, 1)
        return quantize_band_gains(db) if self.quantize else db.astype(np.float32)

    def gains(self) -> BandGains:
        """Gains of the blocks completed since the last call."""
        avail = self.first + min(self.ex.shape[2], self.ey.shape[2])  # frames in both
        # block b is complete once frame avail-1 belongs to a later block
        done = int(_block_of(np.array([avail]), self.block_samples)[0]) if avail else 0
        if done <= self.blocks:
            return np.zeros((self.channels, 0, self.layout.bands), np.float32)
        upto = self._first_frame_of(done)
        return self._take(upto, done)

    def _first_frame_of(self, block: int) -> int:
        """First frame of ``block`` (> 0)."""
        return -(-block * self.block_samples // HOP) + _PAST

    def finish(self) -> BandGains:
        """Gains of the remaining blocks: the stream is as many codec frames as the longer
        of the two signals pushed covers (the other is completed with silence)."""
        length = -(-self.pushed // self.hop) * self.hop
        self.ex = self._add(self.ex, self.x.pad_to(length))
        self.ey = self._add(self.ey, self.y.pad_to(length))
        blocks = -(-length // self.block_samples)
        if blocks <= self.blocks:
            return np.zeros((self.channels, 0, self.layout.bands), np.float32)
        return self._take(self.first + self.ex.shape[2], blocks)


class BandGainStage:
    """Plain decoder output (48 kHz, from sample 0, any pieces) → band-corrected output.

    Returns each sample once every frame that covers it has been scaled, which needs the
    samples up to three hops later and the gains of the sample's block (add them with
    :meth:`add_gains`, in order; audio pushed before its gains is held, not refused).
    """

    latency = _PAST * HOP
    """Samples after a sample's hop that the frames covering it reach."""

    def __init__(self, channels: int, hop: int, frames_per_gain: int, bands: int) -> None:
        if frames_per_gain < 1:
            raise ValueError(f"frames_per_gain: must be >= 1, got {frames_per_gain}")
        self.layout = BandLayout(bands)
        self.channels = channels
        self.block_samples = frames_per_gain * hop
        self.synthesis = _window() / 1.5  # Σ Hann² over hops of N/4 = 1.5
        self.reset()

    def reset(self) -> None:
        channels = self.channels
        self.frames = _Frames(channels)
        self.pushed = 0  # samples pushed
        self.gains_db = np.zeros((channels, 0, self.layout.bands), np.float64)
        self.first_block = 0  # global block index of gains_db[:, 0]
        self.pending = np.zeros((channels, N_FFT // 2 + 1, 0), np.complex128)
        self.pending_first = 0  # frame index of pending[..., 0]
        # overlap-add accumulator starting at sample out_start (which may be < 0)
        self.acc = np.zeros((channels, 0), np.float64)
        self.out_start = -_PAST * HOP
        self.emitted = 0  # samples returned so far

    def add_gains(self, gains_db: npt.ArrayLike) -> None:
        """Band gains ``[C, blocks, bands]`` in dB of the next blocks."""
        g = np.asarray(gains_db, np.float64).reshape(self.channels, -1, self.layout.bands)
        self.gains_db = np.concatenate([self.gains_db, g], axis=1)

    def push(self, y: npt.ArrayLike) -> Audio:
        """More plain decoder output; returns the corrected samples now final."""
        self.pending = np.concatenate([self.pending, self.frames.push(y)], axis=2)
        self.pushed += np.shape(y)[1]
        self._run()
        # samples before the first frame not yet synthesised are final
        return self._emit((self.pending_first - _PAST) * HOP)

    def finish(self) -> Audio:
        """The rest of the signal pushed (the gains of all its blocks must have been added).
        An empty signal (e.g. a file cut inside its first packet) has no blocks and needs
        none."""
        length = self.pushed
        if length <= self.emitted:
            return np.zeros((self.channels, 0), np.float32)
        self.pending = np.concatenate([self.pending, self.frames.pad_to(length)], axis=2)
        if self.pending.shape[2] > self._run():
            raise ValueError("band gains of every block must be added before finish()")
        return self._emit(length)

    def _run(self) -> int:
        """Synthesise the pending frames whose block gains are known; how many there were."""
        k = self.pending.shape[2]
        if not k:
            return 0
        frames = np.arange(self.pending_first, self.pending_first + k)
        block = _block_of(frames, self.block_samples) - self.first_block
        have = int(np.searchsorted(block, self.gains_db.shape[1]))  # frames with gains
        if not have:
            return 0
        spec, block = self.pending[..., :have], block[:have]
        # per-bin gains of each block used, then per frame (a block holds many frames)
        first = int(block[0])
        used = self.gains_db[:, first : int(block[-1]) + 1]  # [C, blocks, bands]
        gain = 10.0 ** (np.einsum("fb,cnb->cfn", self.layout.interp, used) / 20)
        spec = spec * gain[:, :, block - first]
        out = np.fft.irfft(spec, N_FFT, axis=1) * self.synthesis[:, None]
        # overlap-add in frame order into the accumulator (which starts at sample out_start)
        off = (self.pending_first - _PAST) * HOP - self.out_start
        need = off + (have - 1) * HOP + N_FFT - self.acc.shape[1]
        if need > 0:
            self.acc = np.pad(self.acc, ((0, 0), (0, need)))
        # frame i adds its quarter q to hop slot i + q; adding the quarters from q = 3 down to
        # 0 sums each slot over its frames in frame order, as a loop over frames would
        slots = self.acc[:, off : off + (have + _PAST) * HOP].reshape(self.channels, -1, HOP)
        assert np.may_share_memory(slots, self.acc)  # splitting the last axis is a view
        quarters = out.reshape(self.channels, N_FFT // HOP, HOP, have)
        for q in range(N_FFT // HOP - 1, -1, -1):
            slots[:, q : q + have] += quarters[:, q].transpose(0, 2, 1)
        self.pending = self.pending[..., have:]
        self.pending_first += have
        # drop the gains of blocks no later frame can use
        first_needed = int(_block_of(np.array([self.pending_first]), self.block_samples)[0])
        drop = first_needed - self.first_block
        if drop > 0:
            self.gains_db = self.gains_db[:, drop:]
            self.first_block += drop
        return have

    def _emit(self, upto: int) -> Audio:
        """The samples from ``emitted`` up to ``upto`` (none if ``upto`` is not later)."""
        n = upto - self.emitted
        if n <= 0:
            return np.zeros((self.channels, 0), np.float32)
        lo = self.emitted - self.out_start
        out = self.acc[:, lo : lo + n]
        if out.shape[1] < n:  # past the last frame (only at finish): silence
            out = np.pad(out, ((0, 0), (0, n - out.shape[1])))
        self.emitted = upto
        drop = min(self.emitted - self.out_start, self.acc.shape[1])
        self.acc = self.acc[:, drop:]
        self.out_start += drop
        return out.astype(np.float32)

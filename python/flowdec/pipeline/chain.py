"""The encode chain and the decode chain: the stages of :mod:`flowdec.pipeline.stages` in the one
order every path uses (clips, files, streams, the postfilter alone, the effect, the plugin
backend). :class:`flowdec.pipeline.model.Model` builds them from a loaded model.

- :class:`EncodeChain`: 48 kHz audio → encoder → codes; with level side information, the
  plain decoder runs alongside to measure the level gains (:class:`flowdec.dsp.level.LevelMeter`)
  and band gains (:class:`flowdec.dsp.band_level.BandLevelMeter`), on its output with the band
  gains applied, as the decoder will see it.
- :class:`DecodeChain`: codes → decoder → band gains → postfilter → output level. A round
  trip that already decoded for its meters (:class:`flowdec.Stream`) builds it without the
  decoder and pushes that output; the postfilter alone (``Postfilter.enhance``) is the chain
  with only the postfilter.

Both follow :class:`flowdec.pipeline.stages.Stage`: ``push``, ``finish`` (the stream ends at
what was pushed), ``reset`` and ``latency`` (the sum of their stages' look-aheads, in samples at
48 kHz).

Example:
    >>> import numpy as np, flowdec
    >>> model = flowdec.Codec.load()
    >>> enc = model.encode_chain(channels=1, n_codebooks=8, chunk_frames=750,
    ...                          frames_per_gain=75)
    >>> x = np.zeros((1, 48000), np.float32)
    >>> e = [enc.push(x), enc.finish()]
    >>> codes = np.concatenate([p.codes for p in e], axis=2)     # [1, 8, 76]
    >>> dec = model.decode_chain(channels=1, n_codebooks=8, chunk_frames=750,
    ...                          frames_per_gain=75)
    >>> dec.add_gains(np.concatenate([p.gains for p in e], axis=1))
    >>> y = np.concatenate([dec.push(codes), dec.finish()], axis=1)   # [1, 76 * 640]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dsp.band_level import BandGainStage, BandLevelMeter
from ..dsp.level import LevelMeter, OutputLevel
from .stages import PostfilterStage, Stage


def _join(parts: list[np.ndarray], empty: np.ndarray, axis: int = -1) -> np.ndarray:
    parts = [p for p in parts if p.shape[axis]]
    if not parts:
        return empty
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)


@dataclass
class Encoded:
    """What an :class:`EncodeChain` push returns: codes ``[C, n_q, k]`` (int64) as encoded,
    the level gains ``[C, b]`` (dB) and band gains ``[C, b, bands]`` of the gain blocks
    measured since the last push (None: the chain does not measure them), and ``decoded``,
    the plain decoder output ``[C, n]`` they were measured on (None without gains). Gains
    lag the codes: a block's gains come once the decoder has its whole output."""

    codes: np.ndarray
    gains: np.ndarray | None = None
    bands: np.ndarray | None = None
    decoded: np.ndarray | None = None


class EncodeChain:
    """48 kHz audio ``[C, n]`` → :class:`Encoded` (see the module docstring).

    ``decoder``: the plain decoder stage that measures the level side information
    (None: codes only); ``frames_per_gain`` codec frames per gain block; ``level_bands``:
    ERB bands of the band gains (0: none)."""

    def __init__(self, encoder: Stage, decoder: Stage | None, channels: int, n_codebooks: int,
                 hop: int, frames_per_gain: int = 0, level_bands: int = 0) -> None:
        if decoder is not None and not frames_per_gain:
            raise ValueError("a decoder measures level gains: give frames_per_gain")
        self.encoder, self.decoder = encoder, decoder
        self.channels, self.n_q, self.hop = channels, n_codebooks, hop
        self.g, self.level_bands = frames_per_gain, level_bands
        self.reset()

    @property
    def latency(self) -> int:
        dec = self.decoder.latency if self.decoder is not None else 0
        return self.encoder.latency + dec

    def reset(self) -> None:
        self.encoder.reset()
        self.frames = 0  # code frames emitted
        self.meter = self.band_meter = self.band_stage = None
        if self.decoder is None:
            return
        self.decoder.reset()
        c, hop, g = self.channels, self.hop, self.g
        self.meter = LevelMeter(c, hop, g)
        if self.level_bands:
            self.band_meter = BandLevelMeter(c, hop, g, self.level_bands)
            self.band_stage = BandGainStage(c, hop, g, self.level_bands)

    def _decoded(self, y: np.ndarray, bands: list[np.ndarray]) -> np.ndarray:
        """The plain decoder output as the decoder will see it (band gains applied)."""
        if self.band_meter is None or self.band_stage is None:
            return y
        self.band_meter.add_output(y)
        g = self.band_meter.gains()
        self.band_stage.add_gains(g)
        bands.append(g)
        return self.band_stage.push(y)

    def _bands(self, bands: list[np.ndarray]) -> np.ndarray | None:
        if not self.level_bands:
            return None
        return _join(bands, np.zeros((self.channels, 0, self.level_bands), np.float32), axis=1)

    def push(self, x: np.ndarray) -> Encoded:
        if self.meter is None or self.decoder is None:
            codes = self.encoder.push(x)[:, : self.n_q]
            self.frames += codes.shape[2]
            return Encoded(codes)
        self.meter.add_input(x)
        if self.band_meter is not None:
            self.band_meter.add_input(x)
        codes = self.encoder.push(x)[:, : self.n_q]
        self.frames += codes.shape[2]
        bands: list[np.ndarray] = []
        y = self._decoded(self.decoder.push(codes), bands)
        self.meter.add_output(y)
        return Encoded(codes, self.meter.gains(), self._bands(bands), y)

    def finish(self) -> Encoded:
        codes = self.encoder.finish()[:, : self.n_q]
        self.frames += codes.shape[2]
        if self.meter is None or self.decoder is None:
            return Encoded(codes)
        bands: list[np.ndarray] = []
        ys = [self._decoded(self.decoder.push(codes), bands)]
        self.meter.add_output(ys[0])
        ys.append(self._decoded(self.decoder.finish(), bands))
        self.meter.add_output(ys[1])
        if self.band_meter is not None and self.band_stage is not None:
            g = self.band_meter.finish()
            self.band_stage.add_gains(g)
            bands.append(g)
            ys.append(self.band_stage.finish())
            self.meter.add_output(ys[2])
        gains = self.meter.finish()
        return Encoded(codes, gains, self._bands(bands),
                       _join(ys, np.zeros((self.channels, 0), np.float32)))


class DecodeChain:
    """Codes ``[C, n_q, k]`` → 48 kHz audio ``[C, n]``: decoder → band gains → postfilter
    → output level (see the module docstring). Without a ``decoder`` it takes the plain
    decoder output instead of codes. ``frames_per_gain`` 0: no output level stage.

    Gains are added (:meth:`add_gains`) before the audio they cover is pushed."""

    def __init__(self, channels: int, decoder: Stage | None = None,
                 bands: BandGainStage | None = None, post: PostfilterStage | None = None,
                 hop: int = 0, frames_per_gain: int = 0) -> None:
        self.channels = channels
        self.decoder, self.bands, self.post = decoder, bands, post
        self.level = (OutputLevel(channels, hop, frames_per_gain, inner=post)
                      if frames_per_gain else None)
        self.last: Stage | None = self.level if self.level is not None else post

    @property
    def latency(self) -> int:
        return sum(s.latency for s in (self.decoder, self.bands, self.last) if s is not None)

    def reset(self) -> None:
        for s in (self.decoder, self.bands, self.last):
            if s is not None:
                s.reset()

    def add_gains(self, gains: np.ndarray | None, band_gains: np.ndarray | None = None
                  ) -> None:
        """Level gains ``[C, b]`` and band gains ``[C, b, bands]`` (dB) of the next blocks
        (None: none to add)."""
        if self.level is not None and gains is not None:
            self.level.add_gains(gains)
        if self.bands is not None and band_gains is not None:
            self.bands.add_gains(band_gains)

    def _after_decoder(self, y: np.ndarray) -> np.ndarray:
        if self.bands is not None:
            y = self.bands.push(y)
        return self.last.push(y) if self.last is not None else y

    def push(self, block: np.ndarray) -> np.ndarray:
        y = self.decoder.push(block) if self.decoder is not None else block
        return self._after_decoder(y)

    def finish(self) -> np.ndarray:
        empty = np.zeros((self.channels, 0), np.float32)
        parts = []
        if self.decoder is not None:
            y = self.decoder.finish()
            if self.bands is not None:
                y = _join([self.bands.push(y), self.bands.finish()], empty)
            parts.append(self.last.push(y) if self.last is not None else y)
        elif self.bands is not None:
            parts.append(self.last.push(self.bands.finish()) if self.last is not None
                         else self.bands.finish())
        if self.last is not None:
            parts.append(self.last.finish())
        return _join(parts, empty)

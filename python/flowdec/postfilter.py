"""The postfilter on its own: enhance audio that the codec's decoder produced.

:class:`flowdec.Codec` runs it inside ``decode`` (where it also gets the level gains); this
class is for audio decoded elsewhere, for comparing solvers and step counts on the same
input, and for research.

Example:
    >>> import flowdec
    >>> codec = flowdec.Codec.load()
    >>> y = codec.roundtrip(audio, 48000, postfilter=False)          # doctest: +SKIP
    >>> pf = flowdec.Postfilter.load()
    >>> out = pf.enhance(y, nfe=6, seed=1)                            # doctest: +SKIP
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from .audio import CODEC_RATE, as_audio, check_rate, fit_length, resample
from .dsp import features
from .model.files import ModelError, load_cards, resolve
from .model.sessions import PostfilterNet
from .pipeline.chain import DecodeChain
from .pipeline.postfilter import (
    DEFAULT_NFE,
    DEFAULT_SEED,
    postfilter_stage,
)

CHUNK_FRAMES = 1250
"""Whole-clip processing unit in STFT frames (10 s at hop 384): bounds memory."""


class Postfilter:
    """A loaded postfilter: the ONNX network and its model card.

    Args:
        model: a model folder, a shipped model name, or None for the shipped default.
        device: "cpu" or "cuda" (onnxruntime-gpu; the solver's kernels then run on the GPU).
        threads: onnxruntime intra-op threads.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, device: str = "cpu",
                 threads: int | None = None) -> None:
        self.folder = resolve(model)
        _, card = load_cards(self.folder)
        if card is None:
            raise ModelError(f"model {self.folder} has no postfilter (no postfilter.onnx or no "
                             "'postfilter' section in its model card)")
        self.card = card
        self.device = device
        self.net = PostfilterNet(self.folder / "postfilter.onnx", device, threads)
        if threads:
            features.set_num_threads(threads)

    @classmethod
    def load(cls, model: str | os.PathLike[str] | None = None, device: str = "cpu",
             threads: int | None = None) -> Postfilter:
        return cls(model, device, threads)

    def chain(self, channels: int, nfe: int, seed: int, solver: str = "midpoint",
              sigma: str = "band", envelope: bool = True,
              chunk_frames: int = CHUNK_FRAMES) -> DecodeChain:
        """The decode chain with only the postfilter: enhances 48 kHz audio pushed in pieces
        (``push`` then ``finish``)."""
        return DecodeChain(channels, post=postfilter_stage(
            self.net, self.card, self.device, channels, chunk_frames, nfe, seed, solver, sigma,
            envelope=envelope))

    def enhance(self, y: npt.ArrayLike, nfe: int = DEFAULT_NFE, solver: str = "midpoint",
                seed: int | None = None, sample_rate: float = CODEC_RATE, sigma: str = "band",
                envelope: bool = True) -> np.ndarray:
        """Enhance decoded audio ``y`` (``[samples]`` or ``[channels, samples]``).

        ``nfe`` network evaluations (midpoint: two per step, so even; Euler: one per step);
        the same ``seed`` gives the same output (None: :data:`DEFAULT_SEED`). ``y`` at another
        ``sample_rate`` is resampled to 48 kHz and back. Returns float32 shaped like ``y``.
        """
        a = as_audio(y, "y")
        sr = check_rate(sample_rate)
        if seed is None:
            seed = DEFAULT_SEED
        x = resample(a, sr, CODEC_RATE)
        chain = self.chain(a.shape[0], nfe, seed, solver, sigma, envelope)
        out = fit_length(np.concatenate([chain.push(x), chain.finish()], axis=1), x.shape[1])
        out = fit_length(resample(out, CODEC_RATE, sr), a.shape[1])
        return out[0] if np.ndim(y) == 1 else out

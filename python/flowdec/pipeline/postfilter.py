"""The postfilter stage and its solve: the flow-matching ODE on the codec output's compressed
STFT, built in one place (:func:`postfilter_stage`) for every path."""

from __future__ import annotations

import numpy as np

from ..dsp import features, solver
from ..model.files import PostfilterCard
from ..model.sessions import PostfilterNet
from .stages import PostfilterStage

SIGMAS = ("band", "global")
DEFAULT_NFE = 6
"""Postfilter network evaluations when none are asked for."""
DEFAULT_SEED = 0
"""Postfilter noise seed when none is given, everywhere (decode, roundtrip, enhance, demo,
live, :class:`flowdec.Stream`, :class:`flowdec.FlowDecEffect`): the same input and settings
give the same output."""
SOLVE_CHANNEL_FRAMES = 1024
"""Channels × STFT frames one network evaluation takes at most (on the CPU): a window of
many channels is evaluated in groups of channels, so the network's activations do not grow
with the channel count (the windows of files up to 5 channels are evaluated whole)."""


def stft_config(card: PostfilterCard) -> features.STFTConfig:
    return features.STFTConfig(n_fft=card.n_fft, hop=card.hop, alpha=card.alpha, beta=card.beta)


class PostfilterSolve:
    """The postfilter's ODE solve for a :class:`~flowdec.pipeline.stages.PostfilterStage`:
    ``solve(Y [C, 2, F, N], frame_offset) → X̂``, the noise keyed by global STFT frame
    ``frame_offset + frame_origin``.

    ``nfe``, ``seed`` and ``frame_origin`` are plain attributes that take effect on the next
    window: the streaming engine lowers ``nfe`` under load (0: no evaluations, and ``Y``
    itself is returned — the stage then skips its envelope matching) and moves
    ``frame_origin`` when it restarts after dropped chunks.

    ``sigma``: "band" (the per-band σ_y curve) or "global" (one σ_y, an ablation);
    ``device``: "cuda" keeps the solver's buffers on the GPU
    (:class:`flowdec.model.gpu.CudaSolver`).
    """

    def __init__(self, net: PostfilterNet, card: PostfilterCard, device: str, nfe: int,
                 seed: int, solver_name: str = "midpoint", sigma: str = "band") -> None:
        if solver_name not in solver.SOLVERS:
            raise ValueError(f"solver {solver_name!r} is unknown; choose one of "
                             f"{', '.join(solver.SOLVERS)}")
        if sigma not in SIGMAS:
            raise ValueError(f"sigma {sigma!r} is unknown; choose one of {', '.join(SIGMAS)}")
        self.net, self.solver_name = net, solver_name
        self.nfe, self.seed, self.frame_origin = nfe, seed, 0
        self.sigma_y = np.asarray(card.sigma_y if sigma == "band" else
                                  [card.sigma_y_global] * len(card.sigma_y), np.float32)
        self.gpu = None
        if device == "cuda":
            from ..model.gpu import CudaSolver

            self.gpu = CudaSolver(net.session, self.sigma_y)

    def __call__(self, Y: np.ndarray, frame_offset: int) -> np.ndarray:
        if self.nfe == 0:
            return Y
        frame = frame_offset + self.frame_origin
        if self.gpu is not None:
            return self.gpu.solve(Y, self.nfe, self.seed, frame, self.solver_name)
        return solver.midpoint_solve(Y, self.sigma_y, self._velocity, nfe=self.nfe,
                                     seed=self.seed, frame_offset=frame,
                                     solver=self.solver_name)

    def _velocity(self, X: np.ndarray, Y: np.ndarray, t: float) -> np.ndarray:
        """The network on at most :data:`SOLVE_CHANNEL_FRAMES` at a time (the channels are
        independent, so groups of them give the same velocities)."""
        group = max(1, SOLVE_CHANNEL_FRAMES // X.shape[-1])
        if X.shape[0] <= group:
            return self.net(X, Y, t)
        return np.concatenate([self.net(X[i : i + group], Y[i : i + group], t)
                               for i in range(0, X.shape[0], group)])


DEFAULT_CONTEXT = 16
"""Window context of the file and clip paths, STFT frames on each side of a chunk."""


def postfilter_stage(net: PostfilterNet, card: PostfilterCard, device: str, channels: int,
                     chunk_frames: int, nfe: int, seed: int, solver_name: str = "midpoint",
                     sigma: str = "band", context: int = DEFAULT_CONTEXT,
                     envelope: bool = True) -> PostfilterStage:
    """The postfilter stage, built here for every path (clips, files, streams, ``enhance``).

    ``chunk_frames`` and ``context`` are STFT frames of ``card.hop``; ``nfe``, ``seed``,
    ``solver_name``, ``sigma``, ``device``: the solve (:class:`PostfilterSolve`, the stage's
    ``solve`` attribute); ``envelope``: keep the codec output's band envelope when the card
    asks for it (:mod:`flowdec.dsp.envelope`)."""
    solve = PostfilterSolve(net, card, device, nfe, seed, solver_name, sigma)
    cfg = stft_config(card)
    return PostfilterStage(lambda x: features.analysis(x, cfg),
                           lambda X, n: features.synthesis(X, n, cfg), solve, card, channels,
                           chunk_frames, context, envelope=envelope)

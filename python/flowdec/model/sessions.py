"""ONNX Runtime sessions for the codec and postfilter networks (created once, reused).

No torch here. ``device="cuda"`` uses onnxruntime-gpu's CUDA provider when installed and says
clearly when it is not.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort


class DeviceError(RuntimeError):
    """The requested device cannot be used."""


def providers_for(device: str) -> list[str]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DeviceError(
                "device='cuda' needs onnxruntime-gpu with a CUDA GPU; this onnxruntime offers "
                f"{ort.get_available_providers()}. Install onnxruntime-gpu or use device='cpu'."
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def make_session(path: Path, device: str = "cpu", threads: int | None = None
                 ) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or default_threads()
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # Idle intra-op threads sleep instead of spinning: spinning threads compete with every
    # other thread for the cores, the audio callback's included (benchmarks/bench_stream.py).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=providers_for(device))


class EncoderNet:
    """audio [B, T] float32 at 48 kHz, T a multiple of hop → codes [B, n_q, T/hop] int64."""

    def __init__(self, path: Path, device: str, threads: int | None) -> None:
        self.session = make_session(path, device, threads)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {"audio": np.ascontiguousarray(audio, np.float32)})[0]
        return np.asarray(out)


class DecoderNet:
    """codes [B, n, K] (the first n codebooks) → audio [B, K·hop] float32."""

    def __init__(self, path: Path, device: str, threads: int | None) -> None:
        self.session = make_session(path, device, threads)

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {"codes": np.ascontiguousarray(codes, np.int64)})[0]
        return np.asarray(out)


class PostfilterNet:
    """v = net(X_t, Y, t): X_t, Y [B, 2, F, N] float32, t scalar → v [B, 2, F, N]."""

    def __init__(self, path: Path, device: str, threads: int | None) -> None:
        self.session = make_session(path, device, threads)
        self.evaluations = 0

    def __call__(self, x: np.ndarray, y: np.ndarray, t: float) -> np.ndarray:
        self.evaluations += 1
        feeds = {"x": np.ascontiguousarray(x, np.float32), "y": np.ascontiguousarray(y, np.float32),
                 "t": np.full((1,), t, np.float32)}
        return np.asarray(self.session.run(None, feeds)[0])


class DecoderStreamNet:
    """The streaming decoder (``decoder_stream.onnx``): codes [B, n, N] of frames
    [first, first + N) and the carried state → audio [B, N·hop] of hops [first − delay, …)
    and the new state. ``end`` is the stream's frame count (a large number while unknown):
    frames from there on are the offline decoder's zero padding."""

    state_inputs = ("trunk_state", "synthesis_state")

    def __init__(self, path: Path, device: str, threads: int | None) -> None:
        self.session = make_session(path, device, threads)
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.state_shapes = [tuple(int(d) for d in shapes[n][1:]) for n in self.state_inputs]

    def initial_state(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, *s), np.float32) for s in self.state_shapes]

    def __call__(self, x: np.ndarray, first: int, end: int, state: list[np.ndarray]
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
        b = x.shape[0]
        feeds = {"codes": np.ascontiguousarray(x, np.int64), "first": np.full(b, first, np.int64),
                 "end": np.full(b, end, np.int64)}
        feeds.update(zip(self.state_inputs, state, strict=True))
        out = self.session.run(None, feeds)
        return np.asarray(out[0]), [np.asarray(s) for s in out[1:]]

"""The GPU solve (onnxruntime-gpu IO binding + flowdec CUDA kernels) equals the CPU solve.

Skipped where there is no CUDA GPU, no onnxruntime CUDA provider, or no CUDA build.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import flowdec.dsp.cuda
from flowdec.dsp import features, solver
from flowdec.model.sessions import DeviceError

needs_gpu = pytest.mark.skipif(
    not (flowdec.dsp.cuda.is_available()
         and "CUDAExecutionProvider" in ort.get_available_providers()),
    reason="needs a CUDA GPU, flowdec built with CUDA, and onnxruntime-gpu",
)


@pytest.mark.cuda
@needs_gpu
def test_gpu_solve_matches_cpu(model_dir: object) -> None:
    from flowdec.codec import Codec
    from flowdec.model.gpu import CudaSolver

    cpu = Codec(str(model_dir), device="cpu", threads=2)
    gpu = Codec(str(model_dir), device="cuda")
    assert cpu.post_card is not None and cpu.postfilter_net is not None
    assert gpu.postfilter_net is not None
    rng = np.random.default_rng(0)
    y = (rng.standard_normal((2, 48000)) * 0.1).astype(np.float32)
    Y = features.analysis(y, cpu.stft_config())[..., :100]
    sigma = np.asarray(cpu.post_card.sigma_y, np.float32)
    ref = solver.midpoint_solve(Y, sigma, cpu.postfilter_net, nfe=6, seed=5, frame_offset=10)
    out = CudaSolver(gpu.postfilter_net.session, sigma).solve(Y, 6, 5, 10)
    scale = np.abs(ref).max()
    assert np.abs(out - ref).max() <= 1e-3 * scale


@pytest.mark.cuda
@needs_gpu
def test_gpu_stream_matches_cpu_stream(model_dir: object) -> None:
    """The streaming engine solves on the GPU when the codec is on it (same noise keys)."""
    from flowdec.codec import Codec
    from flowdec.stream import Stream

    rng = np.random.default_rng(1)
    x = (rng.standard_normal((1, 24000)) * 0.1).astype(np.float32)
    outs = []
    for codec in (Codec(str(model_dir), device="cpu", threads=2),
                  Codec(str(model_dir), device="cuda")):
        s = Stream(codec, postfilter=True, nfe=6, worker=False)
        s.prepare(48000, 512, 1)
        full = np.pad(x, ((0, 0), (0, s.latency_samples)))
        outs.append(np.concatenate([s.process(full[:, i : i + 512])
                                    for i in range(0, full.shape[1], 512)], axis=1))
    assert np.abs(outs[1] - outs[0]).max() <= 1e-3 * np.abs(outs[0]).max()


def test_cpu_only_machine_says_so(tiny_model_dir: object) -> None:
    """On a machine without onnxruntime's CUDA provider, device='cuda' is a clear error."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    from flowdec.codec import Codec

    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        Codec(str(tiny_model_dir), device="cuda")

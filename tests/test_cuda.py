"""CUDA kernels: build presence, graceful absence, and GPU == CPU (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from flowdec import _core
from flowdec.dsp import cuda
from flowdec.dsp import solver as cpu

needs_gpu = pytest.mark.skipif(not cuda.is_available(), reason="no CUDA GPU")


def test_presence_flags_are_consistent() -> None:
    assert isinstance(_core.cuda_compiled(), bool)
    assert _core.cuda_device_count() >= 0
    if not _core.cuda_compiled():
        assert not cuda.is_available()
        with pytest.raises(RuntimeError):
            _core.cuda_axpy(1, 1, 1.0, 1, 1, 0)


def test_device_pointer_interface_and_validation() -> None:
    p = cuda.DevicePointer(4096, (1, 2, 3, 4))
    assert p.__cuda_array_interface__["shape"] == (1, 2, 3, 4)
    if not cuda.is_compiled():
        pytest.skip("built without CUDA")
    with pytest.raises(ValueError, match="^k"):
        cuda.euler_step(p, cuda.DevicePointer(4096, (1, 2, 3, 5)), 0.1)
    with pytest.raises(ValueError, match="^X"):
        cuda.euler_step(np.zeros(3, np.float32), p, 0.1)
    with pytest.raises(ValueError, match="^sigma_y"):
        cuda.noise_init(p, cuda.DevicePointer(4096, (2,)), 0, p)


@pytest.mark.cuda
@needs_gpu
def test_gpu_matches_cpu() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((2, 2, 769, 50)).astype(np.float32)
    sigma = np.linspace(0.57, 0.16, 769).astype(np.float32)
    dY, ds = torch.from_numpy(Y).cuda(), torch.from_numpy(sigma).cuda()
    out = torch.empty_like(dY)
    cuda.noise_init(dY, ds, 123, out, frame_offset=7)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), cpu.noise_init(Y, sigma, 123, 7))

    k = rng.standard_normal(Y.shape).astype(np.float32)
    dk, dm = torch.from_numpy(k).cuda(), torch.empty_like(dY)
    cuda.midpoint_half_step(dY, dk, 1 / 3, dm)
    cuda.euler_step(dY, dk, 1 / 3, stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(dm.cpu().numpy(), cpu.midpoint_half_step(Y, k, 1 / 3))
    Yc = Y.copy()
    np.testing.assert_array_equal(dY.cpu().numpy(), cpu.euler_step(Yc, k, 1 / 3))
    ptr = cuda.DevicePointer(dY.data_ptr(), tuple(dY.shape))
    cuda.euler_step(ptr, dk, 0.0)
    torch.cuda.synchronize()

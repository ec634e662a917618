"""The postfilter's ODE solve on a CUDA GPU with buffers kept on the device.

onnxruntime-gpu's CUDA provider runs the network through IO binding on device buffers
(``OrtValue``); flowdec's CUDA kernels (noise init, midpoint half step, full step) update the
same buffers in place, so only Y goes up and X̂ comes down once per solve. The kernels run on
the legacy default stream and are followed by a device synchronisation before onnxruntime
reads their output (onnxruntime's own run is synchronous for the host).

Example:
    >>> solver = CudaSolver(codec.postfilter_net.session, sigma_y)   # doctest: +SKIP
    >>> X1 = solver.solve(Y, nfe=6, seed=1, frame_offset=0)          # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from ..dsp import cuda
from .sessions import DeviceError


class CudaSolver:
    """Midpoint (or Euler) solve of dX/dt = v(X, Y, t) on the GPU."""

    def __init__(self, session: ort.InferenceSession, sigma_y: np.ndarray, device_id: int = 0
                 ) -> None:
        if "CUDAExecutionProvider" not in session.get_providers():
            raise DeviceError(
                "the postfilter session does not run on CUDA; load the codec with device='cuda'"
            )
        if not cuda.is_available():
            raise DeviceError(
                "flowdec's CUDA kernels are not available (built without nvcc or no GPU); "
                "rebuild with FLOWDEC_CUDA=ON on a machine with a GPU"
            )
        self.session = session
        self.device_id = device_id
        self.sigma = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(sigma_y, np.float32),
                                                      "cuda", device_id)
        self.binding = session.io_binding()

    def _buffer(self, shape: tuple[int, ...]) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, "cuda", self.device_id)

    def solve(self, Y: np.ndarray, nfe: int = 6, seed: int = 0, frame_offset: int = 0,
              solver: str = "midpoint") -> np.ndarray:
        """Y [B, 2, F, N] on the host → X̂ [B, 2, F, N] on the host."""
        if solver == "midpoint" and nfe % 2:
            raise ValueError(f"nfe: must be even for the midpoint solver, got {nfe}")
        shape = tuple(int(s) for s in Y.shape)
        y = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(Y, np.float32), "cuda",
                                             self.device_id)
        x, xm, k = self._buffer(shape), self._buffer(shape), self._buffer(shape)

        def ptr(v: ort.OrtValue) -> cuda.DevicePointer:
            return cuda.DevicePointer(v.data_ptr(), tuple(v.shape()))

        def velocity(inp: ort.OrtValue, t: float) -> None:
            cuda.synchronize()
            b = self.binding
            b.bind_ortvalue_input("x", inp)
            b.bind_ortvalue_input("y", y)
            b.bind_cpu_input("t", np.full((1,), t, np.float32))
            b.bind_ortvalue_output("v", k)
            self.session.run_with_iobinding(b)

        cuda.noise_init(ptr(y), ptr(self.sigma), int(seed), ptr(x), int(frame_offset))
        if solver == "euler":
            h = 1.0 / nfe
            for i in range(nfe):
                velocity(x, i * h)
                cuda.euler_step(ptr(x), ptr(k), h)
        else:
            steps = nfe // 2
            h = 1.0 / steps
            for i in range(steps):
                velocity(x, i * h)
                cuda.midpoint_half_step(ptr(x), ptr(k), h, ptr(xm))
                velocity(xm, i * h + 0.5 * h)
                cuda.euler_step(ptr(x), ptr(k), h)
        cuda.synchronize()
        return np.asarray(x.numpy())

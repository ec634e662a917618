"""Type stubs for the private compiled core ``flowdec._core`` (kept by hand)."""

import numpy as np
import numpy.typing as npt

__version__: str

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

# bit packing
def pack_codes(codes: npt.NDArray[np.int64], bits: int) -> bytes: ...
def unpack_codes(data: bytes, bits: int, count: int) -> npt.NDArray[np.uint16]: ...

# compressed STFT
def fft_size_supported(n_fft: int) -> bool: ...
def stft(
    x: npt.ArrayLike, offset: int, n_frames: int, n_fft: int, hop: int, alpha: float, beta: float
) -> npt.NDArray[np.float32]: ...
def istft_ola(
    X: npt.ArrayLike,
    acc: npt.NDArray[np.float32],
    offset: int,
    n_fft: int,
    hop: int,
    alpha: float,
    beta: float,
) -> None: ...
def ola_normalize(
    acc: npt.ArrayLike, start: int, n_frames: int, n_fft: int, hop: int
) -> npt.NDArray[np.float32]: ...
def window_envelope(
    start: int, count: int, n_frames: int, n_fft: int, hop: int
) -> npt.NDArray[np.float32]: ...

# solver kernels
def noise_init(
    Y: npt.ArrayLike,
    sigma_y: npt.ArrayLike,
    seed: int,
    frame_offset: int,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]: ...
def axpy(
    X: npt.ArrayLike, k: npt.ArrayLike, a: float, out: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]: ...
def randn_complex(
    seed: int, B: int, F: int, N: int, frame_offset: int = 0
) -> npt.NDArray[np.float32]: ...
def philox4x32_10(
    c0: int, c1: int, c2: int, c3: int, k0: int, k1: int
) -> tuple[int, int, int, int]: ...

# CUDA (raw device pointers; RuntimeError when built without CUDA)
def cuda_compiled() -> bool: ...
def cuda_device_count() -> int: ...
def cuda_noise_init(
    Y: int,
    sigma_y: int,
    out: int,
    B: int,
    F: int,
    N: int,
    seed: int,
    frame_offset: int,
    stream: int,
) -> None: ...
def cuda_axpy(X: int, k: int, a: float, out: int, n: int, stream: int) -> None: ...
def cuda_synchronize(stream: int) -> None: ...

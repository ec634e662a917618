// CUDA versions of the solver kernels; same RNG (rng.hpp) and same float operations as the
// CPU kernels (compiled with --fmad=false so results match bit for bit).
#include <cuda_runtime.h>

#include "cuda_kernels.hpp"
#include "rng.hpp"

namespace flowdec::cuda {

namespace {

__global__ void noise_init_kernel(const float* __restrict__ Y, const float* __restrict__ sigma,
                                  float* __restrict__ out, std::uint32_t B, std::uint32_t F,
                                  std::uint32_t N, std::uint64_t seed, std::uint64_t frame_offset) {
    const std::uint64_t total = static_cast<std::uint64_t>(B) * F * N;
    for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x;
         i < total; i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
        const std::uint32_t n = static_cast<std::uint32_t>(i % N);
        const std::uint32_t f = static_cast<std::uint32_t>((i / N) % F);
        const std::uint32_t b = static_cast<std::uint32_t>(i / (static_cast<std::uint64_t>(N) * F));
        float zr, zi;
        complex_normal(seed, b, f, frame_offset + n, zr, zi);
        const std::uint64_t re = (static_cast<std::uint64_t>(b) * 2 * F + f) * N + n;
        const std::uint64_t im = re + static_cast<std::uint64_t>(F) * N;
        const float s = sigma[f];
        out[re] = Y[re] + s * zr;
        out[im] = Y[im] + s * zi;
    }
}

__global__ void axpy_kernel(const float* __restrict__ x, const float* __restrict__ k, float a,
                            float* out, std::uint64_t n) {
    for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x;
         i < n; i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
        out[i] = x[i] + a * k[i];
    }
}

unsigned grid_for(std::uint64_t n, unsigned block) {
    const std::uint64_t g = (n + block - 1) / block;
    return static_cast<unsigned>(g < 65535u * 16u ? (g ? g : 1) : 65535u * 16u);
}

std::string last_error() {
    const cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? std::string() : std::string(cudaGetErrorString(err));
}

}  // namespace

int device_count() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky-free error
        return 0;
    }
    return count;
}

std::string synchronize(std::uintptr_t stream) {
    cudaError_t e = stream == 0 ? cudaDeviceSynchronize()
                                : cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(stream));
    return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

std::string noise_init(const float* Y, const float* sigma, float* out, std::uint32_t B,
                       std::uint32_t F, std::uint32_t N, std::uint64_t seed,
                       std::uint64_t frame_offset, std::uintptr_t stream) {
    const std::uint64_t total = static_cast<std::uint64_t>(B) * F * N;
    noise_init_kernel<<<grid_for(total, 256), 256, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
        Y, sigma, out, B, F, N, seed, frame_offset);
    return last_error();
}

std::string axpy(const float* x, const float* k, float a, float* out, std::uint64_t n,
                 std::uintptr_t stream) {
    axpy_kernel<<<grid_for(n, 256), 256, 0, reinterpret_cast<cudaStream_t>(stream)>>>(x, k, a,
                                                                                       out, n);
    return last_error();
}

}  // namespace flowdec::cuda

// CUDA kernels (built only with FLOWDEC_WITH_CUDA): raw device pointers + a cudaStream_t
// passed as an integer. Each returns "" on success or the CUDA error string.
#pragma once

#include <cstdint>
#include <string>

namespace flowdec::cuda {

int device_count();  // 0 when no driver/device (never throws)

// Wait for all work queued on ``stream`` (0: the whole device) to finish.
std::string synchronize(std::uintptr_t stream);

// out = Y + sigma[f] * z(seed, b, f, frame_offset + n); Y, out: [B, 2, F, N]; sigma: [F].
std::string noise_init(const float* Y, const float* sigma, float* out, std::uint32_t B,
                       std::uint32_t F, std::uint32_t N, std::uint64_t seed,
                       std::uint64_t frame_offset, std::uintptr_t stream);

// out = x + a * k over n floats (out may be x).
std::string axpy(const float* x, const float* k, float a, float* out, std::uint64_t n,
                 std::uintptr_t stream);

}  // namespace flowdec::cuda

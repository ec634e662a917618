// Fused solver kernels on [B, 2, F, N] float32 features (CPU; threads over rows/bins).
#pragma once

#include <cstddef>
#include <cstdint>

namespace flowdec {

// out = Y + sigma[f] * z(seed, b, f, frame_offset + n). Returns false when Y or sigma
// held NaN/Inf (checked in the same pass).
bool noise_init_cpu(const float* Y, const float* sigma, std::size_t B, std::size_t F,
                    std::size_t N, std::uint64_t seed, std::uint64_t frame_offset, float* out);

// out = x + a * k over n values (out may alias x). Returns false when x or k held NaN/Inf
// (checked in the same pass).
bool axpy_cpu(const float* x, const float* k, float a, std::size_t n, float* out);

}  // namespace flowdec

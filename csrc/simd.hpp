// Portable SIMD through GCC/Clang vector extensions: kLanes floats per vector. Compiles to
// SSE2 pairs on baseline x86-64 (no -march flags needed) and to NEON on aarch64.
#pragma once

#include <cstdint>

namespace flowdec {

constexpr int kLanes = 4;  // one SSE2/NEON register; wider lanes get scalarised integer ops
typedef float vf __attribute__((vector_size(4 * kLanes)));
typedef std::int32_t vi __attribute__((vector_size(4 * kLanes)));
typedef std::uint32_t vu __attribute__((vector_size(4 * kLanes)));

inline vf splat(float v) { return vf{} + v; }

}  // namespace flowdec

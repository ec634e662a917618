// Counter-based RNG shared by the CPU and CUDA kernels: Philox4x32-10 (Salmon et al.,
// SC'11) keyed by the 64-bit seed, counter = (frame lo, frame hi, bin, batch row), then
// Box-Muller on two 24-bit uniforms evaluated in double precision and rounded to float,
// so CPU, GPU and the numpy reference agree to the last bit in practice.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FLOWDEC_HD __host__ __device__ __forceinline__
#else
#define FLOWDEC_HD inline
#endif

namespace flowdec {

struct U32x4 {
    std::uint32_t v[4];
};

FLOWDEC_HD void mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
    const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
    hi = static_cast<std::uint32_t>(p >> 32);
    lo = static_cast<std::uint32_t>(p);
}

FLOWDEC_HD U32x4 philox4x32_10(U32x4 c, std::uint32_t k0, std::uint32_t k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        std::uint32_t hi0, lo0, hi1, lo1;
        mulhilo32(0xD2511F53u, c.v[0], hi0, lo0);
        mulhilo32(0xCD9E8D57u, c.v[2], hi1, lo1);
        c = U32x4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    }
    return c;
}

// Complex standard normal z (Re, Im each N(0, 1/2), E|z|^2 = 1) for element
// (seed, row b, bin f, global frame n).
FLOWDEC_HD void complex_normal(std::uint64_t seed, std::uint32_t b, std::uint32_t f,
                               std::uint64_t n, float& re, float& im) {
    const U32x4 r = philox4x32_10(
        U32x4{{static_cast<std::uint32_t>(n), static_cast<std::uint32_t>(n >> 32), f, b}},
        static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
    const double u1 = (static_cast<double>(r.v[0] >> 8) + 0.5) * (1.0 / 16777216.0);  // (0, 1)
    const double u2 = static_cast<double>(r.v[1] >> 8) * (1.0 / 16777216.0);          // [0, 1)
    const double radius = sqrt(-log(u1));
    const double theta = 6.283185307179586476925 * u2;
    re = static_cast<float>(radius * cos(theta));
    im = static_cast<float>(radius * sin(theta));
}

}  // namespace flowdec

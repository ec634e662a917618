#include "solver.hpp"

#include <atomic>
#include <cstring>

#include "common.hpp"
#include "rng.hpp"

namespace flowdec {

namespace {

inline std::uint32_t nonfinite(float v) {
    std::uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    return static_cast<std::uint32_t>((u & 0x7f800000u) == 0x7f800000u);
}

}  // namespace

bool noise_init_cpu(const float* Y, const float* sigma, std::size_t B, std::size_t F,
                    std::size_t N, std::uint64_t seed, std::uint64_t frame_offset, float* out) {
    std::uint32_t bad = 0;
    for (std::size_t f = 0; f < F; ++f) bad |= nonfinite(sigma[f]);
    if (bad) return false;
    std::atomic<std::uint32_t> any_bad{0};
    parallel_for(B * F, [&](std::size_t begin, std::size_t end) {
        std::uint32_t local = 0;
        for (std::size_t row = begin; row < end; ++row) {
            const std::size_t b = row / F, f = row % F;
            const float s = sigma[f];
            const float* yr = Y + (b * 2 * F + f) * N;
            const float* yi = yr + F * N;
            float* o_r = out + (b * 2 * F + f) * N;
            float* o_i = o_r + F * N;
            for (std::size_t n = 0; n < N; ++n) {
                float zr, zi;
                complex_normal(seed, static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(f),
                               frame_offset + n, zr, zi);
                local |= nonfinite(yr[n]) | nonfinite(yi[n]);
                o_r[n] = yr[n] + s * zr;
                o_i[n] = yi[n] + s * zi;
            }
        }
        if (local) any_bad.store(1);
    });
    return any_bad.load() == 0;
}

bool axpy_cpu(const float* x, const float* k, float a, std::size_t n, float* out) {
    // Large blocks per thread; the inner loop is a plain vectorisable stream.
    constexpr std::size_t kBlock = 1 << 16;
    const std::size_t blocks = (n + kBlock - 1) / kBlock;
    std::atomic<std::uint32_t> any_bad{0};
    parallel_for(blocks, [&](std::size_t begin, std::size_t end) {
        std::uint32_t bad = 0;
        const std::size_t i0 = begin * kBlock, i1 = end * kBlock < n ? end * kBlock : n;
        for (std::size_t i = i0; i < i1; ++i) {
            std::uint32_t ux, uk;
            std::memcpy(&ux, x + i, sizeof ux);
            std::memcpy(&uk, k + i, sizeof uk);
            bad |= static_cast<std::uint32_t>((ux & 0x7f800000u) == 0x7f800000u) |
                   static_cast<std::uint32_t>((uk & 0x7f800000u) == 0x7f800000u);
            out[i] = x[i] + a * k[i];
        }
        if (bad) any_bad.store(1);
    });
    return any_bad.load() == 0;
}

}  // namespace flowdec

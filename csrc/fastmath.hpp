// Vectorised float power x^e for x > 0: log2 from the exponent bits plus an atanh series
// for the mantissa, exp2 from a Taylor series plus exponent bits. Relative error ~1e-6
// over the float range; only +, -, *, / and integer bit operations (no libm, no FMA
// assumptions), on the vf vectors of simd.hpp.
#pragma once

#include <cfloat>
#include <cstdint>
#include <cstring>

#include "simd.hpp"

namespace flowdec {

// An exponent split so that e_hi * k is exact for integers |k| < 4096.
struct PowExponent {
    float e, e_hi, e_lo;
    explicit PowExponent(float value) : e(value), e_hi(0.0f), e_lo(0.0f) {
        std::uint32_t u;
        std::memcpy(&u, &value, sizeof u);
        u &= 0xfffff000u;  // keep 11 mantissa bits
        std::memcpy(&e_hi, &u, sizeof e_hi);
        e_lo = value - e_hi;
    }
};

// Lane-wise mask ? a : b with an all-ones/all-zeros mask (bit operations only, which
// compilers lower well for any vector width; vector ?: is scalarised on some targets).
inline vf select(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }
inline vi select(vi mask, vi a, vi b) { return (mask & a) | (~mask & b); }

inline vi round_to_int(vf v) {
    const vf half = (vf)(((vu)v & 0x80000000u) | 0x3f000000u);  // copysign(0.5, v)
    return __builtin_convertvector(v + half, vi);
}

// x^e lane-wise for x >= FLT_MIN; 0 where x < FLT_MIN (including 0) or the result
// underflows (< 2^-126); results above 2^128 saturate near FLT_MAX.
inline vf pow_pos(vf x, const PowExponent& pe) {
    const vu u = (vu)x;  // vector casts reinterpret the bits
    vi ex = (vi)(u >> 23) - 127;
    const vu mu = (u & 0x007fffffu) | 0x3f800000u;
    vf m = (vf)mu;
    const vi big = m > 1.41421356f;
    m = select(big, m * 0.5f, m);
    ex = ex - big;  // big is -1 where true
    // ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| <= 0.1716
    const vf t = (m - 1.0f) / (m + 1.0f);
    const vf t2 = t * t;
    const vf series =
        1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9))));
    const vf log2m = 2.8853900817779268f * t * series;  // 2 / ln 2
    // y = e * (ex + log2m) = n1 + n2 + r with integers n1, n2 and |r| <= 0.5
    const vf fex = __builtin_convertvector(ex, vf);
    const vf eex = pe.e_hi * fex;  // exact
    const vi n1 = round_to_int(eex);
    const vf y_frac = (eex - __builtin_convertvector(n1, vf)) + pe.e_lo * fex + pe.e * log2m;
    const vi n2 = round_to_int(y_frac);
    const vf r = y_frac - __builtin_convertvector(n2, vf);
    vi n = n1 + n2;
    // 2^r = e^{r ln 2}, Taylor to degree 7 (|r ln 2| <= 0.35 -> error < 1e-8)
    const vf z = r * 0.693147180559945309f;
    const vf p = 1.0f + z * (1.0f + z * (0.5f + z * (1.0f / 6 + z * (1.0f / 24 + z * (1.0f / 120 +
                                                     z * (1.0f / 720 + z * (1.0f / 5040)))))));
    const vi under = (n < -126) | (x < FLT_MIN);
    n = select(n > 127, vi{} + 127, n);
    const vi su = ((n + 127) << 23) & ~under;
    return (vf)(~under & (vi)(p * (vf)su));
}

}  // namespace flowdec

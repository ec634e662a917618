// Our own mixed-radix (2, 3, 4, 5) Stockham FFT, vectorised across kLanes independent
// transforms (STFT frames), plus a real FFT of even size n built on the complex FFT of n/2.
#pragma once

#include <memory>
#include <vector>

#include "simd.hpp"

namespace flowdec {

struct FftStage {
    int radix;  // 2, 3, 4 or 5
    int m;      // sub-sequence length n / radix at this stage
    int s;      // stride (product of the radices before this stage)
    std::vector<float> tw_re, tw_im;  // twiddle w_n^(p*k), [k][p], k < radix, p < m
};

// Plan for real transforms of size n_fft (even, factors 2/3/5 only).
struct RealFftPlan {
    int n_fft = 0;
    int half = 0;  // complex size M = n_fft / 2
    std::vector<FftStage> stages;
    std::vector<float> post_re, post_im;  // e^{-2 pi i k / n_fft}, k <= M
    std::vector<float> window;            // periodic Hann, length n_fft
};

// True when n is even, >= 2 and its factors are only 2, 3, 5.
bool fft_size_supported(int n_fft);

// Thread-safe cached plan (built once per size).
std::shared_ptr<const RealFftPlan> get_plan(int n_fft);

// Forward complex FFT of size plan.half on kLanes transforms at once: (re, im) hold
// plan.half vectors, one lane per transform; (wre, wim) are scratch of the same size.
// Returns true when the result ended up in the scratch buffers (Stockham ping-pong).
bool complex_fft_lanes(const RealFftPlan& plan, vf* re, vf* im, vf* wre, vf* wim);

}  // namespace flowdec

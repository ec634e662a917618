// Compressed complex STFT (Φ) and its inverse (Φ⁻¹) on frames, float32.
//
// Frame n of a signal x[0..len) covers x[offset + n*hop + j], j < n_fft, with zeros
// outside [0, len); it is multiplied by the periodic Hann window, transformed by a
// one-sided real FFT (no normalisation) and compressed: X -> beta |X|^alpha e^{i angle X}.
//
// Positions are int64 and the kernels do not check for overflow: callers keep offsets and
// starts within ±2^60 and frame counts × hop far below that (the bindings enforce it).
#pragma once

#include <cstddef>
#include <cstdint>

namespace flowdec {

struct StftParams {
    int n_fft;
    int hop;
    float alpha;
    float beta;
};

// x: [channels, len]; out: [channels, 2, n_fft/2+1, n_frames] (re, im).
void stft_compressed(const float* x, std::size_t channels, std::int64_t len, std::int64_t offset,
                     std::int64_t n_frames, const StftParams& p, float* out);

// X: [channels, 2, F, n_frames] compressed spectra. Decompresses, inverts the real FFT,
// windows, and adds frame n into acc[c, offset + n*hop + j] (positions outside [0, acc_len)
// are skipped). Frames are added in order n = 0, 1, ...
void istft_overlap_add(const float* X, std::size_t channels, std::int64_t n_frames,
                       const StftParams& p, float* acc, std::int64_t acc_len,
                       std::int64_t offset);

// Sum of squared windows at samples t = start .. start+count-1 of the centred signal
// (frame n covers t in [n*hop - n_fft/2, n*hop + n_fft/2)), for frames 0 .. n_frames-1.
void window_envelope(std::int64_t start, std::int64_t count, std::int64_t n_frames,
                     const StftParams& p, float* env);

}  // namespace flowdec

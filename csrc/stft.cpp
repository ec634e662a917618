#include "stft.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.hpp"
#include "fastmath.hpp"
#include "fft.hpp"

namespace flowdec {

namespace {

constexpr int L = kLanes;

struct Scratch {
    std::vector<vf> re, im, wre, wim, xr, xi;
    std::vector<float> edge;  // zero-padded frames at the signal edges, [L][n_fft]
    explicit Scratch(int M)
        : re(static_cast<std::size_t>(M)), im(re.size()), wre(re.size()), wim(re.size()),
          xr(static_cast<std::size_t>(M + 1)), xi(xr.size()),
          edge(static_cast<std::size_t>(2 * M) * L) {}
};

// Analysis of frames n0 .. n0+nl-1 (nl <= L) of one channel, one frame per lane.
void analyse_group(const RealFftPlan& plan, const StftParams& p, const float* x, std::int64_t len,
                   std::int64_t offset, std::int64_t n0, int nl, std::int64_t n_frames,
                   Scratch& s, float* out_re, float* out_im) {
    const int M = plan.half;
    const float* w = plan.window.data();
    vf* re = s.re.data();
    vf* im = s.im.data();
    // One source pointer per lane: straight into x, or into a zero-padded copy at the edges.
    const float* src[L];
    for (int l = 0; l < L; ++l) {
        const std::int64_t base = offset + (n0 + l) * p.hop;
        if (l < nl && base >= 0 && base <= len - p.n_fft) {  // the whole frame is in x
            src[l] = x + base;
            continue;
        }
        float* pad = s.edge.data() + static_cast<std::size_t>(l) * p.n_fft;
        for (int j = 0; j < p.n_fft; ++j) {
            const std::int64_t t = base + j;
            pad[j] = (l < nl && t >= 0 && t < len) ? x[t] : 0.0f;
        }
        src[l] = pad;
    }
    for (int m = 0; m < M; ++m) {
        const int j = 2 * m;
        vf ev, od;
        for (int l = 0; l < L; ++l) {
            ev[l] = src[l][j];
            od[l] = src[l][j + 1];
        }
        re[m] = ev * w[j];
        im[m] = od * w[j + 1];
    }
    const bool scratch = complex_fft_lanes(plan, re, im, s.wre.data(), s.wim.data());
    const vf* zr = scratch ? s.wre.data() : re;
    const vf* zi = scratch ? s.wim.data() : im;
    const PowExponent pe((p.alpha - 1.0f) * 0.5f);
    const float beta = p.beta;
    for (int k = 0; k <= M; ++k) {
        const int ka = k % M;
        const int kc = (k == 0 || k == M) ? 0 : M - k;
        const float wr = plan.post_re[k], wi = plan.post_im[k];
        const vf ar = zr[ka], ai = zi[ka], cr = zr[kc], ci = zi[kc];
        // E = (Z_k + conj Z_{M-k}) / 2, O = (Z_k - conj Z_{M-k}) / 2i, X = E + W^k O
        const vf er = 0.5f * (ar + cr), ei = 0.5f * (ai - ci);
        const vf o_r = 0.5f * (ai + ci), o_i = -0.5f * (ar - cr);
        const vf xr = er + wr * o_r - wi * o_i;
        const vf xi = ei + wr * o_i + wi * o_r;
        const vf g = beta * pow_pos(xr * xr + xi * xi, pe);
        const vf yr = xr * g, yi = xi * g;
        float* dr = out_re + static_cast<std::size_t>(k) * n_frames + n0;
        float* di = out_im + static_cast<std::size_t>(k) * n_frames + n0;
        if (nl == L) {
            std::memcpy(dr, &yr, sizeof yr);
            std::memcpy(di, &yi, sizeof yi);
        } else {
            for (int l = 0; l < nl; ++l) {
                dr[l] = yr[l];
                di[l] = yi[l];
            }
        }
    }
}

// Synthesis of frames n0 .. n0+nl-1 of one channel into frames[l * n_fft + j] (windowed).
void synthesise_group(const RealFftPlan& plan, const StftParams& p, const float* in_re,
                      const float* in_im, std::int64_t n_frames, std::int64_t n0, int nl,
                      Scratch& s, float* frames) {
    const int M = plan.half;
    const PowExponent pe((1.0f / p.alpha - 1.0f) * 0.5f);
    const float gain = std::pow(p.beta, -1.0f / p.alpha);
    vf* xr = s.xr.data();
    vf* xi = s.xi.data();
    for (int k = 0; k <= M; ++k) {
        const float* sr = in_re + static_cast<std::size_t>(k) * n_frames + n0;
        const float* si = in_im + static_cast<std::size_t>(k) * n_frames + n0;
        vf vr{}, vi_{};
        if (nl == L) {
            std::memcpy(&vr, sr, sizeof vr);
            std::memcpy(&vi_, si, sizeof vi_);
        } else {
            for (int l = 0; l < nl; ++l) {
                vr[l] = sr[l];
                vi_[l] = si[l];
            }
        }
        if (k == 0 || k == M) vi_ = vf{};  // irfft ignores Im of DC and Nyquist
        const vf g = gain * pow_pos(vr * vr + vi_ * vi_, pe);
        xr[k] = vr * g;
        xi[k] = vi_ * g;
    }
    vf* re = s.re.data();
    vf* im = s.im.data();
    for (int k = 0; k < M; ++k) {
        const vf ar = xr[k], ai = xi[k], cr = xr[M - k], ci = xi[M - k];
        const float wr = plan.post_re[k], wi = -plan.post_im[k];  // W^{-k}
        // E = (X_k + conj X_{M-k}) / 2, O = (X_k - conj X_{M-k}) W^{-k} / 2, Z = E + iO
        const vf er = 0.5f * (ar + cr), ei = 0.5f * (ai - ci);
        const vf dr = 0.5f * (ar - cr), di = 0.5f * (ai + ci);
        const vf o_r = dr * wr - di * wi, o_i = dr * wi + di * wr;
        re[k] = er - o_i;
        im[k] = -(ei + o_r);  // conjugated: ifft(Z) = conj(fft(conj Z)) / M
    }
    const bool scratch = complex_fft_lanes(plan, re, im, s.wre.data(), s.wim.data());
    const vf* zr = scratch ? s.wre.data() : re;
    const vf* zi = scratch ? s.wim.data() : im;
    const float inv = 1.0f / static_cast<float>(M);
    const float* w = plan.window.data();
    for (int l = 0; l < nl; ++l) {
        float* f = frames + static_cast<std::size_t>(l) * p.n_fft;
        for (int m = 0; m < M; ++m) {
            f[2 * m] = zr[m][l] * inv * w[2 * m];
            f[2 * m + 1] = -zi[m][l] * inv * w[2 * m + 1];
        }
    }
}

}  // namespace

void stft_compressed(const float* x, std::size_t channels, std::int64_t len, std::int64_t offset,
                     std::int64_t n_frames, const StftParams& p, float* out) {
    const auto plan = get_plan(p.n_fft);
    const std::int64_t F = plan->half + 1;
    const std::int64_t groups = (n_frames + L - 1) / L;
    const std::size_t jobs = channels * static_cast<std::size_t>(groups);
    parallel_for(jobs, [&](std::size_t begin, std::size_t end) {
        Scratch s(plan->half);
        for (std::size_t j = begin; j < end; ++j) {
            const std::size_t c = j / static_cast<std::size_t>(groups);
            const std::int64_t g = static_cast<std::int64_t>(j % static_cast<std::size_t>(groups));
            const std::int64_t n0 = g * L;
            const int nl = static_cast<int>(std::min<std::int64_t>(L, n_frames - n0));
            float* o = out + c * 2 * F * n_frames;
            analyse_group(*plan, p, x + c * len, len, offset, n0, nl, n_frames, s, o,
                          o + F * n_frames);
        }
    });
}

void istft_overlap_add(const float* X, std::size_t channels, std::int64_t n_frames,
                       const StftParams& p, float* acc, std::int64_t acc_len,
                       std::int64_t offset) {
    const auto plan = get_plan(p.n_fft);
    const std::int64_t F = plan->half + 1;
    const std::int64_t groups = (n_frames + L - 1) / L;
    // Split each channel into chunks of whole lane groups; each chunk overlap-adds into its
    // own segment, and the segments are then added to acc in order. The chunk length is
    // fixed (not derived from the thread count), so the order of every sum, and with it the
    // result, is the same however many threads run.
    constexpr std::int64_t groups_per_chunk = 16;
    const std::int64_t chunks = (groups + groups_per_chunk - 1) / groups_per_chunk;
    const std::size_t jobs = channels * static_cast<std::size_t>(chunks);
    std::vector<std::vector<float>> segments(jobs);
    parallel_for(jobs, [&](std::size_t begin, std::size_t end) {
        Scratch s(plan->half);
        std::vector<float> frames(static_cast<std::size_t>(L) * p.n_fft);
        for (std::size_t j = begin; j < end; ++j) {
            const std::size_t c = j / static_cast<std::size_t>(chunks);
            const std::int64_t ch = static_cast<std::int64_t>(j % static_cast<std::size_t>(chunks));
            const std::int64_t f0 = ch * groups_per_chunk * L;
            const std::int64_t f1 = std::min(n_frames, f0 + groups_per_chunk * L);
            std::vector<float>& seg = segments[j];
            seg.assign(static_cast<std::size_t>((f1 - f0 - 1) * p.hop + p.n_fft), 0.0f);
            const float* in = X + c * 2 * F * n_frames;
            for (std::int64_t n0 = f0; n0 < f1; n0 += L) {
                const int nl = static_cast<int>(std::min<std::int64_t>(L, f1 - n0));
                synthesise_group(*plan, p, in, in + F * n_frames, n_frames, n0, nl, s,
                                 frames.data());
                for (int l = 0; l < nl; ++l) {
                    float* dst = seg.data() + (n0 + l - f0) * p.hop;
                    const float* src = frames.data() + static_cast<std::size_t>(l) * p.n_fft;
                    for (int t = 0; t < p.n_fft; ++t) dst[t] += src[t];
                }
            }
        }
    });
    parallel_for(channels, [&](std::size_t cb, std::size_t ce) {
        for (std::size_t c = cb; c < ce; ++c) {
            float* a = acc + c * static_cast<std::size_t>(acc_len);
            for (std::int64_t ch = 0; ch < chunks; ++ch) {
                const std::vector<float>& seg = segments[c * chunks + ch];
                const std::int64_t start = offset + ch * groups_per_chunk * L * p.hop;
                const std::int64_t lo = std::max<std::int64_t>(0, -start);
                const std::int64_t hi =
                    std::min<std::int64_t>(static_cast<std::int64_t>(seg.size()), acc_len - start);
                for (std::int64_t t = lo; t < hi; ++t) a[start + t] += seg[t];
            }
        }
    });
}

void window_envelope(std::int64_t start, std::int64_t count, std::int64_t n_frames,
                     const StftParams& p, float* env) {
    const auto plan = get_plan(p.n_fft);
    const float* w = plan->window.data();
    const std::int64_t pad = p.n_fft / 2;
    for (std::int64_t i = 0; i < count; ++i) {
        const std::int64_t u = start + i + pad;  // position in the padded signal
        // frames n with 0 <= u - n*hop < n_fft
        std::int64_t n_lo = u - p.n_fft + 1 <= 0 ? 0 : (u - p.n_fft + 1 + p.hop - 1) / p.hop;
        std::int64_t n_hi = u < 0 ? -1 : u / p.hop;
        n_hi = std::min(n_hi, n_frames - 1);
        float e = 0.0f;
        for (std::int64_t n = n_lo; n <= n_hi; ++n) {
            const float v = w[u - n * p.hop];
            e += v * v;
        }
        env[i] = e;
    }
}

}  // namespace flowdec

#include "fft.hpp"

#include <cmath>
#include <map>
#include <mutex>
#include <stdexcept>

namespace flowdec {

namespace {

constexpr double kPi = 3.14159265358979323846;

std::vector<int> factorize(int n) {
    // Radix 4 first (fewest passes), then 2, 3, 5.
    std::vector<int> radices;
    while (n % 4 == 0) { radices.push_back(4); n /= 4; }
    while (n % 2 == 0) { radices.push_back(2); n /= 2; }
    while (n % 3 == 0) { radices.push_back(3); n /= 3; }
    while (n % 5 == 0) { radices.push_back(5); n /= 5; }
    if (n != 1) radices.clear();
    return radices;
}

std::shared_ptr<RealFftPlan> build_plan(int n_fft) {
    auto plan = std::make_shared<RealFftPlan>();
    plan->n_fft = n_fft;
    plan->half = n_fft / 2;
    const int M = plan->half;
    int n = M, s = 1;
    for (int r : factorize(M)) {
        FftStage st;
        st.radix = r;
        st.m = n / r;
        st.s = s;
        st.tw_re.resize(static_cast<std::size_t>(r) * st.m);
        st.tw_im.resize(static_cast<std::size_t>(r) * st.m);
        for (int k = 0; k < r; ++k) {
            for (int p = 0; p < st.m; ++p) {
                const double a = -2.0 * kPi * static_cast<double>(p) * k / n;
                st.tw_re[static_cast<std::size_t>(k) * st.m + p] = static_cast<float>(std::cos(a));
                st.tw_im[static_cast<std::size_t>(k) * st.m + p] = static_cast<float>(std::sin(a));
            }
        }
        plan->stages.push_back(std::move(st));
        n /= r;
        s *= r;
    }
    plan->post_re.resize(M + 1);
    plan->post_im.resize(M + 1);
    for (int k = 0; k <= M; ++k) {
        const double a = -2.0 * kPi * k / n_fft;
        plan->post_re[k] = static_cast<float>(std::cos(a));
        plan->post_im[k] = static_cast<float>(std::sin(a));
    }
    plan->window.resize(n_fft);
    for (int j = 0; j < n_fft; ++j) {
        plan->window[j] = static_cast<float>(0.5 - 0.5 * std::cos(2.0 * kPi * j / n_fft));
    }
    return plan;
}

// y[q + s*(r*p + k)] = (sum_j a_j w_r^{jk}) * w_n^{pk}, a_j = x[q + s*(p + j*m)].
template <int R>
void stage(const FftStage& st, const vf* __restrict xr, const vf* __restrict xi,
           vf* __restrict yr, vf* __restrict yi) {
    const int m = st.m, s = st.s;
    for (int p = 0; p < m; ++p) {
        vf twr[R], twi[R];
        for (int k = 0; k < R; ++k) {
            twr[k] = splat(st.tw_re[static_cast<std::size_t>(k) * m + p]);
            twi[k] = splat(st.tw_im[static_cast<std::size_t>(k) * m + p]);
        }
        for (int q = 0; q < s; ++q) {
            vf ar[R], ai[R], outr[R], outi[R];
            for (int j = 0; j < R; ++j) {
                ar[j] = xr[q + s * (p + j * m)];
                ai[j] = xi[q + s * (p + j * m)];
            }
            if constexpr (R == 2) {
                outr[0] = ar[0] + ar[1];
                outi[0] = ai[0] + ai[1];
                outr[1] = ar[0] - ar[1];
                outi[1] = ai[0] - ai[1];
            } else if constexpr (R == 4) {
                const vf t0r = ar[0] + ar[2], t0i = ai[0] + ai[2];
                const vf t1r = ar[0] - ar[2], t1i = ai[0] - ai[2];
                const vf t2r = ar[1] + ar[3], t2i = ai[1] + ai[3];
                const vf t3r = ai[1] - ai[3], t3i = ar[3] - ar[1];  // (a1 - a3) * (-i)
                outr[0] = t0r + t2r;
                outi[0] = t0i + t2i;
                outr[2] = t0r - t2r;
                outi[2] = t0i - t2i;
                outr[1] = t1r + t3r;
                outi[1] = t1i + t3i;
                outr[3] = t1r - t3r;
                outi[3] = t1i - t3i;
            } else if constexpr (R == 3) {
                constexpr float c = -0.5f;
                constexpr float sn = 0.866025403784438647f;  // sin(2 pi / 3)
                const vf sr = ar[1] + ar[2], si = ai[1] + ai[2];
                const vf dr = ar[1] - ar[2], di = ai[1] - ai[2];
                const vf er = ar[0] + c * sr, ei = ai[0] + c * si;
                outr[0] = ar[0] + sr;
                outi[0] = ai[0] + si;
                outr[1] = er + sn * di;  // -i*sn*d
                outi[1] = ei - sn * dr;
                outr[2] = er - sn * di;
                outi[2] = ei + sn * dr;
            } else {  // R == 5
                constexpr float c1 = 0.309016994374947424f, c2 = -0.809016994374947424f;
                constexpr float s1 = 0.951056516295153572f, s2 = 0.587785252292473129f;
                const vf b1r = ar[1] + ar[4], b1i = ai[1] + ai[4];
                const vf b2r = ar[2] + ar[3], b2i = ai[2] + ai[3];
                const vf d1r = ar[1] - ar[4], d1i = ai[1] - ai[4];
                const vf d2r = ar[2] - ar[3], d2i = ai[2] - ai[3];
                outr[0] = ar[0] + b1r + b2r;
                outi[0] = ai[0] + b1i + b2i;
                const vf e1r = ar[0] + c1 * b1r + c2 * b2r, e1i = ai[0] + c1 * b1i + c2 * b2i;
                const vf e2r = ar[0] + c2 * b1r + c1 * b2r, e2i = ai[0] + c2 * b1i + c1 * b2i;
                const vf f1r = s1 * d1r + s2 * d2r, f1i = s1 * d1i + s2 * d2i;
                const vf f2r = s2 * d1r - s1 * d2r, f2i = s2 * d1i - s1 * d2i;
                outr[1] = e1r + f1i;
                outi[1] = e1i - f1r;
                outr[4] = e1r - f1i;
                outi[4] = e1i + f1r;
                outr[2] = e2r + f2i;
                outi[2] = e2i - f2r;
                outr[3] = e2r - f2i;
                outi[3] = e2i + f2r;
            }
            yr[q + s * (R * p)] = outr[0];
            yi[q + s * (R * p)] = outi[0];
            for (int k = 1; k < R; ++k) {
                yr[q + s * (R * p + k)] = outr[k] * twr[k] - outi[k] * twi[k];
                yi[q + s * (R * p + k)] = outr[k] * twi[k] + outi[k] * twr[k];
            }
        }
    }
}

}  // namespace

bool fft_size_supported(int n_fft) {
    if (n_fft < 2 || n_fft % 2 != 0) return false;
    if (n_fft == 2) return true;
    return !factorize(n_fft / 2).empty();
}

std::shared_ptr<const RealFftPlan> get_plan(int n_fft) {
    static std::mutex mutex;
    static std::map<int, std::shared_ptr<const RealFftPlan>> cache;
    if (!fft_size_supported(n_fft)) throw std::invalid_argument("unsupported FFT size");
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(n_fft);
    if (it != cache.end()) return it->second;
    auto plan = build_plan(n_fft);
    cache.emplace(n_fft, plan);
    return plan;
}

bool complex_fft_lanes(const RealFftPlan& plan, vf* re, vf* im, vf* wre, vf* wim) {
    bool in_scratch = false;
    vf *xr = re, *xi = im, *yr = wre, *yi = wim;
    for (const FftStage& st : plan.stages) {
        switch (st.radix) {
            case 2: stage<2>(st, xr, xi, yr, yi); break;
            case 3: stage<3>(st, xr, xi, yr, yi); break;
            case 4: stage<4>(st, xr, xi, yr, yi); break;
            default: stage<5>(st, xr, xi, yr, yi); break;
        }
        std::swap(xr, yr);
        std::swap(xi, yi);
        in_scratch = !in_scratch;
    }
    return in_scratch;
}

}  // namespace flowdec

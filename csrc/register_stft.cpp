// Bindings: compressed STFT (Φ), overlap-add synthesis (Φ⁻¹) and the window envelope.
#include <cmath>
#include <cstdint>
#include <string>

#include "common.hpp"
#include "fft.hpp"
#include "stft.hpp"

namespace flowdec {

namespace {

StftParams check_params(int n_fft, int hop, double alpha, double beta) {
    if (n_fft < 2 || n_fft % 2 != 0 || n_fft > (1 << 24)) {
        raise_value("n_fft", "must be even and >= 2, got " + std::to_string(n_fft));
    }
    if (!fft_size_supported(n_fft)) {
        raise_value("n_fft", "must have only the prime factors 2, 3, 5, got " + std::to_string(n_fft));
    }
    if (hop <= 0 || hop > n_fft) {
        raise_value("hop", "must be in [1, n_fft=" + std::to_string(n_fft) + "], got " + std::to_string(hop));
    }
    if (!(alpha > 0.0) || !std::isfinite(alpha) || alpha > 100.0) {
        raise_value("alpha", "must be finite and > 0, got " + std::to_string(alpha));
    }
    if (!(beta > 0.0) || !std::isfinite(beta)) {
        raise_value("beta", "must be finite and > 0, got " + std::to_string(beta));
    }
    return StftParams{n_fft, hop, static_cast<float>(alpha), static_cast<float>(beta)};
}

// Sample positions (offsets, starts, counts) are limited to ±kMaxPosition, so that every
// position the kernels form (position + frames * hop + n_fft) fits in int64 without overflow.
constexpr std::int64_t kMaxPosition = std::int64_t{1} << 60;

void check_position(const char* name, std::int64_t v) {
    if (v < -kMaxPosition || v > kMaxPosition) {
        raise_value(name, "must be within ±2^60 samples, got " + std::to_string(v));
    }
}

py::array_t<float> py_stft(const py::object& x_obj, std::int64_t offset, std::int64_t n_frames,
                           int n_fft, int hop, double alpha, double beta) {
    const StftParams p = check_params(n_fft, hop, alpha, beta);
    check_position("offset", offset);
    F32Array x = as_f32(x_obj, "x", 2, 2);
    require_finite(x, "x");
    if (n_frames < 1 || n_frames > (std::int64_t{1} << 31)) {
        raise_value("n_frames", "must be in [1, 2^31], got " + std::to_string(n_frames));
    }
    const std::size_t C = static_cast<std::size_t>(x.shape(0));
    const std::int64_t len = x.shape(1);
    const py::ssize_t F = n_fft / 2 + 1;
    py::array_t<float> out({static_cast<py::ssize_t>(C), py::ssize_t{2}, F,
                            static_cast<py::ssize_t>(n_frames)});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        stft_compressed(x.data(), C, len, offset, n_frames, p, o);
    }
    return out;
}

void py_istft_ola(const py::object& X_obj, py::array acc_obj, std::int64_t offset, int n_fft,
                  int hop, double alpha, double beta) {
    const StftParams p = check_params(n_fft, hop, alpha, beta);
    check_position("offset", offset);
    F32Array X = as_f32(X_obj, "X", 4, 4);
    const py::ssize_t F = n_fft / 2 + 1;
    if (X.shape(1) != 2 || X.shape(2) != F) {
        raise_value("X", "expected shape [C, 2, " + std::to_string(F) + ", frames], got [" +
                             std::to_string(X.shape(0)) + ", " + std::to_string(X.shape(1)) +
                             ", " + std::to_string(X.shape(2)) + ", " +
                             std::to_string(X.shape(3)) + "]");
    }
    require_finite(X, "X");
    if (!py::isinstance<py::array_t<float>>(acc_obj) || acc_obj.ndim() != 2 ||
        !(acc_obj.flags() & py::array::c_style) || !acc_obj.writeable()) {
        raise_value("acc", "must be a writable C-contiguous float32 array [C, samples]");
    }
    if (acc_obj.shape(0) != X.shape(0)) {
        raise_value("acc", "has " + std::to_string(acc_obj.shape(0)) + " channels, X has " +
                               std::to_string(X.shape(0)));
    }
    auto acc = py::reinterpret_borrow<py::array_t<float>>(acc_obj);
    float* a = acc.mutable_data();
    const std::int64_t acc_len = acc.shape(1);
    {
        py::gil_scoped_release release;
        istft_overlap_add(X.data(), static_cast<std::size_t>(X.shape(0)), X.shape(3), p, a,
                          acc_len, offset);
    }
}

py::array_t<float> py_ola_normalize(const py::object& acc_obj, std::int64_t start,
                                    std::int64_t n_frames, int n_fft, int hop) {
    const StftParams p = check_params(n_fft, hop, 1.0, 1.0);
    check_position("start", start);
    if (n_frames < 0) raise_value("n_frames", "must be >= 0, got " + std::to_string(n_frames));
    F32Array acc = as_f32(acc_obj, "acc", 2, 2);
    const std::size_t C = static_cast<std::size_t>(acc.shape(0));
    const std::int64_t count = acc.shape(1);
    py::array_t<float> out({static_cast<py::ssize_t>(C), static_cast<py::ssize_t>(count)});
    float* o = out.mutable_data();
    const float* a = acc.data();
    {
        py::gil_scoped_release release;
        std::vector<float> env(static_cast<std::size_t>(count));
        window_envelope(start, count, n_frames, p, env.data());
        for (std::size_t c = 0; c < C; ++c) {
            for (std::int64_t t = 0; t < count; ++t) {
                const float e = env[t];
                o[c * count + t] = e > 0.0f ? a[c * count + t] / e : 0.0f;
            }
        }
    }
    return out;
}

py::array_t<float> py_envelope(std::int64_t start, std::int64_t count, std::int64_t n_frames,
                               int n_fft, int hop) {
    const StftParams p = check_params(n_fft, hop, 1.0, 1.0);
    check_position("start", start);
    if (count < 0 || count > kMaxPosition) {
        raise_value("count", "must be in [0, 2^60], got " + std::to_string(count));
    }
    if (n_frames < 0) raise_value("n_frames", "must be >= 0, got " + std::to_string(n_frames));
    py::array_t<float> env(static_cast<py::ssize_t>(count));
    float* e = env.mutable_data();
    {
        py::gil_scoped_release release;
        window_envelope(start, count, n_frames, p, e);
    }
    return env;
}

}  // namespace

void register_stft(py::module_& m) {
    m.def("fft_size_supported", &fft_size_supported, py::arg("n_fft"));
    m.def("stft", &py_stft, py::arg("x"), py::arg("offset"), py::arg("n_frames"),
          py::arg("n_fft"), py::arg("hop"), py::arg("alpha"), py::arg("beta"),
          "Compressed STFT of frames n = 0..n_frames-1 covering x[:, offset + n*hop + j].");
    m.def("istft_ola", &py_istft_ola, py::arg("X"), py::arg("acc"), py::arg("offset"),
          py::arg("n_fft"), py::arg("hop"), py::arg("alpha"), py::arg("beta"),
          "Decompress, inverse FFT, window and add frame n into acc[:, offset + n*hop + j].");
    m.def("ola_normalize", &py_ola_normalize, py::arg("acc"), py::arg("start"),
          py::arg("n_frames"), py::arg("n_fft"), py::arg("hop"),
          "acc / (sum of squared windows) for samples start.. (0 where the sum is 0).");
    m.def("window_envelope", &py_envelope, py::arg("start"), py::arg("count"),
          py::arg("n_frames"), py::arg("n_fft"), py::arg("hop"));
}

}  // namespace flowdec

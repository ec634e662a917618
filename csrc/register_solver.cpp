// Bindings: fused solver kernels (noise init with the counter-based RNG, axpy steps) and
// the raw RNG for tests.
#include <string>

#include "common.hpp"
#include "rng.hpp"
#include "solver.hpp"

namespace flowdec {

namespace {

// A writable C-contiguous float32 array (in-place outputs are never converted silently).
py::array_t<float> as_out(const py::object& obj, const char* name) {
    if (!py::isinstance<py::array_t<float>>(obj)) {
        raise_value(name, "must be a float32 numpy array");
    }
    auto arr = py::reinterpret_borrow<py::array>(obj);
    if (!(arr.flags() & py::array::c_style) || !arr.writeable()) {
        raise_value(name, "must be a writable C-contiguous float32 array");
    }
    return py::reinterpret_borrow<py::array_t<float>>(obj);
}

std::string shape_str(const py::array& a) {
    std::string s = "[";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + "]";
}

void same_shape(const py::array& a, const py::array& ref, const char* name, const char* ref_name) {
    bool ok = a.ndim() == ref.ndim();
    for (py::ssize_t i = 0; ok && i < a.ndim(); ++i) ok = a.shape(i) == ref.shape(i);
    if (!ok) {
        raise_value(name, "shape " + shape_str(a) + " does not match " + ref_name + " " +
                              shape_str(ref));
    }
}

py::array_t<float> py_noise_init(const py::object& Y_obj, const py::object& sigma_obj,
                                 std::uint64_t seed, std::int64_t frame_offset,
                                 const py::object& out_obj) {
    F32Array Y = as_f32(Y_obj, "Y", 4, 4);
    if (Y.shape(1) != 2) raise_value("Y", "expected shape [B, 2, F, N], got " + shape_str(Y));
    F32Array sigma = as_f32(sigma_obj, "sigma_y", 1, 1);
    if (sigma.shape(0) != Y.shape(2)) {
        raise_value("sigma_y", "has " + std::to_string(sigma.shape(0)) + " values, Y has " +
                                   std::to_string(Y.shape(2)) + " bins");
    }
    if (frame_offset < 0) raise_value("frame_offset", "must be >= 0");
    py::array_t<float> out = out_obj.is_none()
                                 ? py::array_t<float>({Y.shape(0), Y.shape(1), Y.shape(2), Y.shape(3)})
                                 : as_out(out_obj, "out");
    same_shape(out, Y, "out", "Y");
    float* o = out.mutable_data();
    bool ok;
    {
        py::gil_scoped_release release;
        ok = noise_init_cpu(Y.data(), sigma.data(), Y.shape(0), Y.shape(2), Y.shape(3), seed,
                            static_cast<std::uint64_t>(frame_offset), o);
    }
    if (!ok) {
        require_finite(sigma, "sigma_y");
        raise_value("Y", "contains NaN or Inf");
    }
    return out;
}

py::array_t<float> py_axpy(const py::object& x_obj, const py::object& k_obj, double a,
                           const py::object& out_obj, const char* x_name, const char* k_name) {
    if (!std::isfinite(a)) raise_value("h", "must be finite");
    F32Array x = as_f32(x_obj, x_name, 1, 8);
    F32Array k = as_f32(k_obj, k_name, 1, 8);
    same_shape(k, x, k_name, x_name);
    py::array_t<float> out;
    if (out_obj.is_none()) {
        std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
        out = py::array_t<float>(shape);
    } else {
        out = as_out(out_obj, "out");
        same_shape(out, x, "out", x_name);
    }
    float* o = out.mutable_data();
    bool ok;
    {
        py::gil_scoped_release release;
        ok = axpy_cpu(x.data(), k.data(), static_cast<float>(a), static_cast<std::size_t>(x.size()), o);
    }
    if (!ok) {
        require_finite(k, k_name);
        raise_value(x_name, "contains NaN or Inf");
    }
    return out;
}

py::array_t<float> py_randn(std::uint64_t seed, std::uint32_t B, std::uint32_t F,
                            std::uint32_t N, std::uint64_t frame_offset) {
    py::array_t<float> out({static_cast<py::ssize_t>(B), py::ssize_t{2},
                            static_cast<py::ssize_t>(F), static_cast<py::ssize_t>(N)});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        for (std::uint32_t b = 0; b < B; ++b)
            for (std::uint32_t f = 0; f < F; ++f)
                for (std::uint32_t n = 0; n < N; ++n) {
                    const std::size_t i = ((std::size_t{b} * 2 * F) + f) * N + n;
                    complex_normal(seed, b, f, frame_offset + n, o[i], o[i + std::size_t{F} * N]);
                }
    }
    return out;
}

py::tuple py_philox(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                    std::uint32_t k0, std::uint32_t k1) {
    const U32x4 r = philox4x32_10(U32x4{{c0, c1, c2, c3}}, k0, k1);
    return py::make_tuple(r.v[0], r.v[1], r.v[2], r.v[3]);
}

}  // namespace

void register_solver(py::module_& m) {
    m.def("noise_init", &py_noise_init, py::arg("Y"), py::arg("sigma_y"), py::arg("seed"),
          py::arg("frame_offset"), py::arg("out") = py::none(),
          "out = Y + sigma_y[f] * z, z complex standard normal from Philox4x32-10.");
    m.def(
        "axpy",
        [](const py::object& x, const py::object& k, double a, const py::object& out) {
            return py_axpy(x, k, a, out, "X", "k");
        },
        py::arg("X"), py::arg("k"), py::arg("a"), py::arg("out") = py::none(),
        "out = X + a * k in one pass (out may be X itself: in place).");
    m.def("randn_complex", &py_randn, py::arg("seed"), py::arg("B"), py::arg("F"), py::arg("N"),
          py::arg("frame_offset") = 0, "The z of noise_init, [B, 2, F, N].");
    m.def("philox4x32_10", &py_philox, py::arg("c0"), py::arg("c1"), py::arg("c2"),
          py::arg("c3"), py::arg("k0"), py::arg("k1"));
}

}  // namespace flowdec

// Bindings: CUDA kernels on raw device pointers (available when built with CUDA).
#include <string>

#include "common.hpp"
#if defined(FLOWDEC_WITH_CUDA)
#include "cuda_kernels.hpp"
#endif

namespace flowdec {

namespace {

#if defined(FLOWDEC_WITH_CUDA)
constexpr bool kCompiled = true;

void check(const std::string& err) {
    if (!err.empty()) throw std::runtime_error("CUDA error: " + err);
}

const float* in_ptr(std::uintptr_t p, const char* name) {
    if (p == 0) raise_value(name, "is a null device pointer");
    return reinterpret_cast<const float*>(p);
}
#else
constexpr bool kCompiled = false;

[[noreturn]] void not_built() {
    throw std::runtime_error("flowdec was built without CUDA (FLOWDEC_CUDA=OFF or nvcc not found)");
}
#endif

}  // namespace

void register_cuda(py::module_& m) {
    m.def("cuda_compiled", [] { return kCompiled; }, "True when the CUDA kernels were built.");
    m.def("cuda_device_count", [] {
#if defined(FLOWDEC_WITH_CUDA)
        return cuda::device_count();
#else
        return 0;
#endif
    });
    m.def(
        "cuda_synchronize",
        [](std::uintptr_t stream) {
#if defined(FLOWDEC_WITH_CUDA)
            std::string err;
            {
                py::gil_scoped_release release;
                err = cuda::synchronize(stream);
            }
            check(err);
#else
            (void)stream;
            not_built();
#endif
        },
        py::arg("stream"), "Wait for the work queued on a stream (0: the whole device).");
    m.def(
        "cuda_noise_init",
        [](std::uintptr_t Y, std::uintptr_t sigma, std::uintptr_t out, std::uint32_t B,
           std::uint32_t F, std::uint32_t N, std::uint64_t seed, std::uint64_t frame_offset,
           std::uintptr_t stream) {
#if defined(FLOWDEC_WITH_CUDA)
            const float* y = in_ptr(Y, "Y");
            const float* s = in_ptr(sigma, "sigma_y");
            float* o = const_cast<float*>(in_ptr(out, "out"));
            std::string err;
            {
                py::gil_scoped_release release;
                err = cuda::noise_init(y, s, o, B, F, N, seed, frame_offset, stream);
            }
            check(err);
#else
            (void)Y, (void)sigma, (void)out, (void)B, (void)F, (void)N, (void)seed;
            (void)frame_offset, (void)stream;
            not_built();
#endif
        },
        py::arg("Y"), py::arg("sigma_y"), py::arg("out"), py::arg("B"), py::arg("F"),
        py::arg("N"), py::arg("seed"), py::arg("frame_offset"), py::arg("stream"));
    m.def(
        "cuda_axpy",
        [](std::uintptr_t x, std::uintptr_t k, double a, std::uintptr_t out, std::uint64_t n,
           std::uintptr_t stream) {
#if defined(FLOWDEC_WITH_CUDA)
            const float* xp = in_ptr(x, "X");
            const float* kp = in_ptr(k, "k");
            float* o = const_cast<float*>(in_ptr(out, "out"));
            std::string err;
            {
                py::gil_scoped_release release;
                err = cuda::axpy(xp, kp, static_cast<float>(a), o, n, stream);
            }
            check(err);
#else
            (void)x, (void)k, (void)a, (void)out, (void)n, (void)stream;
            not_built();
#endif
        },
        py::arg("X"), py::arg("k"), py::arg("a"), py::arg("out"), py::arg("n"), py::arg("stream"));
}

}  // namespace flowdec

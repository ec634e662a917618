#include "common.hpp"

#include <atomic>
#include <cstring>

namespace flowdec {

void raise_value(const std::string& name, const std::string& message) {
    throw py::value_error(name + ": " + message);
}

F32Array as_f32(const py::handle& obj, const char* name, int min_ndim, int max_ndim) {
    F32Array arr;
    try {
        arr = F32Array::ensure(obj);
    } catch (const py::error_already_set&) {
        arr = F32Array();
    }
    if (!arr) {
        PyErr_Clear();
        raise_value(name, "cannot be converted to a float32 array");
    }
    if (arr.ndim() < min_ndim || arr.ndim() > max_ndim) {
        raise_value(name, "expected " + std::to_string(min_ndim) +
                              (min_ndim == max_ndim ? "" : "-" + std::to_string(max_ndim)) +
                              " dimensions, got " + std::to_string(arr.ndim()));
    }
    if (arr.size() == 0) raise_value(name, "is empty");
    return arr;
}

bool all_finite(const float* data, std::size_t n) {
    // Exponent bits all ones <=> NaN or Inf. Integer OR-reduction vectorises.
    std::uint32_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t u;
        std::memcpy(&u, data + i, sizeof u);
        bad |= static_cast<std::uint32_t>((u & 0x7f800000u) == 0x7f800000u);
    }
    return bad == 0;
}

void require_finite(const F32Array& a, const char* name) {
    bool ok;
    {
        py::gil_scoped_release release;
        ok = all_finite(a.data(), static_cast<std::size_t>(a.size()));
    }
    if (!ok) raise_value(name, "contains NaN or Inf");
}

namespace {
std::atomic<int> g_threads{1};
}

int num_threads() { return g_threads.load(std::memory_order_relaxed); }
void set_num_threads(int n) { g_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed); }

}  // namespace flowdec

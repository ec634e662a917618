// Shared helpers for the bindings: argument validation, float32 conversion, threading.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace flowdec {

namespace py = pybind11;

// A C-contiguous float32 array; any other dtype or layout is converted (a copy).
using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

// Raise ValueError("<name>: <message>").
[[noreturn]] void raise_value(const std::string& name, const std::string& message);

// Convert `obj` to a C-contiguous float32 array; raises ValueError naming `name` when it
// cannot be converted, its rank is not in [min_ndim, max_ndim], or it is empty.
F32Array as_f32(const py::handle& obj, const char* name, int min_ndim, int max_ndim);

// True when all n values are finite (no NaN/Inf). Vectorisable, one pass.
bool all_finite(const float* data, std::size_t n);

// Raise ValueError when `a` holds a NaN or Inf (the scan runs without the GIL).
void require_finite(const F32Array& a, const char* name);

// Worker threads for batch work (>= 1); set by flowdec.features.set_num_threads.
int num_threads();
void set_num_threads(int n);

// Run fn(begin, end) over [0, n) split into at most num_threads() contiguous chunks.
// Exceptions from workers are rethrown in the caller.
template <class Fn>
void parallel_for(std::size_t n, Fn&& fn);

}  // namespace flowdec

#include "parallel.hpp"

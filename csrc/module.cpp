// flowdec._core: the private compiled core. Each area registers itself from its own file.
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() = "flowdec compiled core (private; use the flowdec package API)";
    m.attr("__version__") = "0.1.0";
}

// flowdec._core: the private compiled core. Each area registers itself from its own file.
#include "common.hpp"

namespace flowdec {
void register_bitpack(py::module_& m);
void register_stft(py::module_& m);
void register_solver(py::module_& m);
void register_cuda(py::module_& m);
void register_protocol(py::module_& m);
}  // namespace flowdec

PYBIND11_MODULE(_core, m) {
    m.doc() = "flowdec compiled core (private; use the flowdec package API)";
    m.attr("__version__") = "0.1.0";
    m.def("set_num_threads", &flowdec::set_num_threads, pybind11::arg("n"),
          "Worker threads for batch work (>= 1).");
    m.def("get_num_threads", &flowdec::num_threads, "Worker threads for batch work.");
    flowdec::register_bitpack(m);
    flowdec::register_stft(m);
    flowdec::register_solver(m);
    flowdec::register_cuda(m);
    flowdec::register_protocol(m);
}

// Bindings: bit packing of codebook indices.
#include <string>

#include "bitpack.hpp"
#include "common.hpp"

namespace flowdec {

namespace {

void check_bits(int bits) {
    if (bits < 1 || bits > 16) raise_value("bits", "must be in [1, 16], got " + std::to_string(bits));
}

py::bytes py_pack(const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& codes,
                  int bits) {
    check_bits(bits);
    const std::size_t n = static_cast<std::size_t>(codes.size());
    const std::int64_t* c = codes.data();
    const std::int64_t limit = std::int64_t{1} << bits;
    std::vector<std::uint16_t> narrow(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (c[i] < 0 || c[i] >= limit) {
            raise_value("codes", "value " + std::to_string(c[i]) + " at flat index " +
                                     std::to_string(i) + " is outside [0, 2**" +
                                     std::to_string(bits) + ")");
        }
        narrow[i] = static_cast<std::uint16_t>(c[i]);
    }
    std::string out(packed_size(n, bits), '\0');
    {
        py::gil_scoped_release release;
        pack_codes(narrow.data(), n, bits, reinterpret_cast<std::uint8_t*>(out.data()));
    }
    return py::bytes(out);
}

py::array_t<std::uint16_t> py_unpack(const py::bytes& data, int bits, std::int64_t count) {
    check_bits(bits);
    if (count < 0) raise_value("count", "must be >= 0, got " + std::to_string(count));
    const std::string_view view = data;
    const std::size_t need = packed_size(static_cast<std::size_t>(count), bits);
    if (view.size() < need) {
        raise_value("data", "has " + std::to_string(view.size()) + " bytes, " +
                                std::to_string(count) + " codes of " + std::to_string(bits) +
                                " bits need " + std::to_string(need));
    }
    py::array_t<std::uint16_t> out(static_cast<py::ssize_t>(count));
    {
        py::gil_scoped_release release;
        unpack_codes(reinterpret_cast<const std::uint8_t*>(view.data()),
                     static_cast<std::size_t>(count), bits, out.mutable_data());
    }
    return out;
}

}  // namespace

void register_bitpack(py::module_& m) {
    m.def("pack_codes", &py_pack, py::arg("codes"), py::arg("bits"),
          "Pack integer codes (each in [0, 2**bits)) LSB-first into bytes.");
    m.def("unpack_codes", &py_unpack, py::arg("data"), py::arg("bits"), py::arg("count"),
          "Unpack `count` codes of `bits` bits from bytes (uint16 array).");
}

}  // namespace flowdec

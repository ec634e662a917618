#include "bitpack.hpp"

namespace flowdec {

void pack_codes(const std::uint16_t* codes, std::size_t count, int bits, std::uint8_t* out) {
    std::uint64_t acc = 0;  // pending bits, LSB first
    int pending = 0;
    std::size_t o = 0;
    for (std::size_t i = 0; i < count; ++i) {
        acc |= static_cast<std::uint64_t>(codes[i]) << pending;
        pending += bits;
        while (pending >= 8) {
            out[o++] = static_cast<std::uint8_t>(acc & 0xffu);
            acc >>= 8;
            pending -= 8;
        }
    }
    if (pending > 0) out[o++] = static_cast<std::uint8_t>(acc & 0xffu);
}

void unpack_codes(const std::uint8_t* data, std::size_t count, int bits, std::uint16_t* out) {
    const std::uint64_t mask = (std::uint64_t{1} << bits) - 1;
    std::uint64_t acc = 0;
    int have = 0;
    std::size_t in = 0;
    for (std::size_t i = 0; i < count; ++i) {
        while (have < bits) {
            acc |= static_cast<std::uint64_t>(data[in++]) << have;
            have += 8;
        }
        out[i] = static_cast<std::uint16_t>(acc & mask);
        acc >>= bits;
        have -= bits;
    }
}

}  // namespace flowdec

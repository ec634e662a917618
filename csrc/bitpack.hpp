// Bit packing of integer codes: LSB-first, codes in order, last byte zero-padded.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flowdec {

// Bytes needed for `count` codes of `bits` bits each.
inline std::size_t packed_size(std::size_t count, int bits) {
    return (count * static_cast<std::size_t>(bits) + 7) / 8;
}

// Pack `count` codes (each < 2**bits, 1 <= bits <= 16) into `out` (packed_size bytes).
void pack_codes(const std::uint16_t* codes, std::size_t count, int bits, std::uint8_t* out);

// Unpack `count` codes from `data` (at least packed_size bytes).
void unpack_codes(const std::uint8_t* data, std::size_t count, int bits, std::uint16_t* out);

}  // namespace flowdec

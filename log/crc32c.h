#pragma once
// CRC-32C (Castagnoli), the checksum of TFRecord framing (TensorBoard event files), and the
// "masked" form TFRecord stores: a CRC of data that itself holds CRCs is weak, so the stored
// value is rotated and offset (TensorFlow's crc32c::Mask).
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace fathom::logging {

// CRC-32C of `n` bytes, continuing from `crc` (0 for a fresh checksum).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
inline uint32_t crc32c(std::string_view s) { return crc32c(s.data(), s.size()); }

inline uint32_t mask_crc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
inline uint32_t unmask_crc32c(uint32_t masked) {
  uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace fathom::logging

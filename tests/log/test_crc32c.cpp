// CRC-32C against published vectors (RFC 3720 appendix B.4, and the common check value of
// "123456789"), continuation, and the TFRecord mask.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "fathom/log/crc32c.h"

using namespace fathom;

TEST_CASE("crc32c matches the RFC 3720 and check-value vectors", "[log]") {
  std::vector<unsigned char> zeros(32, 0), ones(32, 0xff), up(32), down(32);
  for (int i = 0; i < 32; ++i) up[size_t(i)] = (unsigned char)i, down[size_t(i)] = (unsigned char)(31 - i);
  CHECK(logging::crc32c(zeros.data(), 32) == 0x8A9136AAu);
  CHECK(logging::crc32c(ones.data(), 32) == 0x62A8AB43u);
  CHECK(logging::crc32c(up.data(), 32) == 0x46DD794Eu);
  CHECK(logging::crc32c(down.data(), 32) == 0x113FDB5Cu);
  CHECK(logging::crc32c("123456789") == 0xE3069283u);
  CHECK(logging::crc32c("") == 0u);
}

TEST_CASE("crc32c continues across pieces", "[log]") {
  std::string s = "The quick brown fox jumps over the lazy dog";
  for (size_t cut : {size_t(0), size_t(1), size_t(17), s.size()}) {
    uint32_t a = logging::crc32c(s.data(), cut);
    CHECK(logging::crc32c(s.data() + cut, s.size() - cut, a) == logging::crc32c(s));
  }
}

TEST_CASE("the TFRecord mask rotates and offsets, and unmasks", "[log]") {
  // TensorFlow's Mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
  CHECK(logging::mask_crc32c(0) == 0xa282ead8u);
  CHECK(logging::mask_crc32c(0xE3069283u) == uint32_t(((0xE3069283u >> 15) | (0xE3069283u << 17)) + 0xa282ead8u));
  for (uint32_t v : {0u, 1u, 0x80000000u, 0xE3069283u, 0xffffffffu}) CHECK(logging::unmask_crc32c(logging::mask_crc32c(v)) == v);
}

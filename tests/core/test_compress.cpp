#include "testing.h"

#include "fathom/core/ops/compress.h"

using namespace fathom;
using namespace fathom::testing;

TEST_CASE("2:4 compression: error-feedback invariant holds exactly, every step", "[core]") {
  Generator gen(11);
  for (DType wire : {kFloat32, kBFloat16}) {
    int64_t n = 4 * 1001;
    Tensor residual = zeros({n});
    Tensor payload = empty({n / 2}, wire);
    Tensor back = empty({n});
    for (uint64_t step = 0; step < 12; ++step) {
      Tensor g = randn({n}, kFloat32, &gen);
      auto before = to_vector(ops::binary(BinaryOp::add, g, residual));  // grad + old residual
      ops::sparse24_compress(g, residual, payload, step);
      ops::sparse24_decompress(payload, back, step);
      auto sent = to_vector(back), r = to_vector(residual);
      int64_t nonzero = 0;
      for (int64_t i = 0; i < n; ++i) {
        // Sent + new residual == grad + old residual (f32 addition of two exact parts).
        REQUIRE(float(sent[i] + r[i]) == Approx(float(before[i])).margin(1e-6));
        nonzero += sent[i] != 0;
      }
      CHECK(nonzero <= n / 2);
      // Every group keeps exactly the pattern's two positions.
      for (int64_t grp = 0; grp < 5; ++grp) {
        const uint8_t* k = kSparse24Pairs[(step + grp) % 6];
        for (int j = 0; j < 4; ++j) {
          bool kept = j == k[0] || j == k[1];
          if (!kept) CHECK(sent[4 * grp + j] == 0);
        }
      }
    }
  }
}

TEST_CASE("2:4 compression: residuals stay bounded under a constant gradient", "[core]") {
  // A constant gradient is the worst case for a mask that could freeze: any position never sent
  // would grow its residual by g every step. With the rotation every position is sent at least
  // every third step, so |residual| <= 2 |g|.
  int64_t n = 4 * 64;
  Tensor g = full({n}, 1.0), residual = zeros({n}), payload = empty({n / 2}), back = empty({n});
  double worst = 0;
  for (uint64_t step = 0; step < 600; ++step) {
    ops::sparse24_compress(g, residual, payload, step);
    for (double r : to_vector(residual)) worst = std::max(worst, std::fabs(r));
  }
  CHECK(worst <= 2.0 + 1e-6);
  CHECK_THROWS_WITH(ops::sparse24_compress(zeros({6}), zeros({6}), zeros({3}), 0),
                    Catch::Contains("multiple of 4"));
  CHECK_THROWS_WITH(ops::sparse24_compress(zeros({8}), zeros({8}), zeros({3}), 0),
                    Catch::Contains("half of the 8"));
}

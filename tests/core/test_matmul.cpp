#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {
// Naive f64 matmul of row-major [B, M, K] x [B, K, N] where either batch may be 1 (broadcast).
std::vector<double> ref_bmm(const std::vector<double>& a, const std::vector<double>& b, int64_t ba,
                            int64_t bb, int64_t m, int64_t k, int64_t n) {
  int64_t B = std::max(ba, bb);
  std::vector<double> out(B * m * n);
  for (int64_t z = 0; z < B; ++z)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p)
          s += a[(ba == 1 ? 0 : z) * m * k + i * k + p] * b[(bb == 1 ? 0 : z) * k * n + p * n + j];
        out[z * m * n + i * n + j] = s;
      }
  return out;
}
}  // namespace

TEST_CASE("matmul matches a naive f64 reference: shapes, transposes, batches, dtypes", "[core]") {
  Generator g(5);
  struct Case { int64_t ba, bb, m, k, n; };
  std::vector<Case> cases = {{1, 1, 1, 1, 1}, {1, 1, 3, 5, 7}, {1, 1, 64, 33, 17}, {4, 4, 5, 6, 7},
                             {3, 1, 8, 9, 10}, {1, 3, 8, 9, 10}, {1, 1, 0, 3, 4}, {1, 1, 3, 0, 4},
                             {2, 2, 129, 65, 31}};
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16})
    for (const auto& c : cases)
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
          Tensor a = ops::to(randn({c.ba, c.m, c.k}, kFloat64, &g), dt);
          Tensor b = ops::to(randn({c.bb, c.k, c.n}, kFloat64, &g), dt);
          // Transposed operands are passed as transposed views of transposed copies.
          Tensor ain = ta ? ops::transpose(ops::contiguous(ops::transpose(a, 1, 2)), 1, 2) : a;
          Tensor bin = tb ? ops::transpose(ops::contiguous(ops::transpose(b, 1, 2)), 1, 2) : b;
          Tensor out = ops::matmul(ain, bin);
          REQUIRE(out.shape() == Shape{std::max(c.ba, c.bb), c.m, c.n});
          auto want = ref_bmm(to_vector(a), to_vector(b), c.ba, c.bb, c.m, c.k, c.n);
          INFO(dtype_name(dt) << " B" << c.ba << "x" << c.bb << " " << c.m << "x" << c.k << "x" << c.n
                              << " ta " << ta << " tb " << tb);
          double t = dt == kFloat64 ? 1e-10 : dt == kFloat32 ? 1e-4 : dt == kFloat16 ? 1e-2 : 6e-2;
          expect_close(out, want, t, t * std::sqrt(double(c.k) + 1), "matmul");
        }
}

TEST_CASE("matmul: 1-d operands, folded batch, and errors", "[core]") {
  Tensor v = from_vector(std::vector<double>{1, 2, 3}, {3});
  Tensor m = from_vector(std::vector<double>{1, 0, 0, 1, 1, 1}, {3, 2});
  CHECK(ops::matmul(v, m).shape() == Shape{2});
  CHECK(to_vector(ops::matmul(v, m)) == std::vector<double>{4, 5});
  CHECK(ops::matmul(v, v).shape() == Shape{});
  CHECK(ops::matmul(v, v).item<double>() == 14);
  // [B, T, C] @ [C, N] runs as one GEMM over B*T rows.
  Generator g(6);
  Tensor x = randn({2, 5, 3}, kFloat64, &g);
  Tensor y = ops::matmul(x, ops::to(m, kFloat64));
  CHECK(y.shape() == Shape{2, 5, 2});
  auto want = ref_bmm(to_vector(x), to_vector(ops::to(m, kFloat64)), 1, 1, 10, 3, 2);
  CHECK_THROWS_WITH(ops::matmul(zeros({4, 8}), zeros({16, 2})),
                    Catch::Contains("inner dimensions 8 and 16 differ"));
  CHECK_THROWS_WITH(ops::matmul(zeros({4, 8}), zeros({8, 2}, kFloat64)),
                    Catch::Contains("one floating-point dtype"));
  CHECK_THROWS_WITH(ops::matmul(zeros({2, 4, 8}), zeros({3, 8, 2})), Catch::Contains("broadcast"));
  expect_close(ops::matmul(ops::to(x, kFloat64), ops::to(m, kFloat64)), want, 1e-12, 1e-12);
}

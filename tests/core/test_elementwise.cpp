#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

double ref_unary(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return std::exp(x);
    case UnaryOp::log: return std::log(x);
    case UnaryOp::tanh: return std::tanh(x);
    case UnaryOp::relu: return x > 0 ? x : 0;
    case UnaryOp::gelu: return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case UnaryOp::sigmoid: return 1 / (1 + std::exp(-x));
    case UnaryOp::sqrt: return std::sqrt(x);
    case UnaryOp::rsqrt: return 1 / std::sqrt(x);
    case UnaryOp::abs: return std::fabs(x);
    case UnaryOp::square: return x * x;
    case UnaryOp::sin: return std::sin(x);
    case UnaryOp::cos: return std::cos(x);
    case UnaryOp::log1p: return std::log1p(x);
    case UnaryOp::expm1: return std::expm1(x);
    case UnaryOp::sign: return double((x > 0) - (x < 0));
    case UnaryOp::erf: return std::erf(x);
  }
  return 0;
}

double ref_binary(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
    case BinaryOp::maximum: return std::max(a, b);
    case BinaryOp::minimum: return std::min(a, b);
    case BinaryOp::pow: return std::pow(a, b);
    case BinaryOp::eq: return a == b;
    case BinaryOp::ne: return a != b;
    case BinaryOp::lt: return a < b;
    case BinaryOp::le: return a <= b;
    case BinaryOp::gt: return a > b;
    case BinaryOp::ge: return a >= b;
  }
  return 0;
}

const std::vector<Shape> kShapes = {{}, {0}, {1}, {7}, {3, 5}, {2, 3, 33}, {4, 1, 9}, {70000}};

}  // namespace

TEST_CASE("unary ops match an f64 reference in every float dtype and layout", "[core]") {
  Generator g(1);
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16})
    for (const Shape& s : kShapes)
      for (int layout = 0; layout < 2; ++layout)
        for (int o = 0; o < kNumUnaryOps; ++o) {
          auto op = UnaryOp(o);
          bool positive = op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::rsqrt ||
                          op == UnaryOp::log1p;
          Tensor x = ops::to(positive ? uniform(s, 0.1, 3, kFloat64, &g) : randn(s, kFloat64, &g), dt);
          Tensor xin = layout ? noncontiguous(x) : x;
          std::vector<double> want;
          for (double v : to_vector(x)) want.push_back(ref_unary(op, v));
          INFO(op_name(op) << " " << x.desc() << " layout " << layout);
          expect_close(ops::unary(op, xin), want, tol(dt) * 4, tol(dt), op_name(op));
        }
  CHECK_THROWS_WITH(ops::unary(UnaryOp::exp, zeros({2}, kInt64)), Catch::Contains("exp: expected a floating-point"));
}

TEST_CASE("f32 GELU and its gradient (four-lane kernels) match f64 across the range", "[core]") {
  const double k = 0.7978845608028654, c = 0.044715;
  std::vector<double> xs;
  for (double v = -30; v <= 30; v += 0.01) xs.push_back(v);
  for (double v : {0.0, -0.0, 1e-30, -1e-30, 87.0, -87.0, 1e6, -1e6}) xs.push_back(v);
  Tensor x64 = from_vector(xs, {int64_t(xs.size())}), x = ops::to(x64, kFloat32);
  Generator gen(3);
  Tensor gy = uniform({int64_t(xs.size())}, -2, 2, kFloat32, &gen);
  std::vector<double> want_y, want_g;
  auto gv = to_vector(gy), xv = to_vector(x);
  for (size_t i = 0; i < xv.size(); ++i) {
    double v = xv[i], th = std::tanh(k * (v + c * v * v * v));
    want_y.push_back(0.5 * v * (1 + th));
    want_g.push_back(gv[i] * (0.5 * (1 + th) + 0.5 * v * (1 - th * th) * k * (1 + 3 * c * v * v)));
  }
  for (bool strided : {false, true}) {
    Tensor xin = strided ? noncontiguous(x) : x, gin = strided ? noncontiguous(gy) : gy;
    INFO("strided " << strided);
    expect_close(ops::unary(UnaryOp::gelu, xin), want_y, 4e-6, 1e-6, "gelu");
    expect_close(ops::unary_backward(UnaryOp::gelu, gin, xin, Tensor()), want_g, 4e-6, 1e-6, "gelu grad");
  }
  Tensor nan = full({5}, std::nan(""), kFloat32);
  for (double v : to_vector(ops::unary(UnaryOp::gelu, nan))) CHECK(std::isnan(v));
}

TEST_CASE("unary backward matches finite differences of the forward", "[core]") {
  Generator g(2);
  for (int o = 0; o < kNumUnaryOps; ++o) {
    auto op = UnaryOp(o);
    bool positive = op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::rsqrt ||
                    op == UnaryOp::log1p;
    Tensor x = positive ? uniform({3, 7}, 0.5, 3, kFloat64, &g) : randn({3, 7}, kFloat64, &g);
    if (op == UnaryOp::relu || op == UnaryOp::abs || op == UnaryOp::sign)  // away from the kink
      x = ops::where(ops::binary(BinaryOp::lt, ops::unary(UnaryOp::abs, x), 0.1), full({}, 0.5, kFloat64), x);
    Tensor gy = randn({3, 7}, kFloat64, &g);
    Tensor y = ops::unary(op, x);
    Tensor gx = ops::unary_backward(op, noncontiguous(gy), x, y);
    auto xv = to_vector(x), gv = to_vector(gy);
    std::vector<double> want;
    for (size_t i = 0; i < xv.size(); ++i) {
      double h = 1e-6;
      want.push_back(gv[i] * (ref_unary(op, xv[i] + h) - ref_unary(op, xv[i] - h)) / (2 * h));
    }
    INFO(op_name(op));
    expect_close(gx, want, 1e-6, 1e-7, op_name(op));
  }
}

TEST_CASE("sign, log1p and expm1 at the edges", "[core]") {
  Tensor x = from_vector(std::vector<double>{-2, -0.0, 0, 3, std::nan("")}, {5});
  CHECK(to_vector(ops::unary(UnaryOp::sign, x)) == std::vector<double>{-1, 0, 0, 1, 0});
  // Near 0 the fused forms keep digits that log(1 + x) and exp(x) - 1 lose in f32.
  Tensor tiny = from_vector(std::vector<double>{1e-7, -1e-7}, {2}, kFloat32);
  expect_close(ops::unary(UnaryOp::log1p, tiny), {std::log1p(1e-7), std::log1p(-1e-7)}, 1e-6, 0);
  expect_close(ops::unary(UnaryOp::expm1, tiny), {std::expm1(1e-7), std::expm1(-1e-7)}, 1e-6, 0);
  CHECK(to_vector(ops::unary_backward(UnaryOp::sign, ones({5}), x, Tensor())) ==
        std::vector<double>(5, 0.0));
}

// Values from the series erf(x) = 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1)) summed in 50-digit
// decimal arithmetic, not from std::erf, which the CPU kernel calls; the gradient against the
// closed form 2/sqrt(pi) exp(-x^2).
TEST_CASE("erf at known values and its gradient's closed form", "[core]") {
  const std::vector<double> xs = {0, 0.5, 1, 2, -1, 3.5, INFINITY, -INFINITY, std::nan("")};
  const std::vector<double> want = {0, 0.5204998778130465, 0.8427007929497149, 0.9953222650189527,
                                    -0.8427007929497149, 0.9999992569016276, 1, -1, std::nan("")};
  for (DType dt : {kFloat64, kFloat32, kBFloat16, kFloat16}) {
    INFO(dtype_name(dt));
    Tensor x = ops::to(from_vector(xs, {int64_t(xs.size())}, kFloat64), dt);
    expect_close(ops::unary(UnaryOp::erf, x), want, tol(dt), tol(dt) * 1e-3, "erf");
  }
  Tensor x = from_vector(std::vector<double>{-2, -0.5, 0, 0.5, 1, 3}, {6}, kFloat64);
  std::vector<double> want_g;
  for (double v : to_vector(x)) want_g.push_back(3 * 2 / std::sqrt(std::acos(-1.0)) * std::exp(-v * v));
  expect_close(ops::unary_backward(UnaryOp::erf, full({6}, 3.0, kFloat64), x, Tensor()), want_g,
               1e-15, 0, "erf backward");
}

TEST_CASE("clamp matches std::clamp in every dtype and layout; NaN and bounds", "[core]") {
  Generator g(5);
  struct Bounds { std::optional<double> lo, hi; };
  const std::vector<Bounds> bounds = {{-0.5, 0.7}, {0.2, std::nullopt}, {std::nullopt, -0.1},
                                      {1.0, -1.0}};  // lo > hi: hi everywhere, as PyTorch
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16})
    for (const Shape& s : kShapes)
      for (int layout = 0; layout < 2; ++layout)
        for (const Bounds& b : bounds) {
          Tensor x = ops::to(randn(s, kFloat64, &g), dt);
          Tensor xin = layout ? noncontiguous(x) : x;
          std::vector<double> want, want_g;
          // Bounds as the kernel sees them: rounded to the compute type (f32 for half types).
          auto bound = [&](double v) { return dt == kFloat64 ? v : double(float(v)); };
          double lo = b.lo ? bound(*b.lo) : -INFINITY, hi = b.hi ? bound(*b.hi) : INFINITY;
          for (double v : to_vector(x)) {
            want.push_back(std::min(std::max(v, lo), hi));
            want_g.push_back(v >= lo && v <= hi ? 1.0 : 0.0);
          }
          INFO(x.desc() << " layout " << layout);
          // The clamped value is one of x or a bound, rounded once to dt.
          expect_close(ops::clamp(xin, b.lo, b.hi), want, tol(dt), 0, "clamp");
          Tensor gy = layout ? noncontiguous(ones(s, dt)) : ones(s, dt);
          expect_close(ops::clamp_backward(gy, xin, b.lo, b.hi), want_g, 0, 0, "clamp_backward");
        }
  Tensor nan = from_vector(std::vector<double>{std::nan(""), 5, -5}, {3});
  auto c = to_vector(ops::clamp(nan, -1, 1));
  CHECK((std::isnan(c[0]) && c[1] == 1 && c[2] == -1));
  CHECK(to_vector(ops::clamp_backward(ones({3}), nan, -1, 1)) == std::vector<double>{0, 0, 0});
  // Integers clamp exactly, also at the ends of their range.
  Tensor i = from_vector(std::vector<int64_t>{-7, 0, 9, INT64_MAX}, {4});
  CHECK(to_vector(ops::clamp(i, -3, 5)) == std::vector<double>{-3, 0, 5, 5});
  CHECK(ops::clamp(i, -3, std::nullopt).data<int64_t>()[3] == INT64_MAX);
  Tensor u = from_vector(std::vector<double>{0, 200, 255}, {3}, kUInt8);
  CHECK(to_vector(ops::clamp(u, -10, 1e9)) == std::vector<double>{0, 200, 255});
  CHECK_THROWS_WITH(ops::clamp(i, 0.5, 2), Catch::Contains("clamp: bound 0.5 is not an integer"));
  CHECK_THROWS_WITH(ops::clamp(zeros({2}), std::nullopt, std::nullopt),
                    Catch::Contains("clamp: at least one of min and max"));
  CHECK_THROWS_WITH(ops::clamp(zeros({2}, kBool), 0, 1), Catch::Contains("clamp: not supported on bool"));
}

TEST_CASE("binary ops broadcast like numpy against an f64 reference", "[core]") {
  Generator g(3);
  struct Case { Shape a, b; };
  std::vector<Case> cases = {{{}, {}}, {{5}, {}}, {{3, 1}, {1, 4}}, {{2, 3, 4}, {4}},
                             {{2, 1, 4}, {3, 1}}, {{0, 4}, {4}}, {{1}, {7, 1}}, {{100, 700}, {700}}};
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16, kInt64})
    for (const auto& c : cases)
      for (int layout = 0; layout < 2; ++layout)
        for (int o = 0; o < kNumBinaryOps; ++o) {
          auto op = BinaryOp(o);
          bool is_int = dt == kInt64;
          if (is_int && op == BinaryOp::pow) continue;
          Tensor a = ops::to(is_int ? ops::to(uniform(c.a, -5, 5, kFloat64, &g), kInt64)
                                    : uniform(c.a, 0.5, 2, kFloat64, &g), dt);
          Tensor b = ops::to(is_int ? ops::to(uniform(c.b, 1, 5, kFloat64, &g), kInt64)
                                    : uniform(c.b, 0.5, 2, kFloat64, &g), dt);
          Tensor out = ops::binary(op, layout ? noncontiguous(a) : a, layout ? noncontiguous(b) : b);
          Shape s = ops::broadcast_shapes(c.a, c.b, "test");
          REQUIRE(out.shape() == s);
          auto av = to_vector(a), bv = to_vector(b);
          std::vector<double> want(numel_of(s));
          for (int64_t i = 0; i < numel_of(s); ++i) {
            auto idx = unravel(i, s);
            want[i] = ref_binary(op, av[broadcast_index(idx, c.a)], bv[broadcast_index(idx, c.b)]);
          }
          INFO(op_name(op) << " " << a.desc() << " " << b.desc() << " layout " << layout);
          if (is_comparison(op)) CHECK(out.dtype() == kBool);
          if (op == BinaryOp::div && is_int) CHECK(out.dtype() == kFloat32);
          double rt = is_int ? (op == BinaryOp::div ? 1e-6 : 0) : tol(dt) * 4;
          expect_close(out, want, rt, 0, op_name(op));
        }
}

// A scalar on the left of an op with a swapped form (the table's `swapped` column) is computed
// as the swapped op with the scalar on the right; either way the values are the reference's.
TEST_CASE("every binary op with a scalar on either side matches the f64 reference", "[core]") {
  const std::vector<double> xs = {-3, -1, 0, 1, 1.5, 2, 4};
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kInt64})
    for (double s : {1.5, 2.0, -1.0})
      for (int o = 0; o < kNumBinaryOps; ++o) {
        auto op = BinaryOp(o);
        bool is_int = dt == kInt64;
        if (is_int && (op == BinaryOp::pow || s != std::trunc(s))) continue;
        Tensor x = ops::to(from_vector(xs, {int64_t(xs.size())}), dt);
        std::vector<double> right, left;
        for (double v : to_vector(x)) {
          right.push_back(ref_binary(op, v, s));
          left.push_back(ref_binary(op, s, v));
        }
        INFO(op_name(op) << " " << x.desc() << " scalar " << s);
        double rt = is_int ? (op == BinaryOp::div ? 1e-6 : 0) : tol(dt) * 4;
        expect_close(ops::binary(op, x, s), right, rt, 0, "tensor op scalar");
        expect_close(ops::binary(op, s, noncontiguous(x)), left, rt, 0, "scalar op tensor");
        if (is_comparison(op)) CHECK(ops::binary(op, s, x).dtype() == kBool);
      }
}

TEST_CASE("scalars, in-place ops, where, masked_fill", "[core]") {
  Tensor a = from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2});
  CHECK(to_vector(ops::binary(BinaryOp::sub, 10.0, a)) == std::vector<double>{9, 8, 7, 6});
  CHECK(to_vector(ops::binary(BinaryOp::div, a, 2.0)) == std::vector<double>{0.5, 1, 1.5, 2});
  CHECK(to_vector(ops::binary(BinaryOp::gt, a, 2.5)) == std::vector<double>{0, 0, 1, 1});
  Tensor i = from_vector(std::vector<int64_t>{1, 2, 3}, {3});
  CHECK(ops::binary(BinaryOp::mul, i, 2.0).dtype() == kInt64);
  CHECK(ops::binary(BinaryOp::mul, i, 0.5).dtype() == kFloat32);

  Tensor acc = zeros({2, 2});
  ops::add_(acc, a);
  ops::add_(acc, from_vector(std::vector<double>{1, 1}, {2}), -2.0);  // broadcast, alpha
  CHECK(to_vector(acc) == std::vector<double>{-1, 0, 1, 2});
  ops::mul_(acc, 3);
  CHECK(to_vector(acc) == std::vector<double>{-3, 0, 3, 6});
  Tensor t = ops::transpose(a, 0, 1);  // in place through a non-contiguous view
  ops::add_(t, from_vector(std::vector<double>{10, 20}, {2}));
  CHECK(to_vector(a) == std::vector<double>{11, 12, 23, 24});

  Tensor mask = ops::binary(BinaryOp::gt, a, 20.0);
  CHECK(to_vector(ops::masked_fill(a, mask, -1)) == std::vector<double>{11, 12, -1, -1});
  CHECK(to_vector(ops::where(mask, zeros({1}), a)) == std::vector<double>{11, 12, 0, 0});
  CHECK_THROWS_WITH(ops::where(a, a, a), Catch::Contains("where: condition must be bool"));
}

TEST_CASE("elementwise errors name op and shapes", "[core]") {
  CHECK_THROWS_WITH(ops::binary(BinaryOp::add, zeros({2, 3}), zeros({4})),
                    Catch::Contains("add: shapes [2, 3] and [4] do not broadcast"));
  CHECK_THROWS_WITH(ops::add_(zeros({3}), zeros({2, 3})), Catch::Contains("broadcast shape"));
  CHECK_THROWS_WITH(ops::binary(BinaryOp::add, zeros({2}, kBool), zeros({2}, kBool)),
                    Catch::Contains("arithmetic on bool"));
  // unary_backward needs the saved tensor the table's `reads` names, of the grad's shape.
  CHECK_THROWS_WITH(ops::unary_backward(UnaryOp::exp, ones({3}), ones({3}), Tensor()),
                    Catch::Contains("exp_backward: needs the forward's y"));
  CHECK_THROWS_WITH(ops::unary_backward(UnaryOp::log, ones({3}), ones({4}), Tensor()),
                    Catch::Contains("log_backward: grad [3] f32 cpu does not match x [4]"));
}

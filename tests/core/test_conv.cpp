// The CPU convolution, pooling and batch-norm kernels (oneDNN in f32 and bf16, the direct f64
// loops) against the plain-loop f64 references of conv_reference.h, on odd sizes and every
// stride / padding / dilation / groups combination listed; bad inputs; run-to-run determinism.
#include "conv_reference.h"
#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

Tensor vals(const Shape& s, uint64_t seed, DType dt = kFloat32) {
  Generator g(seed);
  return ops::to(uniform(s, -1, 1, kFloat64, &g), dt);
}

// The reference rounded through dt's inputs: a bf16 run is judged on what it was given.
ref::Vec as_f64(const Tensor& t) { return to_vector(t); }

double max_abs(const ref::Vec& v) {
  double m = 0;
  for (double e : v) m = std::max(m, std::fabs(e));
  return m;
}

// f32 sums of up to a few hundred products of values in [-1, 1]: 1e-5 of the largest value
// covers the rounding; bf16 output rounding is 2^-8 relative, the inputs are exact bf16.
void close(const Tensor& got, const ref::Vec& want, DType dt, const std::string& what) {
  double a = (dt == kBFloat16 ? 1e-2 : 2e-5) * std::max(1.0, max_abs(want));
  expect_close(got, want, dt == kBFloat16 ? 1e-2 : 1e-5, a, what);
}

struct ConvCase {
  int64_t N, C, H, W, O, kH, kW;
  ConvParams p;
  bool bias;
};

const ConvCase kConvCases[] = {
    {2, 3, 7, 5, 4, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, true},
    {1, 4, 9, 8, 6, 3, 2, {{2, 3}, {1, 0}, {1, 1}, 2}, true},
    {3, 2, 11, 7, 3, 3, 3, {{1, 2}, {2, 1}, {2, 3}, 1}, false},
    {2, 6, 6, 7, 6, 3, 3, {{2, 2}, {1, 1}, {1, 1}, 6}, true},   // depthwise
    {2, 4, 5, 5, 8, 1, 1, {{1, 1}, {0, 0}, {1, 1}, 4}, false},  // grouped 1x1
    {1, 3, 4, 4, 5, 4, 4, {{1, 1}, {0, 0}, {1, 1}, 1}, true},   // kernel = input
    {2, 16, 14, 14, 32, 3, 3, {{2, 2}, {1, 1}, {1, 1}, 1}, true},
};

}  // namespace

TEST_CASE("conv2d forward and backward match the f64 loop reference", "[conv]") {
  for (DType dt : {kFloat32, kBFloat16, kFloat64}) {
    int k = 0;
    for (const ConvCase& c : kConvCases) {
      std::string what = std::string(dtype_name(dt)) + " case " + std::to_string(k++);
      Tensor x = vals({c.N, c.C, c.H, c.W}, 1, dt);
      Tensor w = vals({c.O, c.C / c.p.groups, c.kH, c.kW}, 2, dt);
      Tensor b = c.bias ? vals({c.O}, 3, dt) : Tensor();
      ref::Conv r{c.N, c.C, c.H, c.W, c.O, c.kH, c.kW, c.p};
      Tensor y = ops::conv2d(x, w, b, c.p);
      REQUIRE(y.shape() == Shape{c.N, c.O, r.oH(), r.oW()});
      close(y, r.forward(as_f64(x), as_f64(w), c.bias ? as_f64(b) : ref::Vec{}), dt, what + " y");

      Tensor gy = vals(y.shape(), 4, dt);
      auto [gx, gw, gb] = ops::conv2d_backward(gy, x, w, c.p, true, true, c.bias);
      ref::Vec rgx, rgw, rgb;
      r.backward(as_f64(gy), as_f64(x), as_f64(w), rgx, rgw, rgb);
      close(gx, rgx, dt, what + " grad_x");
      close(gw, rgw, dt, what + " grad_weight");
      if (c.bias) close(gb, rgb, dt, what + " grad_bias");
      else CHECK(!gb.defined());
    }
  }
}

TEST_CASE("conv2d takes non-contiguous inputs", "[conv]") {
  Tensor x = vals({2, 3, 6, 5}, 5), w = vals({4, 3, 3, 3}, 6), b = vals({4}, 7);
  ConvParams p{{1, 2}, {1, 1}, {1, 1}, 1};
  Tensor y = ops::conv2d(x, w, b, p);
  Tensor yn = ops::conv2d(noncontiguous(x), noncontiguous(w), noncontiguous(b), p);
  expect_close(yn, y, 0, 0, "non-contiguous conv2d");
  // A transposed view (NHWC storage seen as NCHW) too.
  Tensor xt = ops::permute(ops::contiguous(ops::permute(x, {0, 2, 3, 1})), {0, 3, 1, 2});
  REQUIRE(!xt.is_contiguous());
  expect_close(ops::conv2d(xt, w, b, p), y, 0, 0, "channels-last view");
}

TEST_CASE("conv2d gives the same bits run to run", "[conv]") {
  Tensor x = vals({4, 8, 13, 13}, 8), w = vals({16, 8, 3, 3}, 9);
  ConvParams p{{1, 1}, {1, 1}, {1, 1}, 1};
  Tensor gy = vals({4, 16, 13, 13}, 10);
  auto [gx1, gw1, gb1] = ops::conv2d_backward(gy, x, w, p, true, true, true);
  auto [gx2, gw2, gb2] = ops::conv2d_backward(gy, x, w, p, true, true, true);
  expect_close(gw2, gw1, 0, 0, "grad_weight");
  expect_close(gb2, gb1, 0, 0, "grad_bias");
  expect_close(gx2, gx1, 0, 0, "grad_x");
}

TEST_CASE("conv2d rejects bad inputs naming the op and shapes", "[conv]") {
  Tensor x = vals({2, 4, 5, 5}, 1), w = vals({6, 4, 3, 3}, 2);
  ConvParams p;
  CHECK_THROWS_WITH(ops::conv2d(vals({4, 5, 5}, 1), w, Tensor(), p),
                    Catch::Contains("conv2d") && Catch::Contains("[4, 5, 5]"));
  ConvParams g3{{1, 1}, {0, 0}, {1, 1}, 3};
  CHECK_THROWS_WITH(ops::conv2d(x, vals({6, 1, 3, 3}, 2), Tensor(), g3),
                    Catch::Contains("groups 3"));
  CHECK_THROWS_WITH(ops::conv2d(x, vals({6, 3, 3, 3}, 2), Tensor(), p),
                    Catch::Contains("input channels"));
  CHECK_THROWS_WITH(ops::conv2d(x, vals({6, 4, 7, 3}, 2), Tensor(), p),
                    Catch::Contains("padded input"));
  CHECK_THROWS_WITH(ops::conv2d(x, ops::to(w, kFloat64), Tensor(), p),
                    Catch::Contains("weight") && Catch::Contains("f64"));
  CHECK_THROWS_WITH(ops::conv2d(x, w, vals({5}, 3), p), Catch::Contains("bias"));
  CHECK_THROWS_WITH(ops::conv2d(x, w, Tensor(), ConvParams{{0, 1}, {0, 0}, {1, 1}, 1}),
                    Catch::Contains("stride"));
  CHECK_THROWS_WITH(ops::pool2d(x, {PoolKind::max, {2, 2}, {2, 2}, {2, 0}}),
                    Catch::Contains("max_pool2d") && Catch::Contains("half the kernel"));
  CHECK_THROWS_WITH(ops::pool2d(x, {PoolKind::max, {7, 2}, {1, 1}, {0, 0}}),
                    Catch::Contains("padded input"));
}

TEST_CASE("pooling matches the f64 loop reference", "[conv]") {
  struct Case {
    Shape x;
    PoolParams p;
  } cases[] = {
      {{2, 3, 7, 6}, {PoolKind::max, {2, 2}, {2, 2}, {0, 0}}},
      {{1, 2, 9, 8}, {PoolKind::max, {3, 3}, {2, 1}, {1, 1}}},
      {{2, 2, 7, 7}, {PoolKind::avg_include_pad, {3, 2}, {2, 2}, {1, 1}}},
      {{2, 2, 7, 7}, {PoolKind::avg_exclude_pad, {3, 3}, {2, 3}, {1, 1}}},
      {{1, 3, 5, 5}, {PoolKind::avg_include_pad, {5, 5}, {1, 1}, {0, 0}}},
  };
  for (DType dt : {kFloat32, kBFloat16, kFloat64}) {
    for (const Case& c : cases) {
      std::string what = std::string(dtype_name(dt)) + " " + shape_str(c.x) + " kind " +
                         std::to_string(int(c.p.kind));
      Tensor x = vals(c.x, 11, dt);
      ref::Pool r{c.x[0] * c.x[1], c.x[2], c.x[3], c.p};
      auto [y, ws] = ops::pool2d(x, c.p);
      REQUIRE(y.shape() == Shape{c.x[0], c.x[1], r.oH(), r.oW()});
      close(y, r.forward(as_f64(x)), dt, what + " y");
      Tensor gy = vals(y.shape(), 12, dt);
      close(ops::pool2d_backward(gy, x, y, ws, c.p), r.backward(as_f64(gy), as_f64(x)), dt,
            what + " grad_x");
    }
  }
}

TEST_CASE("batch_norm matches the f64 reference; f32 backward matches f64", "[conv]") {
  for (Shape s : {Shape{4, 3, 5, 7}, Shape{2, 5, 3}, Shape{7, 4}}) {
    int64_t N = s[0], C = s[1], S = numel_of(s) / (N * C);
    Tensor x64 = ops::binary(BinaryOp::add, vals(s, 21, kFloat64), 3.0);  // |mean| > std
    Tensor w64 = vals({C}, 22, kFloat64), b64 = vals({C}, 23, kFloat64);
    ref::BatchNorm r{N, C, S, 1e-5};
    ref::Vec ry, rm, rv;
    r.forward(to_vector(x64), to_vector(w64), to_vector(b64), ry, rm, rv);
    Tensor gy64 = vals(s, 24, kFloat64);
    auto [gx64, gw64, gb64] = [&] {
      auto [y, st] = ops::batch_norm(x64, w64, b64, 1e-5);
      expect_close(y, ry, 1e-10, 1e-10, "f64 y");
      expect_close(st.mean, rm, 1e-12, 1e-12, "f64 mean");
      expect_close(st.var, rv, 1e-10, 1e-12, "f64 var");
      return ops::batch_norm_backward(gy64, x64, w64, st, 1e-5, true);
    }();
    for (DType dt : {kFloat32, kBFloat16}) {
      std::string what = std::string(dtype_name(dt)) + " " + shape_str(s);
      Tensor x = ops::to(x64, dt);
      auto [y, st] = ops::batch_norm(x, ops::to(w64, dt), ops::to(b64, dt), 1e-5);
      double t = dt == kBFloat16 ? 3e-2 : 1e-4;
      expect_close(y, ry, t, t, what + " y");
      expect_close(st.mean, rm, t, t, what + " mean");
      expect_close(st.var, rv, t, t, what + " var");
      auto [gx, gw, gb] = ops::batch_norm_backward(ops::to(gy64, dt), x, ops::to(w64, dt), st,
                                                   1e-5, true);
      expect_close(gx, gx64, t, t * 4, what + " grad_x");
      expect_close(gw, gw64, t, t * 4, what + " grad_weight");
      expect_close(gb, gb64, t, t, what + " grad_bias");
    }
  }
  CHECK_THROWS_WITH(ops::batch_norm(vals({1, 3}, 1), Tensor(), Tensor(), 1e-5),
                    Catch::Contains("more than 1 value per channel"));
  CHECK_THROWS_WITH(ops::batch_norm(vals({2, 3}, 1), vals({4}, 2), Tensor(), 1e-5),
                    Catch::Contains("batch_norm") && Catch::Contains("weight"));
}

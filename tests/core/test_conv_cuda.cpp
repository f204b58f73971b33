// The CUDA (cuDNN) convolution, pooling and batch-norm kernels against the CPU (oneDNN) ones,
// forward and backward, f32 and bf16 (channels-last in cuDNN). [cuda]: skipped without a GPU.
#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

const Device kGpu = Device::cuda(0);
Tensor gpu(const Tensor& t) { return t.defined() ? ops::to(t, kGpu) : t; }

Tensor vals(const Shape& s, uint64_t seed, DType dt) {
  Generator g(seed);
  return ops::to(uniform(s, -1, 1, kFloat64, &g), dt);
}

// f32: both sides sum the same products in different orders; bf16: one bf16 rounding of the
// output on each side, so two ulps of bf16 relative to the largest value.
void same(const Tensor& got_gpu, const Tensor& want_cpu, const std::string& what) {
  REQUIRE(got_gpu.device() == kGpu);
  double big = ops::amax(ops::unary(UnaryOp::abs, ops::to(want_cpu, kFloat64))).item<double>();
  double t = want_cpu.dtype() == kBFloat16 ? 1.6e-2 : 1e-5;
  expect_close(ops::to(got_gpu, Device::cpu()), want_cpu, t, t * std::max(big, 1.0), what);
}

}  // namespace

TEST_CASE("cuDNN conv2d matches the CPU, forward and backward", "[cuda][conv]") {
  struct Case {
    Shape x, w;
    ConvParams p;
  } cases[] = {
      {{2, 3, 9, 7}, {8, 3, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}},
      {{2, 8, 14, 14}, {16, 4, 3, 3}, {{2, 2}, {1, 1}, {1, 1}, 2}},
      {{1, 6, 11, 10}, {6, 1, 3, 3}, {{1, 2}, {2, 1}, {2, 1}, 6}},  // depthwise, dilated
      {{4, 64, 14, 14}, {128, 64, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}},
  };
  for (DType dt : {kFloat32, kBFloat16}) {
    for (const Case& c : cases) {
      std::string what = std::string(dtype_name(dt)) + " " + shape_str(c.x) + " * " + shape_str(c.w);
      Tensor x = vals(c.x, 1, dt), w = vals(c.w, 2, dt), b = vals({c.w[0]}, 3, dt);
      Tensor y = ops::conv2d(x, w, b, c.p);
      same(ops::conv2d(gpu(x), gpu(w), gpu(b), c.p), y, what + " y");
      Tensor gy = vals(y.shape(), 4, dt);
      auto [gx, gw, gb] = ops::conv2d_backward(gy, x, w, c.p, true, true, true);
      auto [hx, hw, hb] = ops::conv2d_backward(gpu(gy), gpu(x), gpu(w), c.p, true, true, true);
      same(hx, gx, what + " grad_x");
      same(hw, gw, what + " grad_weight");
      same(hb, gb, what + " grad_bias");
    }
  }
}

TEST_CASE("cuDNN pooling matches the CPU, forward and backward", "[cuda][conv]") {
  for (DType dt : {kFloat32, kBFloat16}) {
    for (PoolParams p : {PoolParams{PoolKind::max, {3, 3}, {2, 2}, {1, 1}},
                         PoolParams{PoolKind::avg_include_pad, {3, 2}, {2, 1}, {1, 1}},
                         PoolParams{PoolKind::avg_exclude_pad, {2, 2}, {2, 2}, {1, 0}}}) {
      std::string what = std::string(dtype_name(dt)) + " kind " + std::to_string(int(p.kind));
      Tensor x = vals({2, 3, 9, 8}, 5, dt);
      auto [y, ws] = ops::pool2d(x, p);
      auto [hy, hws] = ops::pool2d(gpu(x), p);
      same(hy, y, what + " y");
      Tensor gy = vals(y.shape(), 6, dt);
      same(ops::pool2d_backward(gpu(gy), gpu(x), hy, hws, p), ops::pool2d_backward(gy, x, y, ws, p),
           what + " grad_x");
    }
  }
}

TEST_CASE("cuDNN batch norm matches the CPU, forward and backward", "[cuda][conv]") {
  for (DType dt : {kFloat32, kBFloat16}) {
    Tensor x = vals({4, 6, 5, 7}, 7, dt), w = vals({6}, 8, kFloat32), b = vals({6}, 9, kFloat32);
    auto [y, st] = ops::batch_norm(x, w, b, 1e-5);
    auto [hy, hst] = ops::batch_norm(gpu(x), gpu(w), gpu(b), 1e-5);
    std::string what = dtype_name(dt);
    same(hy, y, what + " y");
    same(hst.mean, st.mean, what + " mean");
    same(hst.var, st.var, what + " var");
    same(hst.invstd, st.invstd, what + " invstd");
    Tensor gy = vals(x.shape(), 10, dt);
    auto [gx, gw, gb] = ops::batch_norm_backward(gy, x, w, st, 1e-5, true);
    auto [hx, hw, hb] = ops::batch_norm_backward(gpu(gy), gpu(x), gpu(w), hst, 1e-5, true);
    same(hx, gx, what + " grad_x");
    same(hw, gw, what + " grad_weight");
    same(hb, gb, what + " grad_bias");
  }
}

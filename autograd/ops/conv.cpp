// Differentiable convolution, pooling, batch norm and flatten over the kernels of
// core/ops/conv.h (docs/conv.md).
#include "fathom/autograd/grad_mode.h"
#include "fathom/autograd/ops/common.h"
#include "fathom/core/ops/conv.h"

namespace fathom {

using autograd::Grads;
using autograd::needs_grad;
using autograd::record;
using autograd::saved;

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Pair stride,
              Pair padding, Pair dilation, int64_t groups) {
  ConvParams p{stride, padding, dilation, groups};
  Tensor y = ops::conv2d(x, weight, bias, p);
  if (!needs_grad({x, weight, bias})) return y;
  // Only the gradients some input wants are computed: the first layer's grad_x is skipped.
  bool gx = needs_grad({x}), gw = needs_grad({weight}), gb = needs_grad({bias});
  return record("conv2d", {x, weight, bias}, y,
                [x = saved(x), w = saved(weight), p, gx, gw, gb](const Grads& g) -> Grads {
                  auto [dx, dw, db] = ops::conv2d_backward(g[0], x, w, p, gx, gw, gb);
                  return {dx, dw, db};
                });
}

namespace {

Pair stride_or_kernel(Pair stride, Pair kernel) {
  return {stride[0] ? stride[0] : kernel[0], stride[1] ? stride[1] : kernel[1]};
}

Tensor pool(const char* name, const Tensor& x, const PoolParams& p) {
  auto [y, ws] = ops::pool2d(x, p);
  if (!needs_grad({x})) return y;
  return record(name, {x}, y, [x = saved(x), y = saved(y), ws, p](const Grads& g) -> Grads {
    return {ops::pool2d_backward(g[0], x, y, ws, p)};
  });
}

}  // namespace

Tensor max_pool2d(const Tensor& x, Pair kernel, Pair stride, Pair padding) {
  return pool("max_pool2d", x, {PoolKind::max, kernel, stride_or_kernel(stride, kernel), padding});
}

Tensor avg_pool2d(const Tensor& x, Pair kernel, Pair stride, Pair padding,
                  bool count_include_pad) {
  PoolKind k = count_include_pad ? PoolKind::avg_include_pad : PoolKind::avg_exclude_pad;
  return pool("avg_pool2d", x, {k, kernel, stride_or_kernel(stride, kernel), padding});
}

// PyTorch's cells: output i of n over an input of m covers [floor(i*m/n), ceil((i+1)*m/n)).
// When n divides m they are a plain average pool; otherwise the cells overlap or differ in
// size, and each dim (the average over a rectangle is separable) is built from slices.
Tensor adaptive_avg_pool2d(const Tensor& x, Pair output_size) {
  FATHOM_CHECK(x.dim() == 4, "adaptive_avg_pool2d: expected x [N, C, H, W], got ", x.desc());
  FATHOM_CHECK(output_size[0] >= 1 && output_size[1] >= 1,
               "adaptive_avg_pool2d: output_size (", output_size[0], ", ", output_size[1],
               ") must be >= 1 for x ", x.desc());
  int64_t H = x.size(2), W = x.size(3);
  FATHOM_CHECK(H >= 1 && W >= 1, "adaptive_avg_pool2d: x ", x.desc(), " has an empty plane");
  if (H % output_size[0] == 0 && W % output_size[1] == 0) {
    Pair k{H / output_size[0], W / output_size[1]};
    return avg_pool2d(x, k, k);
  }
  Tensor y = x;
  for (int d = 0; d < 2; ++d) {
    int64_t m = x.size(2 + d), n = output_size[d];
    if (m == n) continue;
    std::vector<Tensor> cells;
    for (int64_t i = 0; i < n; ++i) {
      int64_t s = i * m / n, e = ((i + 1) * m + n - 1) / n;
      cells.push_back(mean(y.narrow(2 + d, s, e - s), {2 + d}, true));
    }
    y = cat(cells, 2 + d);
  }
  return y;
}

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  double momentum, double eps) {
  FATHOM_CHECK(running_mean.defined() == running_var.defined(),
               "batch_norm: give both running_mean and running_var or neither");
  FATHOM_CHECK(x.dim() >= 2, "batch_norm: expected x [N, C, ...], got ", x.desc());
  int64_t C = x.size(1);
  for (const Tensor* r : {&running_mean, &running_var})
    FATHOM_CHECK(!r->defined() || (r->shape() == Shape{C} && is_floating(r->dtype()) &&
                                   r->device() == x.device()),
                 "batch_norm: running statistics ", r->desc(), " must be [", C,
                 "] floating on ", x.device().str(), " for x ", x.desc());
  Shape bshape(size_t(x.dim()), 1);  // [1, C, 1, ...]: per-channel values broadcast over x
  bshape[1] = C;
  if (!training) {
    FATHOM_CHECK(running_mean.defined(), "batch_norm: eval mode (training=false) needs running "
                 "statistics; pass training=true to normalise with the batch's own");
    // y = x * scale + shift with per-channel constants from the running statistics; autograd
    // differentiates the elementwise ops (x, weight and bias get gradients, the buffers none).
    Tensor rm = ops::to(running_mean, x.dtype()), rv = ops::to(running_var, x.dtype());
    Tensor scale = rsqrt(add(rv, eps)), shift = neg(mul(rm, scale));
    if (weight.defined()) {
      scale = mul(scale, weight);
      shift = mul(shift, weight);
    }
    if (bias.defined()) shift = add(shift, bias);
    return add(mul(x, scale.reshape(bshape)), shift.reshape(bshape));
  }
  auto [y, st] = ops::batch_norm(x, weight, bias, eps);
  if (running_mean.defined()) {
    // PyTorch's update, the variance unbiased: r = (1 - momentum) * r + momentum * batch.
    autograd::NoGradGuard ng;
    ops::mul_(running_mean, 1.0 - momentum);
    ops::add_(running_mean, ops::to(st.mean, running_mean.dtype()), momentum);
    ops::mul_(running_var, 1.0 - momentum);
    ops::add_(running_var, ops::to(st.var, running_var.dtype()), momentum);
  }
  if (!needs_grad({x, weight, bias})) return y;
  bool has_bias = bias.defined();
  return record("batch_norm", {x, weight, bias}, y,
                [x = saved(x), w = saved(weight), st, eps, has_bias](const Grads& g) -> Grads {
                  auto [gx, gw, gb] = ops::batch_norm_backward(g[0], x, w, st, eps, has_bias);
                  return {gx, gw, gb};
                });
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  return x.flatten(start_dim, end_dim);
}

}  // namespace fathom

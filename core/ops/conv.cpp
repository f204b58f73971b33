#include "fathom/core/ops/conv.h"

#include <cmath>

#include "fathom/core/backend.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/reduce.h"
#include "fathom/core/ops/shape.h"

namespace fathom::ops {

namespace {

std::string pair_str(const Pair& p) { return detail::concat("(", p[0], ", ", p[1], ")"); }

void check_float(const char* op, const Tensor& x) {
  FATHOM_CHECK(is_floating(x.dtype()) && x.dtype() != DType::f16, op,
               ": expected an f32, bf16 or f64 tensor, got ", x.desc());
}

void check_like(const char* op, const char* what, const Tensor& t, const Tensor& x) {
  FATHOM_CHECK(t.dtype() == x.dtype() && t.device() == x.device(), op, ": ", what, " ",
               t.desc(), " does not match x ", x.desc(), " in dtype or device");
}

void check_4d(const char* op, const Tensor& x) {
  FATHOM_CHECK(x.dim() == 4, op, ": expected x [N, C, H, W], got ", x.desc());
}

// One spatial output size, or an error naming the op when the window does not fit.
int64_t out_size(const char* op, const Tensor& x, int d, int64_t k, int64_t s, int64_t pad,
                 int64_t dil) {
  int64_t in = x.size(2 + d), span = dil * (k - 1) + 1;
  FATHOM_CHECK(in + 2 * pad >= span, op, ": kernel ", k, " (dilation ", dil, ") spans ", span,
               " but the padded input is only ", in + 2 * pad, " wide in dim ", 2 + d,
               " of x ", x.desc(), " (padding ", pad, ")");
  return (in + 2 * pad - span) / s + 1;
}

void check_conv(const char* op, const Tensor& x, const Tensor& w, const Tensor& b,
                const ConvParams& p) {
  check_4d(op, x);
  check_float(op, x);
  check_like(op, "weight", w, x);
  FATHOM_CHECK(w.dim() == 4, op, ": weight must be [O, C/groups, kH, kW], got ", w.desc());
  for (int d = 0; d < 2; ++d)
    FATHOM_CHECK(p.stride[d] >= 1 && p.dilation[d] >= 1 && p.padding[d] >= 0, op,
                 ": stride ", pair_str(p.stride), " and dilation ", pair_str(p.dilation),
                 " must be >= 1 and padding ", pair_str(p.padding), " >= 0");
  int64_t C = x.size(1), O = w.size(0), g = p.groups;
  FATHOM_CHECK(g >= 1 && C % g == 0 && O % g == 0, op, ": groups ", g, " must divide the ",
               C, " input channels of x ", x.desc(), " and the ", O,
               " output channels of weight ", w.desc());
  FATHOM_CHECK(w.size(1) == C / g, op, ": weight ", w.desc(), " expects ", w.size(1) * g,
               " input channels (", w.size(1), " per group, ", g, " groups) but x ", x.desc(),
               " has ", C);
  if (b.defined()) {
    check_like(op, "bias", b, x);
    FATHOM_CHECK(b.shape() == Shape{O}, op, ": bias ", b.desc(), " must be [", O, "]");
  }
}

Shape conv_out_shape(const char* op, const Tensor& x, const Tensor& w, const ConvParams& p) {
  return {x.size(0), w.size(0),
          out_size(op, x, 0, w.size(2), p.stride[0], p.padding[0], p.dilation[0]),
          out_size(op, x, 1, w.size(3), p.stride[1], p.padding[1], p.dilation[1])};
}

void check_grad(const char* op, const Tensor& g, const Shape& want, const Tensor& x) {
  check_like(op, "grad_y", g, x);
  FATHOM_CHECK(g.shape() == want, op, ": grad_y ", g.desc(), " must be ", shape_str(want));
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvParams& p) {
  check_conv("conv2d", x, weight, bias, p);
  Tensor y = empty(conv_out_shape("conv2d", x, weight, p), x.options());
  if (y.numel() == 0) return y;
  if (x.numel() == 0 || weight.numel() == 0) {  // no terms in the sums: the bias alone
    if (bias.defined()) copy_(y, view(bias, {1, -1, 1, 1}));
    else fill_(y, 0);
    return y;
  }
  FATHOM_DISPATCH(x.device(), conv2d, contiguous(x), contiguous(weight),
                  bias.defined() ? contiguous(bias) : bias, p, y);
  return y;
}

std::tuple<Tensor, Tensor, Tensor> conv2d_backward(const Tensor& grad_y, const Tensor& x,
                                                   const Tensor& weight, const ConvParams& p,
                                                   bool need_x, bool need_weight,
                                                   bool need_bias) {
  const char* op = "conv2d_backward";
  check_conv(op, x, weight, Tensor(), p);
  check_grad(op, grad_y, conv_out_shape(op, x, weight, p), x);
  Tensor gy = contiguous(grad_y);
  Tensor gx = need_x ? empty(x.shape(), x.options()) : Tensor();
  Tensor gw = need_weight ? empty(weight.shape(), x.options()) : Tensor();
  Tensor gb = need_bias ? empty({weight.size(0)}, x.options()) : Tensor();
  bool empty_sums = gy.numel() == 0 || x.numel() == 0 || weight.numel() == 0;
  if (gx.defined()) {
    if (empty_sums) fill_(gx, 0);
    else FATHOM_DISPATCH(x.device(), conv2d_backward_data, gy, contiguous(weight), p, gx);
  }
  if (gw.defined() || gb.defined()) {
    if (empty_sums) {
      if (gw.defined()) fill_(gw, 0);
      if (gb.defined()) fill_(gb, 0);
      // The bias gradient has terms even when the weight has none.
      if (gb.defined() && gy.numel()) copy_(gb, sum(gy, {0, 2, 3}));
    } else {
      FATHOM_DISPATCH(x.device(), conv2d_backward_weight, gy, contiguous(x), p,
                      gw.defined() ? gw : empty(weight.shape(), x.options()), gb);
    }
  }
  return {gx, gw, gb};
}

std::tuple<Tensor, Tensor> pool2d(const Tensor& x, const PoolParams& p) {
  const char* op = p.kind == PoolKind::max ? "max_pool2d" : "avg_pool2d";
  check_4d(op, x);
  check_float(op, x);
  for (int d = 0; d < 2; ++d) {
    FATHOM_CHECK(p.kernel[d] >= 1 && p.stride[d] >= 1 && p.padding[d] >= 0, op, ": kernel ",
                 pair_str(p.kernel), " and stride ", pair_str(p.stride),
                 " must be >= 1 and padding ", pair_str(p.padding), " >= 0");
    FATHOM_CHECK(2 * p.padding[d] <= p.kernel[d], op, ": padding ", pair_str(p.padding),
                 " must be at most half the kernel ", pair_str(p.kernel));
  }
  Shape ys{x.size(0), x.size(1), out_size(op, x, 0, p.kernel[0], p.stride[0], p.padding[0], 1),
           out_size(op, x, 1, p.kernel[1], p.stride[1], p.padding[1], 1)};
  Tensor y = empty(ys, x.options());
  if (y.numel() == 0) return {y, Tensor()};
  Tensor ws = FATHOM_DISPATCH(x.device(), pool2d, contiguous(x), p, y);
  return {y, ws};
}

Tensor pool2d_backward(const Tensor& grad_y, const Tensor& x, const Tensor& y,
                       const Tensor& workspace, const PoolParams& p) {
  const char* op = p.kind == PoolKind::max ? "max_pool2d_backward" : "avg_pool2d_backward";
  check_4d(op, x);
  check_float(op, x);
  check_like(op, "y", y, x);
  check_grad(op, grad_y, y.shape(), x);
  Tensor gx = empty(x.shape(), x.options());
  if (y.numel() == 0) fill_(gx, 0);
  else
    FATHOM_DISPATCH(x.device(), pool2d_backward, contiguous(grad_y), contiguous(x),
                    contiguous(y), workspace, p, gx);
  return gx;
}

namespace {

DType stat_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

// x as [N, C, S]: every dim after the channels is one spatial run.
Shape ncs(const Tensor& x) {
  int64_t s = 1;
  for (int64_t d = 2; d < x.dim(); ++d) s *= x.size(d);
  return {x.size(0), x.size(1), s};
}

// A weight or bias in the statistics' dtype, contiguous; undefined stays undefined.
Tensor as_stat(const char* op, const char* what, const Tensor& t, const Tensor& x) {
  if (!t.defined()) return t;
  FATHOM_CHECK(t.shape() == Shape{x.size(1)} && is_floating(t.dtype()) &&
                   t.device() == x.device(),
               op, ": ", what, " ", t.desc(), " must be [", x.size(1), "] floating on ",
               x.device().str(), " for x ", x.desc());
  return contiguous(to(t, stat_dtype(x.dtype())));
}

void check_bn_x(const char* op, const Tensor& x) {
  check_float(op, x);
  FATHOM_CHECK(x.dim() >= 2, op, ": expected x [N, C, ...], got ", x.desc());
  Shape s = ncs(x);
  FATHOM_CHECK(s[0] * s[2] > 1, op, ": expected more than 1 value per channel when training, "
               "got x ", x.desc());
}

}  // namespace

std::tuple<Tensor, BatchNormStats> batch_norm(const Tensor& x, const Tensor& weight,
                                              const Tensor& bias, double eps) {
  const char* op = "batch_norm";
  check_bn_x(op, x);
  FATHOM_CHECK(eps > 0, op, ": eps must be > 0, got ", eps);
  Tensor w = as_stat(op, "weight", weight, x), b = as_stat(op, "bias", bias, x);
  TensorOptions so{stat_dtype(x.dtype()), x.device()};
  int64_t C = x.size(1);
  BatchNormStats st{empty({C}, so), empty({C}, so), empty({C}, so)};
  Tensor y = empty(x.shape(), x.options());
  if (C > 0)
    FATHOM_DISPATCH(x.device(), batch_norm, view(contiguous(x), ncs(x)), w, b, eps,
                    view(y, ncs(x)), st.mean, st.var, st.invstd);
  return {y, st};
}

std::tuple<Tensor, Tensor, Tensor> batch_norm_backward(const Tensor& grad_y, const Tensor& x,
                                                       const Tensor& weight,
                                                       const BatchNormStats& stats, double eps,
                                                       bool has_bias) {
  const char* op = "batch_norm_backward";
  check_bn_x(op, x);
  check_grad(op, grad_y, x.shape(), x);
  Tensor w = as_stat(op, "weight", weight, x);
  int64_t C = x.size(1);
  TensorOptions so{stat_dtype(x.dtype()), x.device()};
  for (const Tensor* s : {&stats.mean, &stats.var, &stats.invstd})
    FATHOM_CHECK(s->defined() && s->shape() == Shape{C} && s->dtype() == so.dtype &&
                     s->device() == x.device(),
                 op, ": saved statistics must be [", C, "] ", dtype_name(so.dtype),
                 " (what batch_norm returned) for x ", x.desc());
  Tensor gx = empty(x.shape(), x.options());
  Tensor gw = weight.defined() ? empty({C}, so) : Tensor();
  Tensor gb = has_bias ? empty({C}, so) : Tensor();
  if (C > 0)
    FATHOM_DISPATCH(x.device(), batch_norm_backward, view(contiguous(grad_y), ncs(x)),
                    view(contiguous(x), ncs(x)), w, contiguous(stats.mean),
                    contiguous(stats.var), contiguous(stats.invstd), eps, view(gx, ncs(x)), gw,
                    gb);
  return {gx, gw, gb};
}

}  // namespace fathom::ops

// CPU convolution through oneDNN: forward, backward-data, backward-weights (with the bias
// gradient), f32 and bf16. f64 (oneDNN has none) goes to the direct loops of direct.cpp, which
// exist for the f64 gradient checks. Tensors arrive contiguous NCHW; the activations are
// handed to oneDNN in the layout conv_activation_tag() names (reordered when it is not NCHW)
// and the weights in whatever layout oneDNN picks for the shape (format_tag::any).
#include <vector>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/direct.h"
#include "fathom/core/cpu/dnnl.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::cpu {

namespace {

namespace dn = onednn;
using dnnl::memory;
using tag = memory::format_tag;

// Everything that fixes a convolution primitive.
struct ConvShape {
  memory::dims x, w, y;  // NCHW, OIHW, NCHW
  ConvParams p;
  memory::data_type dt;
  bool bias;

  std::string key(const char* kind) const {
    return dn::key(kind, x, w, y, p.stride, p.padding, p.dilation, p.groups, int(dt), int(bias));
  }
  memory::dims strides() const { return {p.stride[0], p.stride[1]}; }
  memory::dims dilates() const { return {p.dilation[0] - 1, p.dilation[1] - 1}; }  // oneDNN counts gaps
  memory::dims pad() const { return {p.padding[0], p.padding[1]}; }
  // The weight as oneDNN sees it: [g, O/g, C/g, kH, kW] when grouped.
  memory::dims wdims() const {
    if (p.groups == 1) return w;
    return {p.groups, w[0] / p.groups, w[1], w[2], w[3]};
  }
  tag wtag() const { return p.groups == 1 ? tag::oihw : tag::goihw; }
  memory::desc x_md(tag t) const { return {x, dt, t}; }
  memory::desc y_md(tag t) const { return {y, dt, t}; }
  memory::desc w_md(tag t) const { return {wdims(), dt, t}; }
  memory::desc b_md() const { return {{w[0]}, dt, tag::x}; }
};

ConvShape shape_of(const Tensor& x, const Tensor& w, const Tensor& y, const ConvParams& p,
                   bool bias) {
  return {dn::dims(x), dn::dims(w), dn::dims(y), p, dn::data_type(x.dtype()), bias};
}

dnnl::convolution_forward::desc fwd_desc(const ConvShape& s) {
  tag a = dn::conv_activation_tag();
  if (s.bias)
    return {dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
            s.x_md(a), s.w_md(tag::any), s.b_md(), s.y_md(a), s.strides(), s.dilates(),
            s.pad(), s.pad()};
  return {dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, s.x_md(a),
          s.w_md(tag::any), s.y_md(a), s.strides(), s.dilates(), s.pad(), s.pad()};
}

struct Fwd {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
};
struct BwdData {
  dnnl::convolution_backward_data::primitive_desc pd;
  dnnl::convolution_backward_data prim;
};
struct BwdWeight {
  dnnl::convolution_backward_weights::primitive_desc pd;
  dnnl::convolution_backward_weights prim;
};

dnnl::convolution_forward::primitive_desc fwd_pd(const ConvShape& s) {
  return {fwd_desc(s), dn::attr(), dn::engine()};
}

// bf16 where oneDNN lacks it natively: the same kernel on f32 copies, rounded once on store.
bool bf16_via_f32(const Tensor& x) { return x.dtype() == DType::bf16 && !dn::native_bf16(); }
Tensor f32(const Tensor& t) { return t.defined() ? ops::to(t, DType::f32) : t; }
Tensor f32_like(const Tensor& t) { return t.defined() ? fathom::empty(t.shape(), DType::f32) : t; }
void store(const Tensor& dst, const Tensor& src) {
  if (dst.defined()) copy(dst, src);
}

}  // namespace

void conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvParams& p,
            const Tensor& y) {
  if (x.dtype() == DType::f64) return direct::conv2d(x, weight, bias, p, y);
  if (bf16_via_f32(x)) {
    Tensor y32 = f32_like(y);
    conv2d(f32(x), f32(weight), f32(bias), p, y32);
    return store(y, y32);
  }
  ConvShape s = shape_of(x, weight, y, p, bias.defined());
  auto e = dn::cached<Fwd>(s.key("conv_fwd"), [&] {
    auto pd = fwd_pd(s);
    return std::make_shared<Fwd>(Fwd{pd, dnnl::convolution_forward(pd)});
  });
  memory xm = dn::to_layout(dn::wrap(x, s.x_md(tag::nchw)), e->pd.src_desc());
  memory wm = dn::to_layout(dn::wrap(weight, s.w_md(s.wtag())), e->pd.weights_desc());
  memory yu = dn::wrap(y, s.y_md(tag::nchw));
  memory ym = dn::output_for(yu, e->pd.dst_desc());
  dn::Args args{{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}};
  if (bias.defined()) args.emplace(DNNL_ARG_BIAS, dn::wrap(bias, s.b_md()));
  dn::execute(e->prim, e->pd, std::move(args));
  dn::finish_output(yu, ym);
}

void conv2d_backward_data(const Tensor& grad_y, const Tensor& weight, const ConvParams& p,
                          const Tensor& grad_x) {
  if (grad_y.dtype() == DType::f64) return direct::conv2d_backward_data(grad_y, weight, p, grad_x);
  if (bf16_via_f32(grad_y)) {
    Tensor gx32 = f32_like(grad_x);
    conv2d_backward_data(f32(grad_y), f32(weight), p, gx32);
    return store(grad_x, gx32);
  }
  ConvShape s = shape_of(grad_x, weight, grad_y, p, false);
  auto e = dn::cached<BwdData>(s.key("conv_bwd_data"), [&] {
    tag a = dn::conv_activation_tag();
    dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, s.x_md(a),
                                            s.w_md(tag::any), s.y_md(a), s.strides(),
                                            s.dilates(), s.pad(), s.pad());
    dnnl::convolution_backward_data::primitive_desc pd(d, dn::attr(), dn::engine(), fwd_pd(s));
    return std::make_shared<BwdData>(BwdData{pd, dnnl::convolution_backward_data(pd)});
  });
  memory gym = dn::to_layout(dn::wrap(grad_y, s.y_md(tag::nchw)), e->pd.diff_dst_desc());
  memory wm = dn::to_layout(dn::wrap(weight, s.w_md(s.wtag())), e->pd.weights_desc());
  memory gxu = dn::wrap(grad_x, s.x_md(tag::nchw));
  memory gxm = dn::output_for(gxu, e->pd.diff_src_desc());
  dn::execute(e->prim, e->pd,
              {{DNNL_ARG_DIFF_DST, gym}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, gxm}});
  dn::finish_output(gxu, gxm);
}

void conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const ConvParams& p,
                            const Tensor& grad_weight, const Tensor& grad_bias) {
  if (x.dtype() == DType::f64)
    return direct::conv2d_backward_weight(grad_y, x, p, grad_weight, grad_bias);
  if (bf16_via_f32(x)) {
    Tensor gw32 = f32_like(grad_weight), gb32 = f32_like(grad_bias);
    conv2d_backward_weight(f32(grad_y), f32(x), p, gw32, gb32);
    store(grad_weight, gw32);
    return store(grad_bias, gb32);
  }
  ConvShape s = shape_of(x, grad_weight, grad_y, p, grad_bias.defined());
  auto e = dn::cached<BwdWeight>(s.key("conv_bwd_weight"), [&] {
    tag a = dn::conv_activation_tag();
    auto alg = dnnl::algorithm::convolution_direct;
    using D = dnnl::convolution_backward_weights::desc;
    D d = s.bias ? D(alg, s.x_md(a), s.w_md(tag::any), s.b_md(), s.y_md(a), s.strides(),
                     s.dilates(), s.pad(), s.pad())
                 : D(alg, s.x_md(a), s.w_md(tag::any), s.y_md(a), s.strides(), s.dilates(),
                     s.pad(), s.pad());
    dnnl::convolution_backward_weights::primitive_desc pd(d, dn::attr(), dn::engine(),
                                                          fwd_pd(s));
    return std::make_shared<BwdWeight>(BwdWeight{pd, dnnl::convolution_backward_weights(pd)});
  });
  memory xm = dn::to_layout(dn::wrap(x, s.x_md(tag::nchw)), e->pd.src_desc());
  memory gym = dn::to_layout(dn::wrap(grad_y, s.y_md(tag::nchw)), e->pd.diff_dst_desc());
  memory gwu = dn::wrap(grad_weight, s.w_md(s.wtag()));
  memory gwm = dn::output_for(gwu, e->pd.diff_weights_desc());
  dn::Args args{{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, gym}, {DNNL_ARG_DIFF_WEIGHTS, gwm}};
  if (grad_bias.defined()) args.emplace(DNNL_ARG_DIFF_BIAS, dn::wrap(grad_bias, s.b_md()));
  dn::execute(e->prim, e->pd, std::move(args));
  dn::finish_output(gwu, gwm);
}

}  // namespace fathom::cpu

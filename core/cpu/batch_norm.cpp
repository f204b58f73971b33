// CPU batch norm (training mode: batch statistics) through oneDNN, f32 and bf16 data with f32
// statistics and parameters; f64 by the direct loops. oneDNN returns the biased variance;
// the contract's unbiased variance and invstd are derived from it per channel, and backward
// turns the unbiased one back (a rounding of the value forward used, no more).
#include <cmath>
#include <cstring>
#include <vector>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/direct.h"
#include "fathom/core/cpu/loops.h"
#include "fathom/core/cpu/dnnl.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::cpu {

namespace {

namespace dn = onednn;
using dnnl::memory;
using tag = memory::format_tag;
using Flags = dnnl::normalization_flags;

struct BnShape {
  memory::dims x;  // [N, C, S, 1]
  memory::data_type dt;
  double eps;
  bool scale, shift;

  std::string key(const char* kind) const {
    int64_t eps_bits;
    std::memcpy(&eps_bits, &eps, sizeof eps);
    return dn::key(kind, x, int(dt), eps_bits, int(scale), int(shift));
  }
  memory::desc x_md() const { return {x, dt, tag::nchw}; }
  memory::desc c_md() const { return {{x[1]}, memory::data_type::f32, tag::x}; }
  Flags flags() const {
    unsigned f = 0;
    if (scale) f |= unsigned(Flags::use_scale);
    if (shift) f |= unsigned(Flags::use_shift);
    return Flags(f);
  }
  dnnl::batch_normalization_forward::desc fwd_desc() const {
    return {dnnl::prop_kind::forward_training, x_md(), float(eps), flags()};
  }
};

BnShape shape_of(const Tensor& x, double eps, bool scale, bool shift) {
  return {{x.size(0), x.size(1), x.size(2), 1}, dn::data_type(x.dtype()), eps, scale, shift};
}

struct Fwd {
  dnnl::batch_normalization_forward::primitive_desc pd;
  dnnl::batch_normalization_forward prim;
};
struct Bwd {
  dnnl::batch_normalization_backward::primitive_desc pd;
  dnnl::batch_normalization_backward prim;
};

std::shared_ptr<const Fwd> fwd(const BnShape& s) {
  return dn::cached<Fwd>(s.key("bn_fwd"), [&] {
    dnnl::batch_normalization_forward::primitive_desc pd(s.fwd_desc(), dn::attr(),
                                                         dn::engine());
    return std::make_shared<Fwd>(Fwd{pd, dnnl::batch_normalization_forward(pd)});
  });
}

bool bf16_via_f32(const Tensor& x) { return x.dtype() == DType::bf16 && !dn::native_bf16(); }

}  // namespace

void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& var, const Tensor& invstd) {
  if (x.dtype() == DType::f64) return direct::batch_norm(x, weight, bias, eps, y, mean, var, invstd);
  if (bf16_via_f32(x)) {
    Tensor y32 = empty(y.shape(), DType::f32);
    batch_norm(ops::to(x, DType::f32), weight, bias, eps, y32, mean, var, invstd);
    return copy(y, y32);
  }
  BnShape s = shape_of(x, eps, weight.defined(), bias.defined());
  auto e = fwd(s);
  int64_t C = x.size(1);
  Tensor biased = empty({C}, DType::f32);
  dn::Args args{{DNNL_ARG_SRC, dn::wrap(x, s.x_md())},
                {DNNL_ARG_DST, dn::wrap(y, s.x_md())},
                {DNNL_ARG_MEAN, dn::wrap(mean, e->pd.mean_desc())},
                {DNNL_ARG_VARIANCE, dn::wrap(biased, e->pd.variance_desc())}};
  if (weight.defined()) args.emplace(DNNL_ARG_SCALE, dn::wrap(weight, s.c_md()));
  if (bias.defined()) args.emplace(DNNL_ARG_SHIFT, dn::wrap(bias, s.c_md()));
  dn::execute(e->prim, e->pd, std::move(args));
  double M = double(x.size(0) * x.size(2));
  const float* bv = ptr<float>(biased);
  float *vp = ptr<float>(var), *ip = ptr<float>(invstd);
  for (int64_t c = 0; c < C; ++c) {
    vp[c] = float(double(bv[c]) * M / (M - 1));
    ip[c] = float(1.0 / std::sqrt(double(bv[c]) + eps));
  }
}

void batch_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                         const Tensor& mean, const Tensor& var, const Tensor& invstd,
                         double eps, const Tensor& grad_x, const Tensor& grad_weight,
                         const Tensor& grad_bias) {
  if (x.dtype() == DType::f64)
    return direct::batch_norm_backward(grad_y, x, weight, mean, invstd, grad_x, grad_weight,
                                       grad_bias);
  if (bf16_via_f32(x)) {
    Tensor gx32 = empty(grad_x.shape(), DType::f32);
    batch_norm_backward(ops::to(grad_y, DType::f32), ops::to(x, DType::f32), weight, mean, var,
                        invstd, eps, gx32, grad_weight, grad_bias);
    return copy(grad_x, gx32);
  }
  // oneDNN computes the weight gradient whenever it has the weight, and the bias gradient with
  // it; the flags follow what is asked, scratch buffers take what is not.
  bool scale = weight.defined(), shift = grad_bias.defined();
  BnShape s = shape_of(x, eps, scale, shift);
  auto f = fwd(s);
  auto e = dn::cached<Bwd>(s.key("bn_bwd"), [&] {
    auto pk = scale || shift ? dnnl::prop_kind::backward : dnnl::prop_kind::backward_data;
    dnnl::batch_normalization_backward::desc d(pk, s.x_md(), s.x_md(), float(eps),
                                               s.flags());
    dnnl::batch_normalization_backward::primitive_desc pd(d, dn::attr(), dn::engine(), f->pd);
    return std::make_shared<Bwd>(Bwd{pd, dnnl::batch_normalization_backward(pd)});
  });
  int64_t C = x.size(1);
  double M = double(x.size(0) * x.size(2));
  Tensor biased = empty({C}, DType::f32);
  const float* vp = ptr<float>(var);
  float* bv = ptr<float>(biased);
  for (int64_t c = 0; c < C; ++c) bv[c] = float(double(vp[c]) * (M - 1) / M);
  dn::Args args{{DNNL_ARG_SRC, dn::wrap(x, s.x_md())},
                {DNNL_ARG_DIFF_DST, dn::wrap(grad_y, s.x_md())},
                {DNNL_ARG_MEAN, dn::wrap(mean, e->pd.mean_desc())},
                {DNNL_ARG_VARIANCE, dn::wrap(biased, e->pd.variance_desc())},
                {DNNL_ARG_DIFF_SRC, dn::wrap(grad_x, s.x_md())}};
  Tensor gw = grad_weight.defined() || !scale ? grad_weight : empty({C}, DType::f32);
  if (scale) {
    args.emplace(DNNL_ARG_SCALE, dn::wrap(weight, s.c_md()));
    args.emplace(DNNL_ARG_DIFF_SCALE, dn::wrap(gw, s.c_md()));
  }
  // The primitive asks for the shift as an argument though its gradient does not read it.
  Tensor unused_shift = shift ? zeros({C}, DType::f32) : Tensor();
  if (shift) {
    args.emplace(DNNL_ARG_SHIFT, dn::wrap(unused_shift, s.c_md()));
    args.emplace(DNNL_ARG_DIFF_SHIFT, dn::wrap(grad_bias, s.c_md()));
  }
  dn::execute(e->prim, e->pd, std::move(args));
}

}  // namespace fathom::cpu

// CPU max and average pooling through oneDNN, f32 and bf16; f64 by the direct loops. Max
// pooling's forward returns oneDNN's workspace (where each maximum was) for its backward,
// which then needs neither x nor y. Activations stay NCHW: pooling is memory-bound and a
// reorder would cost as much as the pooling itself.
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

dnnl::algorithm algorithm_of(PoolKind k) {
  switch (k) {
    case PoolKind::max: return dnnl::algorithm::pooling_max;
    case PoolKind::avg_include_pad: return dnnl::algorithm::pooling_avg_include_padding;
    case PoolKind::avg_exclude_pad: return dnnl::algorithm::pooling_avg_exclude_padding;
  }
  detail::fail("pool2d: unknown pooling kind");
}

struct PoolShape {
  memory::dims x, y;
  PoolParams p;
  memory::data_type dt;

  std::string key(const char* kind) const {
    return dn::key(kind, x, y, p.kernel, p.stride, p.padding, int(p.kind), int(dt));
  }
  memory::desc x_md() const { return {x, dt, tag::nchw}; }
  memory::desc y_md() const { return {y, dt, tag::nchw}; }
  dnnl::pooling_forward::desc fwd_desc() const {
    memory::dims pad{p.padding[0], p.padding[1]};
    return {dnnl::prop_kind::forward_training, algorithm_of(p.kind), x_md(), y_md(),
            {p.stride[0], p.stride[1]}, {p.kernel[0], p.kernel[1]}, pad, pad};
  }
};

struct Fwd {
  dnnl::pooling_forward::primitive_desc pd;
  dnnl::pooling_forward prim;
};
struct Bwd {
  dnnl::pooling_backward::primitive_desc pd;
  dnnl::pooling_backward prim;
};

std::shared_ptr<const Fwd> fwd(const PoolShape& s) {
  return dn::cached<Fwd>(s.key("pool_fwd"), [&] {
    dnnl::pooling_forward::primitive_desc pd(s.fwd_desc(), dn::attr(), dn::engine());
    return std::make_shared<Fwd>(Fwd{pd, dnnl::pooling_forward(pd)});
  });
}

bool bf16_via_f32(const Tensor& x) { return x.dtype() == DType::bf16 && !dn::native_bf16(); }

}  // namespace

Tensor pool2d(const Tensor& x, const PoolParams& p, const Tensor& y) {
  if (x.dtype() == DType::f64) {
    direct::pool2d(x, p, y);
    return Tensor();
  }
  if (bf16_via_f32(x)) {
    Tensor y32 = empty(y.shape(), DType::f32);
    Tensor ws = pool2d(ops::to(x, DType::f32), p, y32);
    copy(y, y32);
    return ws;
  }
  PoolShape s{dn::dims(x), dn::dims(y), p, dn::data_type(x.dtype())};
  auto e = fwd(s);
  dn::Args args{{DNNL_ARG_SRC, dn::wrap(x, s.x_md())}, {DNNL_ARG_DST, dn::wrap(y, s.y_md())}};
  Tensor ws;
  memory::desc wd = e->pd.workspace_desc();
  if (wd.get_size()) {
    ws = empty({int64_t(wd.get_size())}, DType::u8);
    args.emplace(DNNL_ARG_WORKSPACE, dn::wrap(ws, wd));
  }
  dn::execute(e->prim, e->pd, std::move(args));
  return ws;
}

void pool2d_backward(const Tensor& grad_y, const Tensor& x, const Tensor& y,
                     const Tensor& workspace, const PoolParams& p, const Tensor& grad_x) {
  if (x.dtype() == DType::f64) return direct::pool2d_backward(grad_y, x, p, grad_x);
  if (bf16_via_f32(x)) {
    Tensor gx32 = empty(grad_x.shape(), DType::f32);
    pool2d_backward(ops::to(grad_y, DType::f32), ops::to(x, DType::f32),
                    ops::to(y, DType::f32), workspace, p, gx32);
    return copy(grad_x, gx32);
  }
  PoolShape s{dn::dims(x), dn::dims(grad_y), p, dn::data_type(x.dtype())};
  auto f = fwd(s);
  auto e = dn::cached<Bwd>(s.key("pool_bwd"), [&] {
    memory::dims pad{p.padding[0], p.padding[1]};
    dnnl::pooling_backward::desc d(algorithm_of(p.kind), s.x_md(), s.y_md(),
                                   {p.stride[0], p.stride[1]}, {p.kernel[0], p.kernel[1]}, pad,
                                   pad);
    dnnl::pooling_backward::primitive_desc pd(d, dn::attr(), dn::engine(), f->pd);
    return std::make_shared<Bwd>(Bwd{pd, dnnl::pooling_backward(pd)});
  });
  dn::Args args{{DNNL_ARG_DIFF_DST, dn::wrap(grad_y, s.y_md())},
                {DNNL_ARG_DIFF_SRC, dn::wrap(grad_x, s.x_md())}};
  memory::desc wd = e->pd.workspace_desc();
  if (wd.get_size()) {
    FATHOM_CHECK(workspace.defined() && size_t(workspace.numel()) == wd.get_size(),
                 "max_pool2d_backward: the workspace is not the one max_pool2d returned for x ",
                 x.desc());
    args.emplace(DNNL_ARG_WORKSPACE, dn::wrap(workspace, wd));
  }
  dn::execute(e->prim, e->pd, std::move(args));
}

}  // namespace fathom::cpu

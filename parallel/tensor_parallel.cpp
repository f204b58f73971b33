// The tensor-parallel communication ops and the column/row-parallel linear layers. The
// vocabulary-parallel embedding and cross-entropy are in parallel/vocab_parallel.cpp.
#include "fathom/parallel/tensor_parallel.h"

#include <cmath>
#include <ostream>

#include "fathom/autograd/node.h"
#include "fathom/autograd/ops.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"
#include "fathom/nn/functional.h"
#include "fathom/nn/init.h"
#include "fathom/parallel/tp_detail.h"

namespace fathom::parallel {

namespace detail {

void check_group(const GroupPtr& g, const char* op) {
  FATHOM_CHECK(g != nullptr, op, ": the tensor-parallel group is null (this rank is not in it?)");
}

Tensor allreduced(const Tensor& t, comm::ProcessGroup& g, comm::ReduceOp op) {
  if (g.size() == 1) return t;
  Tensor c = ops::clone(t);  // a fresh buffer: t may be a view or shared with the graph
  g.allreduce(c, op)->wait();
  return c;
}

Tensor gathered_last_dim(const Tensor& x, comm::ProcessGroup& g) {
  int p = g.size();
  if (p == 1) return x;
  Tensor in = ops::contiguous(x);
  int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  Tensor out = empty({p, rows, n}, x.options());  // rank r's block is out[r]
  g.allgather(out, in)->wait();
  Shape shape = x.shape();
  shape.back() = n * p;
  return ops::contiguous(ops::permute(out, {1, 0, 2})).view(shape);
}

Tensor own_block_last_dim(const Tensor& x, comm::ProcessGroup& g) {
  int64_t n = x.size(-1) / g.size();
  return ops::contiguous(ops::narrow(x, x.dim() - 1, int64_t(g.rank()) * n, n));
}

}  // namespace detail

using detail::allreduced;
using detail::check_group;

Range shard_range(int64_t n, const comm::ProcessGroup& group, const char* what) {
  int p = group.size();
  FATHOM_CHECK(n > 0 && n % p == 0, what, ": ", n, " features do not split evenly over the ",
               p, " ranks of group ", group.name());
  int64_t per = n / p;
  return {group.rank() * per, (group.rank() + 1) * per};
}

// ---- the communication ops ----

Tensor copy_to_tp_region(const Tensor& x, const GroupPtr& group) {
  check_group(group, "copy_to_tp_region");
  // Each rank's branch after this point produces only part of the input's gradient (the part
  // through its slice of the weights); the sum over ranks is the whole gradient.
  return autograd::record("copy_to_tp_region", {x}, x, [group](const autograd::Grads& g) {
    return autograd::Grads{allreduced(g[0], *group, comm::ReduceOp::sum)};
  });
}

Tensor reduce_from_tp_region(const Tensor& x, const GroupPtr& group) {
  check_group(group, "reduce_from_tp_region");
  Tensor y = allreduced(x, *group, comm::ReduceOp::sum);
  // Every rank's copy of the sum gets the same gradient, which is each partial's gradient.
  return autograd::record("reduce_from_tp_region", {x}, y,
                          [](const autograd::Grads& g) { return g; });
}

Tensor gather_from_tp_region(const Tensor& x, const GroupPtr& group) {
  check_group(group, "gather_from_tp_region");
  FATHOM_CHECK(x.dim() >= 1, "gather_from_tp_region: input ", x.desc(), " has no last dim");
  Tensor y = detail::gathered_last_dim(x, *group);
  return autograd::record("gather_from_tp_region", {x}, y, [group](const autograd::Grads& g) {
    return autograd::Grads{detail::own_block_last_dim(g[0], *group)};
  });
}

Tensor scatter_to_tp_region(const Tensor& x, const GroupPtr& group) {
  check_group(group, "scatter_to_tp_region");
  FATHOM_CHECK(x.dim() >= 1 && x.size(-1) % group->size() == 0, "scatter_to_tp_region: input ",
               x.desc(), ": the last dim must split evenly over the ", group->size(),
               " ranks of group ", group->name());
  Tensor y = detail::own_block_last_dim(x, *group);
  return autograd::record("scatter_to_tp_region", {x}, y, [group](const autograd::Grads& g) {
    return autograd::Grads{detail::gathered_last_dim(g[0], *group)};
  });
}

// ---- ColumnParallelLinear ----

ColumnParallelLinear::ColumnParallelLinear(const ParallelLinearOptions& o, GroupPtr g,
                                           Generator* gen)
    : Module("ColumnParallelLinear"), options(o), group(std::move(g)) {
  check_group(group, "ColumnParallelLinear");
  FATHOM_CHECK(o.in_features() > 0, "ColumnParallelLinear: in_features ", o.in_features(),
               " must be positive");
  rows = shard_range(o.out_features(), *group, "ColumnParallelLinear: out_features");
  double bound = 1.0 / std::sqrt(double(o.in_features()));
  weight = register_parameter("weight", empty({rows.size(), o.in_features()}));
  nn::init::uniform_(weight, -bound, bound, gen);
  if (o.bias()) {
    bias = register_parameter("bias", empty({rows.size()}));
    nn::init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor ColumnParallelLinear::forward(const Tensor& x) {
  FATHOM_CHECK(x.dim() >= 1 && x.size(-1) == options.in_features(), "ColumnParallelLinear: input ",
               x.desc(), " must be [..., ", options.in_features(), "]");
  Tensor y = nn::functional::linear(copy_to_tp_region(x, group), weight, bias);
  return options.gather_output() ? gather_from_tp_region(y, group) : y;
}

void ColumnParallelLinear::pretty_print(std::ostream& os) const {
  os << "ColumnParallelLinear(in_features=" << options.in_features() << ", out_features="
     << options.out_features() << ", rows=[" << rows.start << ", " << rows.end
     << "), bias=" << (options.bias() ? "true" : "false")
     << ", gather_output=" << (options.gather_output() ? "true" : "false") << ")";
}

// ---- RowParallelLinear ----

RowParallelLinear::RowParallelLinear(const ParallelLinearOptions& o, GroupPtr g, Generator* gen)
    : Module("RowParallelLinear"), options(o), group(std::move(g)) {
  check_group(group, "RowParallelLinear");
  FATHOM_CHECK(o.out_features() > 0, "RowParallelLinear: out_features ", o.out_features(),
               " must be positive");
  cols = shard_range(o.in_features(), *group, "RowParallelLinear: in_features");
  double bound = 1.0 / std::sqrt(double(o.in_features()));
  weight = register_parameter("weight", empty({o.out_features(), cols.size()}));
  nn::init::uniform_(weight, -bound, bound, gen);
  if (o.bias()) {
    bias = register_parameter("bias", empty({o.out_features()}));
    nn::init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor RowParallelLinear::forward(const Tensor& x) {
  int64_t want = options.input_is_parallel() ? cols.size() : options.in_features();
  FATHOM_CHECK(x.dim() >= 1 && x.size(-1) == want, "RowParallelLinear: input ", x.desc(),
               " must be [..., ", want, "]",
               options.input_is_parallel() ? " (this rank's slice: input_is_parallel)" : "");
  Tensor in = options.input_is_parallel() ? x : scatter_to_tp_region(x, group);
  Tensor y = reduce_from_tp_region(nn::functional::linear(in, weight), group);
  return bias.defined() ? y + bias : y;
}

void RowParallelLinear::pretty_print(std::ostream& os) const {
  os << "RowParallelLinear(in_features=" << options.in_features() << ", out_features="
     << options.out_features() << ", cols=[" << cols.start << ", " << cols.end
     << "), bias=" << (options.bias() ? "true" : "false")
     << ", input_is_parallel=" << (options.input_is_parallel() ? "true" : "false") << ")";
}

}  // namespace fathom::parallel

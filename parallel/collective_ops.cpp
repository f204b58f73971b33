#include "fathom/parallel/collective_ops.h"

#include "fathom/autograd/grad_mode.h"
#include "fathom/autograd/node.h"
#include "fathom/core/ops/shape.h"

namespace fathom::parallel {

namespace {
Tensor reduced_copy(const Tensor& t, comm::ProcessGroup& group) {
  Tensor out = ops::clone(t);  // the collective writes in place; x stays as it was
  group.allreduce(out, comm::ReduceOp::sum)->wait();
  return out;
}
}  // namespace

Tensor all_reduce_sum(const Tensor& x, const std::shared_ptr<comm::ProcessGroup>& group) {
  FATHOM_CHECK(group != nullptr, "all_reduce_sum: the process group is null (input ", x.desc(), ")");
  Tensor y;
  {
    NoGradGuard no_grad;
    y = reduced_copy(x.detach(), *group);
  }
  if (!autograd::needs_grad({x})) return y;
  return autograd::record("all_reduce_sum", {x}, y, [group](const autograd::Grads& g) -> autograd::Grads {
    return {reduced_copy(g[0], *group)};
  });
}

}  // namespace fathom::parallel

#include "fathom/parallel/grad_norm.h"

#include <cmath>

#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/reduce.h"
#include "fathom/optim/clip.h"

namespace fathom::parallel {

double grad_norm(const std::vector<Tensor>& sharded, const std::vector<Tensor>& replicated,
                 comm::ProcessGroup& tp_group,
                 const std::vector<comm::ProcessGroup*>& disjoint_groups) {
  double sq = ops::sum_squares(sharded);
  if (tp_group.rank() == 0) sq += ops::sum_squares(replicated);
  // One f64 scalar on the CPU (MPI) whatever the gradients' device: the sums of squares are
  // already on the host, and every rank reduces the same 8 bytes in the same order.
  Tensor total = from_vector(std::vector<double>{sq}, {1}, {DType::f64, Device::cpu()});
  if (tp_group.size() > 1) tp_group.allreduce(total)->wait();
  for (comm::ProcessGroup* g : disjoint_groups) {
    FATHOM_CHECK(g != nullptr, "parallel::grad_norm: a disjoint group is null");
    if (g->size() > 1) g->allreduce(total)->wait();
  }
  return std::sqrt(to_vector(total)[0]);
}

double clip_grad_norm_(const std::vector<Tensor>& sharded, const std::vector<Tensor>& replicated,
                       double max_norm, comm::ProcessGroup& tp_group,
                       const std::vector<comm::ProcessGroup*>& disjoint_groups) {
  double norm = grad_norm(sharded, replicated, tp_group, disjoint_groups);
  double c = optim::clip_coefficient(norm, max_norm);
  if (c < 1.0)
    for (const auto* list : {&sharded, &replicated})
      for (const Tensor& g : *list)
        if (g.defined()) ops::mul_(g, c);
  return norm;
}

double grad_norm(const optim::Optimizer& opt, const MeshNorm& norm) {
  FATHOM_CHECK(norm.is_sharded && norm.tp_group, "parallel::grad_norm: MeshNorm needs is_sharded "
               "and tp_group");
  std::vector<Tensor> sharded, replicated;
  std::vector<Tensor> grads = opt.gradients();  // aligned with params()
  const optim::NamedParams& params = opt.params();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params[i].first;
    if (norm.counted && !norm.counted(name)) continue;
    (norm.is_sharded(name) ? sharded : replicated).push_back(grads[i]);
  }
  std::vector<comm::ProcessGroup*> groups;
  for (auto& g : norm.disjoint_groups) groups.push_back(g.get());
  return grad_norm(sharded, replicated, *norm.tp_group, groups);
}

std::vector<Tensor> grads_of(const std::vector<Tensor>& params) {
  std::vector<Tensor> out;
  out.reserve(params.size());
  for (const Tensor& p : params) out.push_back(p.grad());
  return out;
}

}  // namespace fathom::parallel

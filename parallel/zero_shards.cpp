// ZeroShards: the segments this rank owns, Megatron-Core's way. Each bucket (padded to 4 x world
// elements) is cut into `world` equal contiguous blocks, rank r owning block r; a block cuts
// across parameters, so a rank's segments are its block intersected with each parameter of the
// bucket. The optimizer steps those segments as 1-D views of the flat parameter buffer, reading
// their gradients from the reduced bucket (ZeRO-1) or from this rank's reduce-scattered block
// (ZeRO-2); then each bucket's parameter buffer is all-gathered in place.
#include <algorithm>
#include <cmath>
#include <set>

#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/reduce.h"
#include "fathom/core/ops/shape.h"
#include "fathom/parallel/distributed_optimizer.h"

namespace fathom::parallel {

ZeroShards::ZeroShards(DistributedDataParallel& ddp, const std::vector<optim::ParamGroup>& groups,
                       const ZeroOptions& options)
    : ddp_(ddp), o_(options) {
  const char* who = "DistributedOptimizer";
  // Every parameter DDP reduces must be in exactly one group, and only those: a parameter
  // nobody steps would still be all-gathered, silently frozen.
  std::map<std::string, int> index;
  for (size_t i = 0; i < ddp_.params_.size(); ++i) index[ddp_.params_[i].name] = int(i);
  std::vector<int> group_of(ddp_.params_.size(), -1);
  for (size_t g = 0; g < groups.size(); ++g)
    for (const auto& [name, t] : groups[g].params()) {
      auto it = index.find(name);
      FATHOM_CHECK(it != index.end(), who, ": parameter '", name, "' of param group ", g, " is not "
                   "one of DDP's (DDP takes the module's parameters that require grad, by name)");
      FATHOM_CHECK(t.is_same(ddp_.params_[size_t(it->second)].tensor), who, ": parameter '", name,
                   "' of param group ", g, " is another tensor than DDP's parameter of that name");
      FATHOM_CHECK(group_of[size_t(it->second)] < 0, who, ": parameter '", name, "' is in param "
                   "group ", group_of[size_t(it->second)], " and param group ", g);
      group_of[size_t(it->second)] = int(g);
    }
  std::string missing;
  for (size_t i = 0; i < group_of.size(); ++i)
    if (group_of[i] < 0) missing += (missing.empty() ? "'" : ", '") + ddp_.params_[i].name + "'";
  FATHOM_CHECK(missing.empty(), who, ": DDP's parameters ", missing, " are in no param group; the "
               "optimizer must step every parameter DDP reduces");

  ddp_.shard(o_.stage());
  const int64_t world = ddp_.group_->size(), rank = ddp_.group_->rank();
  std::vector<optim::NamedParams> per_group(groups.size());
  for (size_t k = 0; k < ddp_.buckets_.size(); ++k) {
    const auto& b = ddp_.buckets_[k];
    int64_t block = b.numel / world, lo = rank * block, hi = lo + block;
    for (int i : b.params) {
      const auto& p = ddp_.params_[size_t(i)];
      int64_t a = std::max(p.offset, lo), e = std::min(p.offset + p.tensor.numel(), hi);
      if (a >= e) continue;
      segments_.push_back({p.name, i, int(k), a - p.offset, e - a, a});
      per_group[size_t(group_of[size_t(i)])].push_back({p.name, ops::narrow(b.params_flat, 0, a, e - a)});
    }
  }
  for (size_t g = 0; g < groups.size(); ++g) groups_.push_back(groups[g].with_params(std::move(per_group[g])));
}

std::vector<optim::ParamGroup> ZeroShards::all_params(DistributedDataParallel& ddp) {
  optim::NamedParams params;
  for (const auto& p : ddp.params_) params.push_back({p.name, p.tensor});
  std::vector<optim::ParamGroup> out;
  out.emplace_back(std::move(params));
  return out;
}

void ZeroShards::attach(optim::Optimizer& opt) const {
  const int64_t world = ddp_.group_->size(), rank = ddp_.group_->rank();
  for (const Segment& s : segments_) {
    const auto& b = ddp_.buckets_[size_t(s.bucket)];
    Tensor g = o_.stage() == 2 ? ops::narrow(b.grad_shard, 0, s.bucket_offset - rank * (b.numel / world), s.length)
                               : ops::narrow(b.buffer, 0, s.bucket_offset, s.length);
    opt.set_grad_source(s.name, g);
  }
}

double ZeroShards::grad_norm(const optim::Optimizer& opt) const {
  double local = ops::sum_squares(opt.gradients());
  comm::ProcessGroup& pg = *ddp_.group_;
  if (pg.size() == 1) return std::sqrt(local);
  Tensor t = ops::to(from_vector(std::vector<double>{local}, {1}, DType::f64),
                     ddp_.params_[0].tensor.device());
  pg.allreduce(t, comm::ReduceOp::sum)->wait();
  return std::sqrt(t.item<double>());
}

void ZeroShards::gather_params() {
  comm::ProcessGroup& pg = *ddp_.group_;
  if (pg.size() == 1) return;
  const int64_t world = pg.size(), rank = pg.rank();
  // Last bucket first: buckets hold parameters in reverse registration order, so the last
  // one holds what the next forward uses first.
  for (size_t k = ddp_.buckets_.size(); k-- > 0;) {
    auto& b = ddp_.buckets_[k];
    int64_t block = b.numel / world;
    b.gather = pg.allgather(b.params_flat, ops::narrow(b.params_flat, 0, rank * block, block));
  }
  if (!o_.overlap_param_gather()) ddp_.wait_param_gather();
}

void ZeroShards::wait_param_gather() { ddp_.wait_param_gather(); }

}  // namespace fathom::parallel

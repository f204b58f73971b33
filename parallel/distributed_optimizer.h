#pragma once
// The distributed optimizer (ZeRO-1 and ZeRO-2, as Megatron-Core's DistributedOptimizer): the f32
// master weights and optimizer state are split over the data-parallel ranks, each rank stepping
// only its own contiguous block of every DDP bucket, and the updated parameters are all-gathered
// so every rank holds the whole model again.
//
//   parallel::DistributedDataParallel ddp(model, world);
//   parallel::DistributedOptimizer<optim::AdamW> opt(ddp, optim::AdamWOptions(1e-3),
//                                                    parallel::ZeroOptions().stage(2));
//   optim::CosineLR sched(opt, 10, 100);              // it is an optim::AdamW: schedulers,
//   optim::GradScaler scaler(optim::GradScalerOptions().enabled(false));   // scalers, TrainState
//   ...
//   opt.zero_grad();
//   scaler.scale(cross_entropy(ddp.forward(x), y)).backward();
//   scaler.step(opt, /*max_norm=*/1.0);               // clips by the norm over all shards
//
// Blocks cut across parameters: a parameter straddling two ranks' blocks is stepped in two
// pieces ("segments"), each a 1-D view of it, with its param group's options and the same fused
// kernels as any optimizer. So params(), param_groups(), gradients() and state_dict() are this
// rank's segments (named after their parameters); state_dict() is this rank's shard, saved per
// rank by checkpoint::collect and resharded to another number of ranks by restore_resharded.
//
// Build it right after DDP, before the first step, on every rank; the DDP must outlive it.
// step() and grad_norm() are collective (every rank calls them, as GradScaler::step does).
//
// Stage 1 all-reduces the gradients as plain DDP does (p.grad() is the whole average, and 2:4
// compression works); stage 2 reduce-scatters them, so a rank keeps only its block of each
// bucket between steps and p.grad() is undefined after backward. docs/zero.md has the design,
// the memory per parameter against Megatron's formulas, and what overlaps with what.
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "fathom/core/memory.h"
#include "fathom/core/phase.h"
#include "fathom/optim/optimizer.h"
#include "fathom/parallel/ddp.h"

namespace fathom::parallel {

struct ZeroOptions {
  // 1: shard the optimizer state and master weights (ZeRO-1); 2: the gradients too (ZeRO-2).
  FATHOM_ARG(int, stage) = 1;
  // false: step() returns once every rank's updated block has arrived. true: step() returns
  // with the all-gathers in flight (launched in the order the forward uses the buckets) and the
  // next ddp.forward() waits for them, so whatever the loop does in between (scheduler, logging,
  // the next batch) overlaps with them. Until then the model holds other ranks' blocks as they
  // were: read it only after ddp.forward() or wait_param_gather().
  FATHOM_ARG(bool, overlap_param_gather) = false;
};

// The sharding itself, shared by every DistributedOptimizer<Algo>: which segments this rank
// owns, where their gradients are, the norm over all ranks, the gather, and the state's layout.
class ZeroShards {
 public:
  // One piece of a parameter owned by this rank: elements [start, start + length) of the
  // flattened parameter, at `bucket_offset` in its bucket.
  struct Segment {
    std::string name;
    int param = 0, bucket = 0;
    int64_t start = 0, length = 0, bucket_offset = 0;
  };
  using State = std::map<std::string, Tensor>;

  ZeroShards(DistributedDataParallel& ddp, const std::vector<optim::ParamGroup>& groups,
             const ZeroOptions& options);
  // DDP's parameters in one group.
  static std::vector<optim::ParamGroup> all_params(DistributedDataParallel& ddp);

  // The groups of segments the optimizer is built over: one per given group, in order, each
  // with that group's options (a group may have no segment on this rank).
  const std::vector<optim::ParamGroup>& segment_groups() const { return groups_; }
  const std::vector<Segment>& segments() const { return segments_; }
  const ZeroOptions& options() const { return o_; }
  // Points each segment's gradient at its reduced block in DDP's buckets.
  void attach(optim::Optimizer& opt) const;
  // sqrt of the sum over ranks of the squares of this rank's segments' gradients: one
  // all-reduce of one number, which also makes an inf or nan on any rank everyone's.
  double grad_norm(const optim::Optimizer& opt) const;
  // All-gathers every bucket's parameters in place (this rank's block in, all blocks out).
  void gather_params();
  void wait_param_gather();

  // `s` (this rank's optimizer state) with the layout added: "shard.world", "shard.rank" and
  // "shard.range.<param>" (i64 [2]: start and length of the segment within the parameter).
  State with_layout(State s) const;
  // The state without those keys, once they are checked to be this rank's layout.
  State without_layout(const State& s) const;
  // This rank's state assembled from `saved_world` saved ranks' (read(r)): each segment's
  // master and moments copied from the saved segments that overlap it, steps checked to agree,
  // the step count and options from saved rank 0. `mine` is this optimizer's own state_dict,
  // for the keys that describe this rank's groups.
  State reshard(int saved_world, const std::function<State(int)>& read, const State& mine) const;

 private:
  DistributedDataParallel& ddp_;
  ZeroOptions o_;
  std::vector<optim::ParamGroup> groups_;
  std::vector<Segment> segments_;
};

// Algo is the optimizer that steps the segments (optim::AdamW, optim::Adam, optim::SGD); it is
// built with `defaults` (its options type) and the groups' own options, as it would be unsharded.
template <class Algo>
class DistributedOptimizer final : public Algo {
  static_assert(std::is_base_of_v<optim::Optimizer, Algo>, "DistributedOptimizer<Algo>: Algo must be an optimizer");

 public:
  template <class O>
    requires std::is_base_of_v<optim::OptimizerOptions, O>
  DistributedOptimizer(DistributedDataParallel& ddp, const std::vector<optim::ParamGroup>& groups,
                       const O& defaults, const ZeroOptions& options = ZeroOptions())
      : DistributedOptimizer(std::make_shared<ZeroShards>(ddp, groups, options), defaults) {}
  template <class O>
    requires std::is_base_of_v<optim::OptimizerOptions, O>
  DistributedOptimizer(DistributedDataParallel& ddp, const O& defaults, const ZeroOptions& options = ZeroOptions())
      : DistributedOptimizer(ddp, ZeroShards::all_params(ddp), defaults, options) {}

  // Steps this rank's segments (their state counted as optimizer_state in the memory ledger),
  // then gathers the parameters.
  void step(double grad_scale = 1.0) override {
    phase::Scope phase_scope(phase::Phase::optimizer);  // its gather's waits count as comm_wait
    shards_->wait_param_gather();  // a deferred gather of the last step, if nobody waited yet
    {
      memory::Scope tag(memory::Category::optimizer_state);
      Algo::step(grad_scale);
    }
    shards_->gather_params();
  }
  double grad_norm() const override { return shards_->grad_norm(*this); }
  void wait_param_gather() { shards_->wait_param_gather(); }

  bool sharded() const override { return true; }
  std::map<std::string, Tensor> state_dict() const override {
    shards_->wait_param_gather();  // a checkpoint saves the model beside it: make it whole
    return shards_->with_layout(Algo::state_dict());
  }
  void check_state_dict(const std::map<std::string, Tensor>& s) const override {
    Algo::check_state_dict(shards_->without_layout(s));
  }
  void load_state_dict(const std::map<std::string, Tensor>& s) override {
    Algo::load_state_dict(shards_->without_layout(s));
  }
  std::map<std::string, Tensor> reshard_state_dict(
      int saved_world, const std::function<std::map<std::string, Tensor>(int)>& read) const override {
    return shards_->reshard(saved_world, read, shards_->with_layout(Algo::state_dict()));
  }

  const ZeroShards& shards() const { return *shards_; }
  int stage() const { return shards_->options().stage(); }

 private:
  template <class O>
  DistributedOptimizer(std::shared_ptr<ZeroShards> s, const O& defaults)
      : Algo(s->segment_groups(), defaults), shards_(std::move(s)) {
    shards_->attach(*this);
  }
  std::shared_ptr<ZeroShards> shards_;
};

}  // namespace fathom::parallel

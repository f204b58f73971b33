#pragma once
// DistributedDataParallel: every rank holds the whole model, computes gradients on its shard of
// the batch, and DDP averages them across the group while backward is still running.
//
//   auto ddp = parallel::DistributedDataParallel(model, world);
//   Tensor loss = cross_entropy(ddp.forward(x), y);
//   loss.backward();          // buckets all-reduce as their gradients become ready
//   opt.step();               // p.grad() is the average over ranks when backward returns
//
// Gradients live in flat bucket buffers (dtype options.grad_dtype, f32 by default: the "main
// grad" of mixed precision). For a parameter of that dtype, p.grad() is a view into its bucket
// and backward accumulates straight into it. A bf16/f16 parameter's gradient is added into its
// f32 bucket slot by its hook, and once the buckets are reduced p.grad() is that f32 slot too:
// an optimizer steps the averaged main grad whether or not it was attach()ed.
// Buckets (about bucket_cap_mb, the first one smaller so communication starts early) hold
// parameters in reverse registration order at first, then, after the first step, in the order
// their gradients actually became ready on rank 0. Bucket k is launched as soon as all its
// gradients are ready and bucket k-1 was launched, so every rank issues the same collectives
// in the same order. docs/ddp.md has the design and the measurements.
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fathom/comm/compressor.h"
#include "fathom/comm/process_group.h"
#include "fathom/nn/module.h"
#include "fathom/nn/options.h"
#include "fathom/optim/optimizer.h"

namespace fathom::parallel {

// Chainable, as every options struct in Fathom: DDPOptions().bucket_cap_mb(4).overlap(false).
struct DDPOptions {
  FATHOM_ARG(double, bucket_cap_mb) = 25.0;
  FATHOM_ARG(double, first_bucket_cap_mb) = 1.0;
  // Parameters that get no gradient in a step are an error naming them, unless this is set:
  // then they count as zero gradients.
  FATHOM_ARG(bool, find_unused_parameters) = false;
  FATHOM_ARG(DType, grad_dtype) = DType::f32;
  FATHOM_ARG(std::shared_ptr<comm::Compressor>, compressor);  // null: plain average
  // false launches every bucket only after backward has finished: the un-overlapped baseline
  // that bench_ddp_overlap compares against (same buckets, same collectives, no hiding).
  FATHOM_ARG(bool, overlap) = true;
  // As PyTorch's: each forward that will synchronize gradients (grad mode on, not under
  // no_sync) first broadcasts the module's buffers (BatchNorm's running statistics) from rank 0,
  // one collective per buffer dtype, so every rank evaluates and saves the same statistics.
  // false leaves each rank's buffers its own (SyncBatchNorm keeps them equal by itself).
  FATHOM_ARG(bool, broadcast_buffers) = true;
};

struct BucketTiming {
  int bucket = 0;
  int64_t numel = 0;
  double ready_us = 0, launch_us = 0, done_us = 0;  // since the step's forward began
};

struct DDPStepStats {
  int64_t step = 0;
  uint64_t bytes_sent = 0;        // payload this rank gave to the collectives in this step
  uint64_t bytes_uncompressed = 0;  // what a plain f32 all-reduce of the gradients would send
  double backward_end_us = 0;     // when the last gradient became ready
  double sync_end_us = 0;         // when every bucket was reduced
  std::vector<BucketTiming> buckets;
};

class DistributedDataParallel {
 public:
  DistributedDataParallel(std::shared_ptr<nn::Module> module,
                          std::shared_ptr<comm::ProcessGroup> group, DDPOptions options = {});
  ~DistributedDataParallel();
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  // Runs the module's forward after prepare_forward().
  Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }
  // For modules whose forward takes other arguments: call this, then the module yourself.
  void prepare_forward();
  // Rank 0's buffers to every rank now (what broadcast_buffers does before a forward).
  void sync_buffers();

  nn::Module& module() { return *module_; }
  comm::ProcessGroup& group() { return *group_; }

  // Backward passes inside the guard accumulate gradients locally; the first one outside it
  // adds its gradients and synchronizes the sum (gradient accumulation).
  class NoSync {
   public:
    explicit NoSync(DistributedDataParallel& d) : d_(d), prev_(d.sync_enabled_) { d_.sync_enabled_ = false; }
    ~NoSync() { d_.sync_enabled_ = prev_; }
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DistributedDataParallel& d_;
    bool prev_;
  };
  NoSync no_sync() { return NoSync(*this); }

  // The optimizer reads the reduced gradients from the buckets directly (its grad source), not
  // through p.grad(). Optional: the results are the same. Re-applied when buckets are rebuilt.
  // Refused once a DistributedOptimizer shards this DDP (it reads its shards itself).
  void attach(optim::Optimizer& opt);

  // 0, or the ZeRO stage of the DistributedOptimizer that shards this DDP (docs/zero.md).
  int zero_stage() const { return zero_stage_; }

  const DDPStepStats& last_step() const { return stats_; }
  // Parameter names of each bucket, in launch order.
  std::vector<std::vector<std::string>> bucket_layout() const;

  // This rank's state for an exact resume (docs/checkpoint_state.md): what a fresh DDP built by
  // the same constructor would otherwise lose. Keys:
  //   "params"        i64, a hash of the parameter names (the indices below refer to them)
  //   "order"         i64 [P], parameter indices in bucket order (the layout learned from the
  //                   first step's gradient-ready order; the same on every rank)
  //   "rebuilt"       i64 0/1; before the rebuild, "ready_order" i64 [P] holds the order seen
  //   "step"          i64, synchronized steps taken (last_step().step)
  //   with a compressor: "compressor.step" i64 (its mask phase) and "residual.<param>" f32
  //   [numel] per parameter (error feedback, keyed by parameter so no bucket layout is implied).
  // Between steps only: after a backward under no_sync, whose gradients wait in the buckets
  // for a synchronized one, state_dict() refuses.
  nn::StateDict state_dict() const;
  // Every problem with `state` at once (missing and unexpected keys, shapes, dtypes, another
  // model or compression setting); changes nothing.
  void check_state_dict(const nn::StateDict& state) const;
  // check_state_dict, then rebuilds the buckets in the saved order and restores the steps and
  // residuals. No collective: every rank loads its own.
  void load_state_dict(const nn::StateDict& state);
  // For a resume on another number of ranks: this rank's state made from the saved ranks'
  // (read(r) returns saved rank r's state_dict(), r < saved_world, each read once). The layout
  // and steps are saved rank 0's (they agree across ranks); each parameter's residual is the
  // mean of the saved ranks' residuals, which keeps the mean residual over ranks (what error
  // feedback still owes the averaged gradient) as it was. Load the result with load_state_dict.
  nn::StateDict reshard_state_dict(int saved_world,
                                   const std::function<nn::StateDict(int)>& read) const;

 private:
  struct Param {
    std::string name;
    Tensor tensor;
    int bucket = -1;
    int64_t offset = 0;  // in the bucket buffer
    bool ready = false;
    bool stale = true;  // its slot holds last step's gradient: the next one overwrites, not adds
    int64_t hook = -1;
  };
  struct Bucket {
    std::vector<int> params;
    Tensor buffer;  // flat [numel rounded up to 4 (sharded: to 4 x world)], grad_dtype
    int64_t numel = 0;  // of buffer, which ZeRO-2 frees between steps
    int pending = 0;
    bool launched = false;
    comm::WorkPtr work;
    BucketTiming timing;
    // Sharded (ZeRO) only. The flat buffer the bucket's parameters live in, in the layout of
    // `buffer`, so the updated shards are all-gathered in place; its gather in flight.
    Tensor params_flat;
    comm::WorkPtr gather;
    Tensor grad_shard;  // ZeRO-2: this rank's block of the reduced buffer [numel / world]
  };

  friend class ZeroShards;  // parallel/zero_shards.cpp: the DistributedOptimizer's side
  void build_buckets(const std::vector<int>& order);
  // Called by ZeroShards: pads the buckets for `stage`, moves the parameters into flat buffers
  // and fixes the layout (no rebuild: that would move shards between ranks).
  void shard(int stage);
  std::vector<int> bucket_order() const;
  Tensor& grad_buffer(int bucket);  // allocates a ZeRO-2 bucket's buffer when it has none
  void release_grad_buffer(int bucket);  // ZeRO-2: once reduced, only the shard is kept
  void wait_param_gather();
  uint64_t reduced_bytes() const;
  void on_grad_ready(int index);
  void launch_ready_buckets();
  void finish_backward();
  void poll_completions();
  Tensor slot(const Param& p) const;
  double now_us() const;
  void write_trace();  // each bucket's spans into the timeline (core/trace.h) when it records

  std::shared_ptr<nn::Module> module_;
  std::shared_ptr<comm::ProcessGroup> group_;
  DDPOptions o_;
  std::vector<Param> params_;
  std::vector<Bucket> buckets_;
  int next_launch_ = 0;
  bool sync_enabled_ = true;
  bool reset_pending_ = true;   // the next backward starts from zero gradients
  bool prepared_ = false;       // prepare_forward ran since the last synchronized backward
  bool in_backward_ = false;    // a finish callback is queued for the running backward
  bool rebuilt_ = false;
  int zero_stage_ = 0;
  uint64_t bytes_at_start_ = 0;   // the group's all-reduce byte counter when the step began
  std::vector<int> ready_order_;  // first synchronized step: the order gradients came in
  optim::Optimizer* optimizer_ = nullptr;
  std::chrono::steady_clock::time_point step_start_;
  DDPStepStats stats_;
};

}  // namespace fathom::parallel

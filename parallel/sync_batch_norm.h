#pragma once
// SyncBatchNorm: batch norm whose training-mode statistics are those of the whole batch across
// the ranks of a group, as torch.nn.SyncBatchNorm. With a small batch per rank (detection,
// segmentation, many GPUs), per-rank statistics are noisy; these are the global ones.
//
//   auto model = parallel::convert_sync_batchnorm(nn::resnet50(), world);  // every BatchNorm2d
//   parallel::DistributedDataParallel ddp(model, world);
//
// Training forward: per channel, the sum over this rank's values (and their count) is
// all-reduced, giving the global mean; then the sum of squared deviations from it is
// all-reduced, giving the global (biased) variance. Two passes, because one pass of sum and
// sum of squares loses the variance to cancellation in f32 when |mean| >> std. The running
// statistics take the global mean and the global unbiased variance, the same on every rank.
// Backward is written out (no graph of small ops): with sums over the whole group, since every
// rank's loss reads every rank's input through the statistics, dx = scale * (dy - mean(dy) -
// xhat * mean(dy * xhat)); the two sums are one all-reduce of [2C]. Weight and bias get this
// rank's share of their gradient, which DDP then averages, as PyTorch's does.
// Eval mode normalises with the running statistics and communicates nothing.
//
// Every rank of the group must run every SyncBatchNorm forward and backward, in the same order.
#include <memory>

#include "fathom/comm/process_group.h"
#include "fathom/nn/batch_norm.h"
#include "fathom/nn/module.h"

namespace fathom::parallel {

class SyncBatchNorm : public nn::Module {
 public:
  // Fresh parameters and buffers, as BatchNorm2d(options) makes them.
  SyncBatchNorm(const nn::BatchNorm2dOptions& options, std::shared_ptr<comm::ProcessGroup> group);
  // Takes over bn's parameters and buffers: the same tensors, under the same names, so an
  // optimizer or checkpoint that holds them keeps working. The training flag is bn's.
  SyncBatchNorm(const nn::BatchNorm2d& bn, std::shared_ptr<comm::ProcessGroup> group);

  // x [N, C, ...] -> the same shape; C must be num_features.
  Tensor forward(const Tensor& x) override;
  void pretty_print(std::ostream& os) const override;

  comm::ProcessGroup& group() const { return *group_; }

  nn::BatchNorm2dOptions options;
  Tensor weight, bias;  // [C], undefined unless affine
  Tensor running_mean, running_var, num_batches_tracked;  // undefined unless track_running_stats

 private:
  void register_state();
  std::shared_ptr<comm::ProcessGroup> group_;
};

// Replaces every BatchNorm2d in module's tree by a SyncBatchNorm over `group` that holds the
// same tensors under the same names (torch.nn.SyncBatchNorm.convert_sync_batchnorm). Returns
// the module itself, or the new SyncBatchNorm when module is a BatchNorm2d. A BatchNorm2d
// whose parent cannot swap children (nn::Module::replace_module) is an error naming it.
std::shared_ptr<nn::Module> convert_sync_batchnorm(std::shared_ptr<nn::Module> module,
                                                   std::shared_ptr<comm::ProcessGroup> group);

}  // namespace fathom::parallel

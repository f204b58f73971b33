#include "fathom/parallel/sync_batch_norm.h"

#include <ostream>
#include <string>
#include <vector>

#include "fathom/autograd/ops.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"
#include "fathom/parallel/collective_ops.h"

namespace fathom::parallel {

SyncBatchNorm::SyncBatchNorm(const nn::BatchNorm2dOptions& opts,
                             std::shared_ptr<comm::ProcessGroup> group)
    : Module("SyncBatchNorm"), options(opts), group_(std::move(group)) {
  FATHOM_CHECK(group_ != nullptr, "SyncBatchNorm: the process group is null");
  FATHOM_CHECK(opts.num_features() > 0, "SyncBatchNorm: num_features ", opts.num_features(),
               " must be positive");
  int64_t c = opts.num_features();
  if (opts.affine()) {
    weight = ones({c});
    bias = zeros({c});
  }
  if (opts.track_running_stats()) {
    running_mean = zeros({c});
    running_var = ones({c});
    num_batches_tracked = zeros({}, DType::i64);
  }
  register_state();
}

SyncBatchNorm::SyncBatchNorm(const nn::BatchNorm2d& bn, std::shared_ptr<comm::ProcessGroup> group)
    : Module("SyncBatchNorm"), options(bn.options), group_(std::move(group)) {
  FATHOM_CHECK(group_ != nullptr, "SyncBatchNorm: the process group is null");
  weight = bn.weight;
  bias = bn.bias;
  running_mean = bn.running_mean;
  running_var = bn.running_var;
  num_batches_tracked = bn.num_batches_tracked;
  register_state();
  train(bn.is_training());
}

// BatchNorm2d's names and order, so state_dict keys do not change with the conversion.
void SyncBatchNorm::register_state() {
  if (weight.defined()) weight = register_parameter("weight", weight);
  if (bias.defined()) bias = register_parameter("bias", bias);
  if (running_mean.defined()) running_mean = register_buffer("running_mean", running_mean);
  if (running_var.defined()) running_var = register_buffer("running_var", running_var);
  if (num_batches_tracked.defined())
    num_batches_tracked = register_buffer("num_batches_tracked", num_batches_tracked);
}

Tensor SyncBatchNorm::forward(const Tensor& x) {
  const int64_t c = options.num_features();
  FATHOM_CHECK(x.dim() >= 2 && x.size(1) == c, "SyncBatchNorm::forward: expected [N, ", c,
               ", ...] (num_features ", c, "), got ", x.desc());
  bool use_batch_stats = is_training() || !running_mean.defined();
  if (!use_batch_stats)
    return batch_norm(x, weight, bias, running_mean, running_var, false, options.momentum(),
                      options.eps());

  Shape dims{0};  // every dim but the channels
  Shape bshape(size_t(x.dim()), 1);
  bshape[1] = c;
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  double local_count = double(x.numel() / c);
  // [C sums, count] in one collective; the count lets ranks hold batches of different sizes.
  Tensor packed = cat({sum(x, dims), full({1}, local_count, x.options())});
  Tensor global = all_reduce_sum(packed, group_);
  double count = global.narrow(0, c, 1).item<double>();
  FATHOM_CHECK(count > 1, "SyncBatchNorm::forward: expected more than 1 value per channel when "
               "training, got input ", x.desc(), " and ", count, " values over the group");
  Tensor mean = global.narrow(0, 0, c) / count;                 // [C]
  Tensor centred = x - mean.reshape(bshape);                    // [N, C, ...]
  Tensor var = all_reduce_sum(sum(centred * centred, dims), group_) / count;  // biased, [C]
  Tensor scale = rsqrt(var + options.eps());
  if (weight.defined()) scale = scale * weight;
  Tensor y = centred * scale.reshape(bshape);
  if (bias.defined()) y = y + bias.reshape(bshape);

  if (is_training() && running_mean.defined()) {
    NoGradGuard no_grad;
    double m = options.momentum();
    Tensor mean_d = mean.detach().to(running_mean.dtype());
    Tensor unbiased = (var.detach() * (count / (count - 1))).to(running_var.dtype());
    running_mean.copy_(running_mean * (1 - m) + mean_d * m);
    running_var.copy_(running_var * (1 - m) + unbiased * m);
    num_batches_tracked.copy_(num_batches_tracked + 1.0);
  }
  return y;
}

void SyncBatchNorm::pretty_print(std::ostream& os) const {
  os << "SyncBatchNorm(" << options.num_features() << ", eps=" << options.eps()
     << ", momentum=" << options.momentum() << ", affine=" << (options.affine() ? "true" : "false")
     << ", track_running_stats=" << (options.track_running_stats() ? "true" : "false")
     << ", group=" << group_->name() << ")";
}

namespace {
void convert_children(nn::Module& parent, const std::string& path,
                      const std::shared_ptr<comm::ProcessGroup>& group) {
  for (auto& [name, child] : parent.named_children()) {
    std::string child_path = path.empty() ? name : path + "." + name;
    if (auto bn = std::dynamic_pointer_cast<nn::BatchNorm2d>(child)) {
      try {
        parent.replace_module(name, std::make_shared<SyncBatchNorm>(*bn, group));
      } catch (const Error& e) {
        detail::fail("convert_sync_batchnorm: cannot replace the BatchNorm2d '", child_path, "': ", e.what());
      }
    } else {
      convert_children(*child, child_path, group);
    }
  }
}
}  // namespace

std::shared_ptr<nn::Module> convert_sync_batchnorm(std::shared_ptr<nn::Module> module,
                                                   std::shared_ptr<comm::ProcessGroup> group) {
  FATHOM_CHECK(module != nullptr, "convert_sync_batchnorm: the module is null");
  FATHOM_CHECK(group != nullptr, "convert_sync_batchnorm: the process group is null");
  if (auto bn = std::dynamic_pointer_cast<nn::BatchNorm2d>(module))
    return std::make_shared<SyncBatchNorm>(*bn, group);
  convert_children(*module, "", group);
  return module;
}

}  // namespace fathom::parallel

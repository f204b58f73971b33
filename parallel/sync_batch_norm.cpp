#include "fathom/parallel/sync_batch_norm.h"

#include <ostream>
#include <string>
#include <vector>

#include "fathom/autograd/node.h"
#include "fathom/autograd/ops.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/reduce.h"
#include "fathom/core/ops/shape.h"

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

namespace {
using ops::binary;
constexpr BinaryOp kAdd = BinaryOp::add, kSub = BinaryOp::sub, kMul = BinaryOp::mul,
                   kDiv = BinaryOp::div;

// The per-channel sums of `parts` (each [N, C, ...]) over every dim but 1, side by side in one
// fresh [k C] tensor, so one collective reduces them all.
Tensor channel_sums(const std::vector<Tensor>& parts, const Shape& dims) {
  std::vector<Tensor> sums;
  for (const Tensor& p : parts) sums.push_back(ops::sum(p, dims));
  return ops::cat(sums, 0);
}
}  // namespace

Tensor SyncBatchNorm::forward(const Tensor& x) {
  const int64_t c = options.num_features();
  FATHOM_CHECK(x.dim() >= 2 && x.size(1) == c, "SyncBatchNorm::forward: expected [N, ", c,
               ", ...] (num_features ", c, "), got ", x.desc());
  bool use_batch_stats = is_training() || !running_mean.defined();
  // The statistics and the count travel in x's dtype: in bf16/f16 neither the sums nor a count
  // past 256 would survive, so half precision is refused rather than silently imprecise.
  FATHOM_CHECK(!use_batch_stats || x.dtype() == DType::f32 || x.dtype() == DType::f64,
               "SyncBatchNorm::forward: training mode supports f32 and f64 inputs, got ", x.desc(),
               "; keep the norm layers in f32 (bf16/f16 statistics are not implemented)");
  if (!use_batch_stats)
    return batch_norm(x, weight, bias, running_mean, running_var, false, options.momentum(),
                      options.eps());

  Shape dims{0};  // every dim but the channels
  Shape bshape(size_t(x.dim()), 1);
  bshape[1] = c;
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  const double eps = options.eps();
  Tensor y, centred, scale, mean, var;  // scale = invstd * weight [C]
  double count = 0;
  {
    NoGradGuard no_grad;
    // [C sums, count] in one collective; the count lets ranks hold batches of different sizes.
    Tensor packed = ops::cat({ops::sum(x, dims), full({1}, double(x.numel() / c), x.options())}, 0);
    group_->allreduce(packed)->wait();
    count = ops::narrow(packed, 0, c, 1).item<double>();
    FATHOM_CHECK(count > 1, "SyncBatchNorm::forward: expected more than 1 value per channel when "
                 "training, got input ", x.desc(), " and ", count, " values over the group");
    mean = binary(kDiv, ops::narrow(packed, 0, 0, c), count);
    centred = binary(kSub, x, ops::reshape(mean, bshape));
    Tensor ss = channel_sums({binary(kMul, centred, centred)}, dims);
    group_->allreduce(ss)->wait();
    var = binary(kDiv, ss, count);  // biased
    scale = ops::unary(UnaryOp::rsqrt, binary(kAdd, var, eps));
    if (weight.defined()) scale = binary(kMul, scale, weight);
    y = binary(kMul, centred, ops::reshape(scale, bshape));
    if (bias.defined()) y = binary(kAdd, y, ops::reshape(bias, bshape));
    if (is_training() && running_mean.defined()) {
      double m = options.momentum();
      ops::mul_(running_mean, 1.0 - m);
      ops::add_(running_mean, ops::to(mean, running_mean.dtype()), m);
      ops::mul_(running_var, 1.0 - m);
      ops::add_(running_var, ops::to(binary(kMul, var, count / (count - 1)), running_var.dtype()), m);
      ops::fill_(num_batches_tracked, num_batches_tracked.item<double>() + 1);
    }
  }
  if (!autograd::needs_grad({x, weight, bias})) return y;
  // Backward, with sums over the whole group (every rank's loss reads every rank's x through
  // the statistics): dx = scale * (dy - mean(dy) - xhat * mean(dy * xhat)). The two means are
  // one all-reduce of [2C]; weight and bias get this rank's share, sum(dy * xhat) and sum(dy).
  // Whether x needs a gradient is the same on every rank (one model), so either all ranks
  // issue that collective or none does.
  bool need_x = autograd::needs_grad({x}), has_w = weight.defined(), has_b = bias.defined();
  auto group = group_;
  return autograd::record(
      "sync_batch_norm", {x, weight, bias}, y,
      [centred = autograd::saved(centred), scale, var, eps, count, dims, bshape, c, need_x, has_w,
       has_b, group](const autograd::Grads& g) -> autograd::Grads {
        const Tensor& dy = g[0];
        Tensor invstd = ops::unary(UnaryOp::rsqrt, binary(kAdd, var, eps));
        Tensor xhat = binary(kMul, centred, ops::reshape(invstd, bshape));
        Tensor sums = channel_sums({dy, binary(kMul, dy, xhat)}, dims);  // [sum dy, sum dy xhat]
        Tensor gw = has_w ? ops::clone(ops::narrow(sums, 0, c, c)) : Tensor();
        Tensor gb = has_b ? ops::clone(ops::narrow(sums, 0, 0, c)) : Tensor();
        Tensor gx;
        if (need_x) {
          group->allreduce(sums)->wait();
          Tensor a = binary(kDiv, ops::narrow(sums, 0, 0, c), count);
          Tensor b = binary(kDiv, ops::narrow(sums, 0, c, c), count);
          gx = binary(kSub, dy, ops::reshape(a, bshape));
          gx = binary(kSub, gx, binary(kMul, xhat, ops::reshape(b, bshape)));
          gx = binary(kMul, gx, ops::reshape(scale, bshape));
        }
        return {gx, gw, gb};
      });
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

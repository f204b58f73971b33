#include "fathom/nn/batch_norm.h"

#include <ostream>

#include "fathom/autograd/ops.h"
#include "fathom/core/ops/factory.h"

namespace fathom::nn {

BatchNorm2d::BatchNorm2d(const BatchNorm2dOptions& o) : Module("BatchNorm2d"), options(o) {
  FATHOM_CHECK(o.num_features() > 0, "BatchNorm2d: num_features ", o.num_features(),
               " must be positive");
  FATHOM_CHECK(o.eps() > 0 && o.momentum() >= 0 && o.momentum() <= 1, "BatchNorm2d: eps ",
               o.eps(), " must be > 0 and momentum ", o.momentum(), " in [0, 1]");
  int64_t C = o.num_features();
  if (o.affine()) {
    weight = register_parameter("weight", ones({C}));
    bias = register_parameter("bias", zeros({C}));
  }
  if (o.track_running_stats()) {
    running_mean = register_buffer("running_mean", zeros({C}));
    running_var = register_buffer("running_var", ones({C}));
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::i64));
  }
}

void BatchNorm2d::reset_running_stats() {
  if (!options.track_running_stats()) return;
  running_mean.fill_(0);
  running_var.fill_(1);
  num_batches_tracked.fill_(0);
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  FATHOM_CHECK(x.dim() == 4 && x.size(1) == options.num_features(), "BatchNorm2d: input ",
               x.desc(), " must be [N, ", options.num_features(), ", H, W]");
  // Without tracked statistics the buffers are undefined and eval mode uses the batch's too.
  if (is_training() && options.track_running_stats())
    num_batches_tracked.fill_(double(num_batches_tracked.item<int64_t>() + 1));
  return batch_norm(x, weight, bias, running_mean, running_var,
                    is_training() || !options.track_running_stats(), options.momentum(),
                    options.eps());
}

void BatchNorm2d::pretty_print(std::ostream& os) const {
  os << "BatchNorm2d(" << options.num_features() << ", eps=" << options.eps()
     << ", momentum=" << options.momentum() << ", affine=" << (options.affine() ? "true" : "false")
     << ", track_running_stats=" << (options.track_running_stats() ? "true" : "false") << ")";
}

}  // namespace fathom::nn

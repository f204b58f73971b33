#pragma once
#include "fathom/core/random.h"
#include "fathom/nn/module.h"
#include "fathom/nn/options.h"

namespace fathom::nn {

struct LinearOptions {
  LinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  FATHOM_ARG(int64_t, in_features);
  FATHOM_ARG(int64_t, out_features);
  FATHOM_ARG(bool, bias) = true;
};

// y = x @ weight^T + bias. weight [out, in], bias [out]. Initialised as PyTorch does: both
// uniform in +-1/sqrt(in) (kaiming_uniform with a = sqrt(5) gives that bound for the weight).
class Linear : public Module {
 public:
  explicit Linear(const LinearOptions& options, Generator* gen = nullptr);
  Linear(int64_t in_features, int64_t out_features, Generator* gen = nullptr)
      : Linear(LinearOptions(in_features, out_features), gen) {}
  Tensor forward(const Tensor& x) override;  // [..., in] -> [..., out]
  void pretty_print(std::ostream& os) const override;

  LinearOptions options;
  Tensor weight;
  Tensor bias;  // undefined when options.bias() is false
};

}  // namespace fathom::nn

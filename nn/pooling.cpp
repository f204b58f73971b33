#include "fathom/nn/pooling.h"

#include <ostream>

#include "fathom/autograd/ops.h"

namespace fathom::nn {

namespace {
std::ostream& operator<<(std::ostream& os, const Size2& s) {
  return os << "(" << s[0] << ", " << s[1] << ")";
}
// The stride as used (0 means the kernel), for printing.
Size2 effective(const Size2& stride, const Size2& kernel) {
  return {stride[0] ? stride[0] : kernel[0], stride[1] ? stride[1] : kernel[1]};
}
}  // namespace

Tensor MaxPool2d::forward(const Tensor& x) {
  return max_pool2d(x, options.kernel_size(), options.stride(), options.padding());
}

void MaxPool2d::pretty_print(std::ostream& os) const {
  os << "MaxPool2d(kernel_size=" << options.kernel_size()
     << ", stride=" << effective(options.stride(), options.kernel_size())
     << ", padding=" << options.padding() << ")";
}

Tensor AvgPool2d::forward(const Tensor& x) {
  return avg_pool2d(x, options.kernel_size(), options.stride(), options.padding(),
                    options.count_include_pad());
}

void AvgPool2d::pretty_print(std::ostream& os) const {
  os << "AvgPool2d(kernel_size=" << options.kernel_size()
     << ", stride=" << effective(options.stride(), options.kernel_size())
     << ", padding=" << options.padding()
     << ", count_include_pad=" << (options.count_include_pad() ? "true" : "false") << ")";
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return adaptive_avg_pool2d(x, output_size); }

void AdaptiveAvgPool2d::pretty_print(std::ostream& os) const {
  os << "AdaptiveAvgPool2d(output_size=" << output_size << ")";
}

Tensor Flatten::forward(const Tensor& x) { return flatten(x, start_dim, end_dim); }

void Flatten::pretty_print(std::ostream& os) const {
  os << "Flatten(start_dim=" << start_dim << ", end_dim=" << end_dim << ")";
}

}  // namespace fathom::nn

// Conv2d, BatchNorm2d and the pooling modules: PyTorch's parameter and buffer names, its
// initialisation bounds, printing, train/eval behaviour of batch norm, and forward against
// the functional ops.
#include <sstream>

#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {
std::vector<std::string> names(const nn::NamedTensors& nt) {
  std::vector<std::string> out;
  for (auto& [n, t] : nt) out.push_back(n);
  return out;
}
std::string printed(const nn::Module& m) {
  std::ostringstream os;
  m.pretty_print(os);
  return os.str();
}
}  // namespace

TEST_CASE("Conv2d: names, shapes, PyTorch's init bounds, printing", "[nn][conv]") {
  Generator g(1);
  nn::Conv2d c(nn::Conv2dOptions(8, 16, 3).stride(2).padding({1, 0}).groups(2), &g);
  CHECK(names(c.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(c.weight.shape() == Shape{16, 4, 3, 3});
  CHECK(c.bias.shape() == Shape{16});
  // kaiming_uniform(a = sqrt(5)) and the bias both give +-1/sqrt(fan_in), fan_in = 4 * 3 * 3.
  double bound = 1.0 / 6.0;
  for (const Tensor& t : {c.weight, c.bias}) {
    double lo = ops::amin(t).item<float>(), hi = ops::amax(t).item<float>();
    CHECK(lo >= -bound);
    CHECK(hi <= bound);
  }
  CHECK(ops::amax(c.weight).item<float>() > 0.9 * bound);  // 576 draws reach the edge
  Tensor x = uniform({2, 8, 9, 7}, -1, 1, kFloat32, &g);
  Tensor y = c.forward(x);
  CHECK(y.shape() == Shape{2, 16, 5, 3});
  expect_close(y, conv2d(x, c.weight, c.bias, {2, 2}, {1, 0}, {1, 1}, 2), 0, 0);
  CHECK(printed(c) == "Conv2d(8, 16, kernel_size=(3, 3), stride=(2, 2), padding=(1, 0), groups=2)");
  nn::Conv2d nb(nn::Conv2dOptions(1, 2, {3, 1}).bias(false).dilation(2));
  CHECK(!nb.bias.defined());
  CHECK(names(nb.named_parameters()) == std::vector<std::string>{"weight"});
  CHECK(printed(nb) == "Conv2d(1, 2, kernel_size=(3, 1), stride=(1, 1), dilation=(2, 2), bias=false)");
  CHECK_THROWS_WITH(nn::Conv2d(nn::Conv2dOptions(3, 4, 3).groups(2)), Catch::Contains("groups 2"));
}

TEST_CASE("BatchNorm2d: PyTorch's names, running statistics, train and eval", "[nn][conv]") {
  nn::BatchNorm2d bn(nn::BatchNorm2dOptions(3).momentum(0.5));
  CHECK(names(bn.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(names(bn.named_buffers()) ==
        std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"});
  CHECK(bn.num_batches_tracked.dtype() == kInt64);
  CHECK(printed(bn) == "BatchNorm2d(3, eps=1e-05, momentum=0.5, affine=true, track_running_stats=true)");
  Generator g(2);
  Tensor x = uniform({4, 3, 5, 5}, 1, 3, kFloat32, &g);
  Tensor y = bn.forward(x);
  // Training: normalised with the batch's statistics (weight 1, bias 0).
  Tensor m = y.mean({0, 2, 3});
  expect_close(m, std::vector<double>(3, 0.0), 0, 1e-5, "batch mean of y");
  CHECK(bn.num_batches_tracked.item<int64_t>() == 1);
  Tensor bm = x.mean({0, 2, 3});
  expect_close(bn.running_mean, ops::binary(BinaryOp::mul, bm, 0.5), 1e-6, 1e-6, "running_mean");
  // Eval: the running statistics, nothing updated.
  bn.eval();
  Tensor rm = bn.running_mean.clone(), rv = bn.running_var.clone();
  Tensor ye = bn.forward(x);
  expect_close(bn.running_mean, rm, 0, 0);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 1);
  expect_close(ye, batch_norm(x, bn.weight, bn.bias, rm, rv, false), 0, 0, "eval");
  // No tracking: batch statistics in both modes, no buffers.
  nn::BatchNorm2d nt(nn::BatchNorm2dOptions(3).track_running_stats(false).affine(false));
  CHECK(nt.named_buffers().empty());
  CHECK(nt.named_parameters().empty());
  nt.eval();
  expect_close(nt.forward(x), batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true), 0, 0);
  CHECK_THROWS_WITH(bn.forward(uniform({2, 4, 3, 3}, 0, 1)), Catch::Contains("BatchNorm2d"));
}

TEST_CASE("pooling modules and Flatten print and forward as the ops", "[nn][conv]") {
  Generator g(3);
  Tensor x = uniform({2, 3, 8, 6}, -1, 1, kFloat32, &g);
  nn::MaxPool2d mp(2);
  expect_close(mp.forward(x), max_pool2d(x, {2, 2}), 0, 0);
  CHECK(printed(mp) == "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))");
  nn::AvgPool2d ap(nn::AvgPool2dOptions(3).stride(2).padding(1).count_include_pad(false));
  expect_close(ap.forward(x), avg_pool2d(x, {3, 3}, {2, 2}, {1, 1}, false), 0, 0);
  CHECK(printed(ap) ==
        "AvgPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), count_include_pad=false)");
  nn::AdaptiveAvgPool2d aa(1);
  CHECK(aa.forward(x).shape() == Shape{2, 3, 1, 1});
  CHECK(printed(aa) == "AdaptiveAvgPool2d(output_size=(1, 1))");
  nn::Flatten f;
  CHECK(f.forward(x).shape() == Shape{2, 144});
  CHECK(printed(f) == "Flatten(start_dim=1, end_dim=-1)");
}

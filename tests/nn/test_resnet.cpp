// The ResNet builders: shapes, options, torchvision's initialisation, module swapping. Names and
// values against torchvision/PyTorch are in tests/reference/test_reference_resnet.cpp.
#include "testing.h"

#include <sstream>

#include "fathom/nn/batch_norm.h"
#include "fathom/nn/conv.h"
#include "fathom/nn/resnet.h"

using namespace fathom;
using namespace fathom::testing;

TEST_CASE("ResNet: output shapes for each depth, any input size down to 32x32, num_classes", "[resnet]") {
  NoGradGuard no_grad;
  Generator g(0);
  auto small = nn::resnet18(nn::ResNetOptions().num_classes(7), &g);
  CHECK(small->forward(randn({2, 3, 32, 32})).shape() == Shape{2, 7});
  CHECK(small->forward(randn({1, 3, 45, 37})).shape() == Shape{1, 7});  // odd sizes: floor, as torch
  auto deep = nn::resnet50(nn::ResNetOptions().num_classes(5), &g);
  deep->eval();
  CHECK(deep->forward(randn({1, 3, 64, 64})).shape() == Shape{1, 5});
  CHECK(deep->fc->weight.shape() == Shape{5, 2048});
  CHECK(nn::resnet34()->num_parameters() == 21797672);  // torchvision's counts
  CHECK(nn::resnet101()->num_parameters() == 44549160);
  CHECK(nn::resnet152()->num_parameters() == 60192808);
}

TEST_CASE("ResNet: bad options and inputs are clear errors", "[resnet]") {
  REQUIRE_THROWS_WITH(nn::resnet18(nn::ResNetOptions().num_classes(0)), Catch::Contains("num_classes 0"));
  REQUIRE_THROWS_WITH(nn::ResNet(nn::ResNetBlock::basic, {2, 0, 2, 2}), Catch::Contains("[2, 0, 2, 2]"));
  auto m = nn::resnet18();
  REQUIRE_THROWS_WITH(m->forward(randn({2, 1, 32, 32})), Catch::Contains("[2, 1, 32, 32]"));
}

TEST_CASE("ResNet: initialised as torchvision (kaiming_normal fan_out for convs, BN 1 and 0)", "[resnet]") {
  Generator g(3);
  auto m = nn::resnet50(nn::ResNetOptions(), &g);
  for (const auto& [name, p] : m->named_parameters()) {
    INFO(name);
    if (p.dim() == 4) {
      // kaiming_normal(fan_out, relu): std sqrt(2 / (out * kh * kw)); sampled, so loosely.
      double want = std::sqrt(2.0 / double(p.size(0) * p.size(2) * p.size(3)));
      if (p.numel() >= 4096) CHECK(stddev(p) == Approx(want).epsilon(0.05));
    } else if (name.starts_with("fc.")) {
      double bound = 1.0 / std::sqrt(2048.0);  // Linear's own: uniform in +-1/sqrt(in)
      CHECK(amax(abs(p)).item<double>() <= bound);
    } else if (name.ends_with(".weight") || name == "bn1.weight") {
      CHECK(amax(abs(p - 1.0)).item<double>() == 0.0);
    } else {
      CHECK(amax(abs(p)).item<double>() == 0.0);
    }
  }
  auto z = nn::resnet18(nn::ResNetOptions().zero_init_residual(true));
  auto params = z->named_parameters();
  for (const auto& [name, p] : params)
    if (name.ends_with(".bn2.weight")) CHECK(amax(abs(p)).item<double>() == 0.0);
  // zero_init_residual: every block starts as the identity (then relu), so layer1 passes its
  // (non-negative) input through unchanged.
  NoGradGuard no_grad;
  z->eval();
  Tensor h = relu(randn({1, 64, 8, 8}));
  expect_close(z->layer1->forward(h), h, 1e-6, 1e-6, "identity blocks");
}

TEST_CASE("ResNet: the same seed gives the same model, and train/eval reach every norm", "[resnet]") {
  Generator a(9), b(9);
  auto m1 = nn::resnet18(nn::ResNetOptions().num_classes(3), &a);
  auto m2 = nn::resnet18(nn::ResNetOptions().num_classes(3), &b);
  auto p1 = m1->named_parameters(), p2 = m2->named_parameters();
  for (size_t i = 0; i < p1.size(); ++i) CHECK(amax(abs(p1[i].second - p2[i].second)).item<double>() == 0.0);
  m1->eval();
  for (auto& [name, mod] : m1->named_modules()) CHECK_FALSE(mod->is_training());
}

TEST_CASE("ResNet blocks swap their members with replace_module, and refuse the wrong kind", "[resnet]") {
  auto m = nn::resnet18(nn::ResNetOptions().num_classes(3));
  auto block = m->layer1->at<nn::BasicBlock>(0);
  auto fresh = std::make_shared<nn::BatchNorm2d>(nn::BatchNorm2dOptions(64));
  block->replace_module("bn1", fresh);
  CHECK(block->bn1 == fresh);
  CHECK(block->named_children()[1].second == fresh);  // the registered tree follows
  REQUIRE_THROWS_WITH(block->replace_module("conv1", fresh), Catch::Contains("must stay a Conv2d"));
  REQUIRE_THROWS_WITH(block->replace_module("nothing", fresh), Catch::Contains("no child named 'nothing'"));
  m->replace_module("layer2", std::make_shared<nn::Sequential>());
  CHECK(m->layer2->empty());
  // A plain Module cannot know which of its members call the child: it refuses.
  nn::Module plain("Plain");
  plain.register_module("bn", std::make_shared<nn::BatchNorm2d>(nn::BatchNorm2dOptions(2)));
  REQUIRE_THROWS_WITH(plain.replace_module("bn", fresh), Catch::Contains("override replace_module"));
  nn::Sequential seq(std::make_shared<nn::ReLU>());
  seq.replace_module("0", fresh);
  CHECK(seq[0] == fresh);
  REQUIRE_THROWS_WITH(seq.replace_module("1", fresh), Catch::Contains("no child named '1'"));
}

TEST_CASE("ResNet prints as torchvision's tree", "[resnet]") {
  std::ostringstream os;
  os << *nn::resnet18(nn::ResNetOptions().num_classes(3));
  std::string s = os.str();
  INFO(s.substr(0, 2000));
  CHECK_THAT(s, Catch::StartsWith("ResNet(\n  (conv1): Conv2d(3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=false)\n"
                                  "  (bn1): BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true)\n"
                                  "  (relu): ReLU()\n"
                                  "  (maxpool): MaxPool2d("));
  CHECK_THAT(s, Catch::Contains("    (0): BasicBlock(\n      (conv1): Conv2d(64, 128, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=false)\n"));
  CHECK_THAT(s, Catch::Contains("      (downsample): Sequential(\n        (0): Conv2d(64, 128, kernel_size=(1, 1), stride=(2, 2), bias=false)\n"));
  CHECK_THAT(s, Catch::EndsWith("  (avgpool): AdaptiveAvgPool2d(output_size=(1, 1))\n  (fc): Linear(in_features=512, out_features=3, bias=true)\n)"));
}

#include "fathom/nn/resnet.h"

#include "fathom/autograd/ops.h"
#include "fathom/nn/activation.h"
#include "fathom/nn/batch_norm.h"
#include "fathom/nn/conv.h"
#include "fathom/nn/init.h"
#include "fathom/nn/linear.h"
#include "fathom/nn/pooling.h"

namespace fathom::nn {

namespace {

// torchvision's conv3x3 / conv1x1: no bias (a BN follows), padding keeps the size at stride 1.
std::shared_ptr<Conv2d> conv3x3(int64_t in, int64_t out, int64_t stride, Generator* gen) {
  auto c = std::make_shared<Conv2d>(Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false), gen);
  init::kaiming_normal_(c->weight, 0.0, init::FanMode::fan_out, init::Nonlinearity::relu, gen);
  return c;
}
std::shared_ptr<Conv2d> conv1x1(int64_t in, int64_t out, int64_t stride, Generator* gen) {
  auto c = std::make_shared<Conv2d>(Conv2dOptions(in, out, 1).stride(stride).bias(false), gen);
  init::kaiming_normal_(c->weight, 0.0, init::FanMode::fan_out, init::Nonlinearity::relu, gen);
  return c;
}
// BatchNorm2d starts at weight 1, bias 0, mean 0, var 1 already (torchvision sets the same).
std::shared_ptr<Module> norm(int64_t channels) {
  return std::make_shared<BatchNorm2d>(BatchNorm2dOptions(channels));
}

// Sets `member` when `name` is the child it mirrors; true when it was.
template <class M>
bool swap_member(const std::string& name, const char* member_name, std::shared_ptr<M>& member,
                 const std::shared_ptr<Module>& module, const std::string& owner) {
  if (name != member_name) return false;
  if constexpr (std::is_same_v<M, Module>) {
    member = module;
  } else {
    auto typed = std::dynamic_pointer_cast<M>(module);
    FATHOM_CHECK(typed, owner, "::replace_module: '", name, "' must stay a ",
                 member ? member->type_name() : std::string("module of its kind"), ", got a ",
                 module->type_name());
    member = typed;
  }
  return true;
}

// "relu" is registered (the tree prints as torchvision's) but forward applies relu() itself,
// three times with different inputs: swapping the module would change nothing, so it is refused.
void check_known(bool known, const std::string& name, const std::string& owner) {
  FATHOM_CHECK(name != "relu", owner, "::replace_module: 'relu' cannot be replaced (forward calls "
               "relu() itself, not the module)");
  FATHOM_CHECK(known, owner, "::replace_module: no child named '", name, "'");
}

}  // namespace

BasicBlock::BasicBlock(int64_t inplanes, int64_t planes, int64_t stride,
                       std::shared_ptr<Sequential> ds, Generator* gen)
    : Module("BasicBlock") {
  conv1 = register_module("conv1", conv3x3(inplanes, planes, stride, gen));
  bn1 = register_module("bn1", norm(planes));
  register_module("relu", std::make_shared<ReLU>());
  conv2 = register_module("conv2", conv3x3(planes, planes, 1, gen));
  bn2 = register_module("bn2", norm(planes));
  if (ds) downsample = register_module("downsample", std::move(ds));
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor out = relu(bn1->forward(conv1->forward(x)));
  out = bn2->forward(conv2->forward(out));
  return relu(out + (downsample ? downsample->forward(x) : x));
}

void BasicBlock::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  FATHOM_CHECK(m != nullptr, "BasicBlock::replace_module: the module for '", name, "' is null");
  bool known = swap_member(name, "bn1", bn1, m, type_name()) || swap_member(name, "bn2", bn2, m, type_name()) ||
               swap_member(name, "conv1", conv1, m, type_name()) ||
               swap_member(name, "conv2", conv2, m, type_name()) ||
               swap_member(name, "downsample", downsample, m, type_name());
  check_known(known, name, type_name());
  replace_child(name, std::move(m));
}

Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride,
                       std::shared_ptr<Sequential> ds, Generator* gen)
    : Module("Bottleneck") {
  conv1 = register_module("conv1", conv1x1(inplanes, planes, 1, gen));
  bn1 = register_module("bn1", norm(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes, stride, gen));
  bn2 = register_module("bn2", norm(planes));
  conv3 = register_module("conv3", conv1x1(planes, planes * kExpansion, 1, gen));
  bn3 = register_module("bn3", norm(planes * kExpansion));
  register_module("relu", std::make_shared<ReLU>());
  if (ds) downsample = register_module("downsample", std::move(ds));
}

Tensor Bottleneck::forward(const Tensor& x) {
  Tensor out = relu(bn1->forward(conv1->forward(x)));
  out = relu(bn2->forward(conv2->forward(out)));
  out = bn3->forward(conv3->forward(out));
  return relu(out + (downsample ? downsample->forward(x) : x));
}

void Bottleneck::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  FATHOM_CHECK(m != nullptr, "Bottleneck::replace_module: the module for '", name, "' is null");
  const std::string& t = type_name();
  bool known = swap_member(name, "bn1", bn1, m, t) || swap_member(name, "bn2", bn2, m, t) ||
               swap_member(name, "bn3", bn3, m, t) || swap_member(name, "conv1", conv1, m, t) ||
               swap_member(name, "conv2", conv2, m, t) || swap_member(name, "conv3", conv3, m, t) ||
               swap_member(name, "downsample", downsample, m, t);
  check_known(known, name, t);
  replace_child(name, std::move(m));
}

ResNet::ResNet(ResNetBlock block, std::array<int64_t, 4> layers, const ResNetOptions& opts,
               Generator* gen)
    : Module("ResNet"), options(opts) {
  FATHOM_CHECK(opts.num_classes() > 0, "ResNet: num_classes ", opts.num_classes(), " must be positive");
  for (int64_t n : layers)
    FATHOM_CHECK(n > 0, "ResNet: every layer needs at least one block, got [", layers[0], ", ",
                 layers[1], ", ", layers[2], ", ", layers[3], "]");
  conv1 = register_module("conv1", std::make_shared<Conv2d>(
                                       Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false), gen));
  init::kaiming_normal_(conv1->weight, 0.0, init::FanMode::fan_out, init::Nonlinearity::relu, gen);
  bn1 = register_module("bn1", norm(64));
  register_module("relu", std::make_shared<ReLU>());
  maxpool = register_module("maxpool", std::make_shared<MaxPool2d>(MaxPool2dOptions(3).stride(2).padding(1)));
  layer1 = register_module("layer1", make_layer(block, 64, layers[0], 1, gen));
  layer2 = register_module("layer2", make_layer(block, 128, layers[1], 2, gen));
  layer3 = register_module("layer3", make_layer(block, 256, layers[2], 2, gen));
  layer4 = register_module("layer4", make_layer(block, 512, layers[3], 2, gen));
  avgpool = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(Size2(1)));
  fc = register_module("fc", std::make_shared<Linear>(LinearOptions(inplanes_, opts.num_classes()), gen));
  if (opts.zero_init_residual()) {
    NoGradGuard no_grad;
    for (auto& [name, t] : named_parameters()) {
      bool last_bn = name.ends_with(block == ResNetBlock::basic ? ".bn2.weight" : ".bn3.weight");
      if (name.starts_with("layer") && last_bn) t.zero_();
    }
  }
}

std::shared_ptr<Sequential> ResNet::make_layer(ResNetBlock block, int64_t planes, int64_t blocks,
                                               int64_t stride, Generator* gen) {
  int64_t expansion = block == ResNetBlock::basic ? BasicBlock::kExpansion : Bottleneck::kExpansion;
  auto make = [&](int64_t in, int64_t s, std::shared_ptr<Sequential> ds) -> std::shared_ptr<Module> {
    if (block == ResNetBlock::basic) return std::make_shared<BasicBlock>(in, planes, s, std::move(ds), gen);
    return std::make_shared<Bottleneck>(in, planes, s, std::move(ds), gen);
  };
  std::shared_ptr<Sequential> ds;
  if (stride != 1 || inplanes_ != planes * expansion) {
    ds = std::make_shared<Sequential>();
    ds->push_back(conv1x1(inplanes_, planes * expansion, stride, gen));
    ds->push_back(norm(planes * expansion));
  }
  auto layer = std::make_shared<Sequential>();
  layer->push_back(make(inplanes_, stride, ds));
  inplanes_ = planes * expansion;
  for (int64_t i = 1; i < blocks; ++i) layer->push_back(make(inplanes_, 1, nullptr));
  return layer;
}

Tensor ResNet::forward(const Tensor& x) {
  FATHOM_CHECK(x.dim() == 4 && x.size(1) == 3, "ResNet::forward: expected images [N, 3, H, W], got ",
               x.desc());
  Tensor h = relu(bn1->forward(conv1->forward(x)));
  h = maxpool->forward(h);
  h = layer4->forward(layer3->forward(layer2->forward(layer1->forward(h))));
  h = flatten(avgpool->forward(h), 1);
  return fc->forward(h);
}

void ResNet::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  FATHOM_CHECK(m != nullptr, "ResNet::replace_module: the module for '", name, "' is null");
  const std::string& t = type_name();
  bool known = swap_member(name, "bn1", bn1, m, t) || swap_member(name, "conv1", conv1, m, t) ||
               swap_member(name, "layer1", layer1, m, t) || swap_member(name, "layer2", layer2, m, t) ||
               swap_member(name, "layer3", layer3, m, t) || swap_member(name, "layer4", layer4, m, t) ||
               swap_member(name, "maxpool", maxpool, m, t) || swap_member(name, "avgpool", avgpool, m, t) ||
               swap_member(name, "fc", fc, m, t);
  check_known(known, name, t);
  replace_child(name, std::move(m));
}

std::shared_ptr<ResNet> resnet18(const ResNetOptions& o, Generator* g) {
  return std::make_shared<ResNet>(ResNetBlock::basic, std::array<int64_t, 4>{2, 2, 2, 2}, o, g);
}
std::shared_ptr<ResNet> resnet34(const ResNetOptions& o, Generator* g) {
  return std::make_shared<ResNet>(ResNetBlock::basic, std::array<int64_t, 4>{3, 4, 6, 3}, o, g);
}
std::shared_ptr<ResNet> resnet50(const ResNetOptions& o, Generator* g) {
  return std::make_shared<ResNet>(ResNetBlock::bottleneck, std::array<int64_t, 4>{3, 4, 6, 3}, o, g);
}
std::shared_ptr<ResNet> resnet101(const ResNetOptions& o, Generator* g) {
  return std::make_shared<ResNet>(ResNetBlock::bottleneck, std::array<int64_t, 4>{3, 4, 23, 3}, o, g);
}
std::shared_ptr<ResNet> resnet152(const ResNetOptions& o, Generator* g) {
  return std::make_shared<ResNet>(ResNetBlock::bottleneck, std::array<int64_t, 4>{3, 8, 36, 3}, o, g);
}

}  // namespace fathom::nn

#pragma once
// ResNet (He et al. 2015) as torchvision builds it, v1.5: a Bottleneck strides on its 3x3 conv.
//
//   auto model = nn::resnet50(nn::ResNetOptions().num_classes(10));
//   Tensor logits = model->forward(images);   // [N, 3, H, W] -> [N, num_classes]
//
// Parameter and buffer names are torchvision's state_dict keys, name for name (conv1.weight,
// bn1.running_mean, layer1.0.downsample.1.num_batches_tracked, fc.bias, ...), so its weights
// load through safetensors with no renaming (docs/resnet.md). Initialised as torchvision:
// convolutions kaiming_normal (fan_out, relu), batch norms weight 1 and bias 0, fc as Linear.
// The norm layers are held as plain Modules so parallel::convert_sync_batchnorm can swap them.
#include <array>
#include <memory>
#include <string>

#include "fathom/core/random.h"
#include "fathom/nn/module.h"
#include "fathom/nn/options.h"
#include "fathom/nn/sequential.h"

namespace fathom::nn {

class Conv2d;
class Linear;

struct ResNetOptions {
  FATHOM_ARG(int64_t, num_classes) = 1000;
  // torchvision's zero_init_residual: the last BN of every block starts with weight 0, so each
  // residual branch starts as zero and the block as the identity.
  FATHOM_ARG(bool, zero_init_residual) = false;
};

// Two 3x3 convs (resnet18/34). Children: conv1, bn1, conv2, bn2, downsample (when the shape
// changes: Sequential of a 1x1 conv and a BN, "downsample.0" and "downsample.1").
class BasicBlock : public Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Sequential> downsample,
             Generator* gen);
  Tensor forward(const Tensor& x) override;  // [N, inplanes, H, W] -> [N, planes, H/stride, W/stride]
  void replace_module(const std::string& name, std::shared_ptr<Module> module) override;

  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<Module> bn1, bn2;
  std::shared_ptr<Sequential> downsample;  // null when the block keeps its input's shape
};

// 1x1 -> 3x3 (strided) -> 1x1 expanding by 4 (resnet50/101/152). Children: conv1..3, bn1..3,
// downsample.
class Bottleneck : public Module {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Sequential> downsample,
             Generator* gen);
  Tensor forward(const Tensor& x) override;  // [N, inplanes, H, W] -> [N, 4 planes, H/stride, W/stride]
  void replace_module(const std::string& name, std::shared_ptr<Module> module) override;

  std::shared_ptr<Conv2d> conv1, conv2, conv3;
  std::shared_ptr<Module> bn1, bn2, bn3;
  std::shared_ptr<Sequential> downsample;
};

enum class ResNetBlock { basic, bottleneck };

// Stem (conv1 7x7/2, bn1, relu, maxpool 3x3/2), layer1..layer4 (Sequentials of blocks, widths
// 64, 128, 256, 512 times the block's expansion, strides 1, 2, 2, 2), avgpool to 1x1, fc.
class ResNet : public Module {
 public:
  ResNet(ResNetBlock block, std::array<int64_t, 4> layers, const ResNetOptions& options = {},
         Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;  // [N, 3, H, W] -> [N, num_classes]
  void replace_module(const std::string& name, std::shared_ptr<Module> module) override;

  ResNetOptions options;
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<Module> bn1;
  std::shared_ptr<Module> maxpool;
  std::shared_ptr<Sequential> layer1, layer2, layer3, layer4;
  std::shared_ptr<Module> avgpool;
  std::shared_ptr<Linear> fc;

 private:
  std::shared_ptr<Sequential> make_layer(ResNetBlock block, int64_t planes, int64_t blocks,
                                         int64_t stride, Generator* gen);
  int64_t inplanes_ = 64;
};

// The torchvision models by name: BasicBlock [2,2,2,2] and [3,4,6,3]; Bottleneck [3,4,6,3],
// [3,4,23,3] and [3,8,36,3]. resnet18 has 11,689,512 parameters, resnet50 25,557,032.
std::shared_ptr<ResNet> resnet18(const ResNetOptions& options = {}, Generator* gen = nullptr);
std::shared_ptr<ResNet> resnet34(const ResNetOptions& options = {}, Generator* gen = nullptr);
std::shared_ptr<ResNet> resnet50(const ResNetOptions& options = {}, Generator* gen = nullptr);
std::shared_ptr<ResNet> resnet101(const ResNetOptions& options = {}, Generator* gen = nullptr);
std::shared_ptr<ResNet> resnet152(const ResNetOptions& options = {}, Generator* gen = nullptr);

}  // namespace fathom::nn

// A ResNet's state_dict through safetensors: every key (num_batches_tracked, an i64 scalar,
// included) survives the round trip, and a strict load into a fresh model reproduces it, which
// is how torchvision's weights, saved by Python's safetensors under the same keys, are loaded.
#include "testing.h"

#include <unistd.h>

#include <filesystem>

#include "fathom/checkpoint/safetensors.h"
#include "fathom/nn/resnet.h"

using namespace fathom;

TEST_CASE("resnet18 state_dict round-trips through safetensors into a fresh model", "[checkpoint][resnet]") {
  namespace fs = std::filesystem;
  fs::path path = fs::temp_directory_path() / ("fathom_resnet_" + std::to_string(::getpid()) + ".safetensors");
  Generator g1(1), g2(2);
  auto trained = nn::resnet18(nn::ResNetOptions().num_classes(5), &g1);
  Tensor x = randn({2, 3, 32, 32}, kFloat32, &g1);
  trained->forward(x);  // train mode: running statistics and num_batches_tracked move
  checkpoint::save_safetensors(path.string(), trained->state_dict());
  auto loaded = checkpoint::load_safetensors(path.string());
  fs::remove(path);
  CHECK(loaded.size() == trained->state_dict().size());
  CHECK(loaded.at("layer4.1.bn2.num_batches_tracked").dtype() == DType::i64);
  CHECK(loaded.at("layer4.1.bn2.num_batches_tracked").item<double>() == 1.0);
  auto fresh = nn::resnet18(nn::ResNetOptions().num_classes(5), &g2);
  fresh->load_state_dict(loaded);  // strict
  trained->eval();
  fresh->eval();
  NoGradGuard no_grad;
  Tensor diff = amax(abs(fresh->forward(x) - trained->forward(x)));
  CHECK(diff.item<double>() == 0.0);
}

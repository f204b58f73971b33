// Fathom's ResNet against torchvision's: the state_dict keys of resnet18 and resnet50 (names,
// order, shapes, dtypes, which are buffers) and a resnet18 forward and backward in eval and in
// train mode against PyTorch's f64 values (scripts/torch_resnet_reference.py). No weights are
// checked in: both sides fill every tensor by the same formula (fill() here and there).
#include <cmath>
#include <fstream>
#include <sstream>

#include "reference_file.h"

using namespace fathom;
using fathom::reference::File;

namespace {

struct KeyLine {
  std::string kind, name, dtype;
  Shape shape;
};

// tests/reference/data/resnet_keys.txt: "MODEL param|buffer NAME DTYPE DIM..." and
// "MODEL count N", in torchvision's state_dict order.
std::vector<KeyLine> torchvision_keys(const std::string& model, int64_t& count) {
  std::ifstream in(std::string(FATHOM_REFERENCE_DIR) + "/resnet_keys.txt");
  REQUIRE(in);
  std::vector<KeyLine> out;
  count = -1;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ss(line);
    std::string m, kind;
    ss >> m >> kind;
    if (m != model) continue;
    if (kind == "count") {
      ss >> count;
      continue;
    }
    KeyLine k;
    k.kind = kind;
    ss >> k.name >> k.dtype;
    for (int64_t d; ss >> d;) k.shape.push_back(d);
    out.push_back(k);
  }
  return out;
}

void expect_torchvision_keys(nn::Module& model, const std::string& name) {
  INFO(name);
  int64_t count = 0;
  std::vector<KeyLine> keys = torchvision_keys(name, count);
  REQUIRE(!keys.empty());
  std::vector<std::string> want_p, want_b, got_p, got_b;
  for (const auto& k : keys) {
    std::ostringstream s;
    s << k.name << " " << k.dtype << " " << shape_str(k.shape);
    (k.kind == "param" ? want_p : want_b).push_back(s.str());
  }
  auto line = [](const std::string& n, const Tensor& t) {
    return n + " " + dtype_name(t.dtype()) + " " + shape_str(t.shape());
  };
  for (const auto& [n, t] : model.named_parameters()) got_p.push_back(line(n, t));
  for (const auto& [n, t] : model.named_buffers()) got_b.push_back(line(n, t));
  CHECK(got_p == want_p);
  CHECK(got_b == want_b);
  CHECK(model.num_parameters() == count);
}

// scripts/torch_resnet_reference.py's uniform_hash and fill(), the same integer and f64 steps
// (uint32 arithmetic wraps mod 2^32 as the script's "% 2**32").
double uniform_hash(uint64_t i, uint64_t h) {
  uint32_t r = uint32_t((i + 1 + h * 1000003) * 2654435761ull);
  r ^= r >> 15;
  r = r * 2246822519u;
  r ^= r >> 13;
  return double(r) / 2147483648.0 - 1.0;
}

Tensor fill(const std::string& name, const Shape& shape, DType dt) {
  uint64_t h = 0;
  for (size_t i = 0; i < name.size(); ++i) h += uint64_t(i + 1) * uint64_t(static_cast<unsigned char>(name[i]));
  h %= 9973;
  std::string leaf = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
  double scale = 0.1, offset = 0.0;
  if (leaf == "input") {
    scale = 1.0;
  } else if (shape.size() >= 2) {
    int64_t fan_in = 1;
    for (size_t d = 1; d < shape.size(); ++d) fan_in *= shape[d];
    scale = std::sqrt(6.0 / double(fan_in));
  } else if (leaf == "weight") {
    scale = 0.2, offset = 1.0;
  } else if (leaf == "running_var") {
    scale = 0.5, offset = 1.0;
  }
  std::vector<double> v(size_t(numel_of(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = double(float(offset + scale * uniform_hash(i, h)));
  return from_vector(v, shape, dt);
}

struct Tol {
  double rtol, scaled_atol;
};
void check(const Tensor& got, const File& ref, const std::string& name, Tol tol, DType dt) {
  double atol = tol.scaled_atol * reference::scale_of(ref.values(name));
  reference::expect_near(got, ref, name, tol.rtol, atol, dtype_name(dt));
}

}  // namespace

TEST_CASE("ResNet: state_dict keys, shapes and parameter counts are torchvision's", "[reference][resnet]") {
  expect_torchvision_keys(*nn::resnet18(), "resnet18");
  expect_torchvision_keys(*nn::resnet50(), "resnet50");
  CHECK(nn::resnet18()->num_parameters() == 11689512);
  CHECK(nn::resnet50()->num_parameters() == 25557032);
}

TEST_CASE("PyTorch reference: resnet18 forward and backward, eval and train mode", "[reference][resnet]") {
  File ref("resnet18");
  const std::vector<std::string> grads = {"fc.bias", "bn1.weight", "bn1.bias", "layer1.0.bn1.weight",
                                          "layer4.1.bn2.weight", "layer4.1.bn2.bias"};
  const std::vector<std::string> stats = {"bn1.running_mean", "bn1.running_var",
                                          "layer3.0.downsample.1.running_mean", "layer4.1.bn2.running_var"};
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    auto model = nn::resnet18(nn::ResNetOptions().num_classes(10));
    model->to(dt);
    nn::StateDict sd;
    for (const auto& [name, t] : model->state_dict())
      sd[name] = t.dtype() == DType::i64 ? t : fill(name, t.shape(), dt);
    model->load_state_dict(sd);
    Tensor target = ref.tensor("target");
    // f32: 20 conv/BN layers forward and again backward, each summing up to 4608 products,
    // and train-mode BN over only 8 values per channel in layer4, which divides by their spread:
    // errors seen up to ~7e-6 of a tensor's largest |value| (grad_input, bn1's gradients), so
    // 2e-5 of it; elements near zero are held to that, the rest to 2e-4 relative.
    // f64: PyTorch's and Fathom's orders of summation only (seen ~1e-11); grad_input is stored
    // as f32, so it is held to 1e-6.
    Tol tol = dt == DType::f64 ? Tol{1e-9, 1e-10} : Tol{2e-4, 2e-5};
    Tol tol_input = dt == DType::f64 ? Tol{1e-6, 1e-7} : Tol{2e-4, 2e-5};
    for (const char* mode : {"eval", "train"}) {
      INFO(mode);
      std::string m = mode;
      model->train(m == "train");
      model->zero_grad();
      Tensor x = fill("input", {2, 3, 48, 48}, dt).requires_grad_(true);
      Tensor logits = model->forward(x);
      Tensor loss = cross_entropy(logits, target);
      loss.backward();
      check(logits, ref, m + ".logits", tol, dt);
      check(loss, ref, m + ".loss", tol, dt);
      if (m == "train") check(x.grad(), ref, "train.grad_input", tol_input, dt);
      auto params = model->named_parameters();
      for (const auto& g : grads)
        for (const auto& [n, p] : params)
          if (n == g) check(p.grad(), ref, m + ".grad." + n, tol, dt);
    }
    for (const auto& s : stats)
      for (const auto& [n, b] : model->named_buffers())
        if (n == s) check(b, ref, "train." + n, tol, dt);
    for (const auto& [n, b] : model->named_buffers())
      if (n.ends_with("num_batches_tracked")) CHECK(b.item<double>() == 1.0);
  }
}

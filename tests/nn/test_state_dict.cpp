// state_dict / load_state_dict: names, shared storage, round trips, and every error.
#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {
// Parameters in a Sequential, a LayerNorm, and an integer buffer.
struct Model : nn::Module {
  explicit Model(Generator* g) : nn::Module("Model") {
    body = register_module("body", std::make_shared<nn::Sequential>(
        std::make_shared<nn::Linear>(3, 4, g), std::make_shared<nn::Tanh>(),
        std::make_shared<nn::Linear>(4, 2, g)));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(nn::LayerNormOptions(2)));
    steps = register_buffer("steps", zeros({1}, kInt64));
  }
  Tensor forward(const Tensor& x) override { return norm->forward(body->forward(x)); }
  std::shared_ptr<nn::Sequential> body;
  std::shared_ptr<nn::LayerNorm> norm;
  Tensor steps;
};

std::vector<std::string> keys(const nn::StateDict& sd) {
  std::vector<std::string> out;
  for (auto& [k, v] : sd) out.push_back(k);
  return out;
}
}  // namespace

TEST_CASE("state_dict: parameters and buffers by dotted name, sharing storage", "[nn][state]") {
  Generator g(81);
  Model m(&g);
  nn::StateDict sd = m.state_dict();
  CHECK(keys(sd) == std::vector<std::string>{"body.0.bias", "body.0.weight", "body.2.bias",
                                             "body.2.weight", "norm.bias", "norm.weight",
                                             "steps"});
  CHECK_FALSE(sd["body.0.weight"].requires_grad());
  CHECK(sd["body.0.weight"].impl().storage == m.body->at<nn::Linear>(0)->weight.impl().storage);
  ops::fill_(sd["norm.bias"], 0.5);  // a write through the state dict is a write into the model
  expect_close(m.norm->bias, {0.5, 0.5}, 0, 0);
}

TEST_CASE("load_state_dict: a fresh model gives identical outputs; handles see the values",
          "[nn][state]") {
  Generator g1(82), g2(83), gx(84);
  Model a(&g1), b(&g2);
  ops::fill_(a.steps, 7);
  ops::fill_(a.norm->weight, 1.5);
  Tensor x = randn({5, 3}, kFloat32, &gx);
  CHECK_FALSE(to_vector(a.forward(x)) == to_vector(b.forward(x)));
  Tensor held = b.parameters()[0];  // as an optimizer would hold it
  auto before = held.impl().storage;
  nn::LoadStateDictResult r = b.load_state_dict(a.state_dict());
  CHECK(r.missing_keys.empty());
  CHECK(r.unexpected_keys.empty());
  CHECK(to_vector(a.forward(x)) == to_vector(b.forward(x)));
  CHECK(held.impl().storage == before);  // copied in place, not swapped
  CHECK(to_vector(held) == to_vector(a.body->at<nn::Linear>(0)->weight));
  CHECK(b.steps.item<int64_t>() == 7);
  CHECK(held.requires_grad());
  CHECK(held.is_leaf());
  // A clone of the state dict (no shared storage) loads the same.
  nn::StateDict copy;
  for (auto& [k, v] : a.state_dict()) copy.emplace(k, ops::clone(v));
  Model c(&g2);
  c.load_state_dict(copy);
  CHECK(to_vector(c.forward(x)) == to_vector(a.forward(x)));
}

TEST_CASE("load_state_dict: every error at once, and nothing written on failure",
          "[nn][state]") {
  Generator g1(85), g2(86);
  Model a(&g1), b(&g2);
  std::vector<double> b_weight = to_vector(b.body->at<nn::Linear>(0)->weight);

  nn::StateDict missing = a.state_dict();
  missing.erase("body.2.weight");
  missing.erase("steps");
  CHECK_THROWS_WITH(b.load_state_dict(missing),
                    Catch::Contains("Model::load_state_dict: the state dict (5 tensors) does not "
                                    "fit this module (7 tensors)") &&
                        Catch::Contains("missing keys (2): 'body.2.weight' 'steps'") &&
                        Catch::Contains("pass strict = false"));

  nn::StateDict extra = a.state_dict();
  extra["head.weight"] = zeros({2});
  extra["body.9.bias"] = zeros({2});
  CHECK_THROWS_WITH(b.load_state_dict(extra),
                    Catch::Contains("unexpected keys (2): 'body.9.bias' 'head.weight'"));

  nn::StateDict shape = a.state_dict();
  shape["body.0.weight"] = zeros({3, 3});
  shape["norm.bias"] = zeros({2}, kFloat64);
  shape.erase("norm.weight");
  std::string all;
  try {
    b.load_state_dict(shape);
  } catch (const Error& e) {
    all = e.what();
  }
  CHECK_THAT(all, Catch::Contains("missing keys (1): 'norm.weight'"));
  CHECK_THAT(all, Catch::Contains("shape/dtype mismatches (2):"));
  CHECK_THAT(all, Catch::Contains("'body.0.weight': expected [4, 3] f32 cpu, got [3, 3] f32 cpu"));
  CHECK_THAT(all, Catch::Contains("'norm.bias': expected [2] f32 cpu, got [2] f64 cpu"));
  // Valid keys in a failing dict were not loaded.
  CHECK(to_vector(b.body->at<nn::Linear>(0)->weight) == b_weight);

  // Non-strict reports the keys, loads the rest, and still refuses a mismatch.
  nn::StateDict partial = a.state_dict();
  partial.erase("norm.weight");
  partial["other"] = zeros({1});
  nn::LoadStateDictResult r = b.load_state_dict(partial, /*strict=*/false);
  CHECK(r.missing_keys == std::vector<std::string>{"norm.weight"});
  CHECK(r.unexpected_keys == std::vector<std::string>{"other"});
  CHECK(to_vector(b.body->at<nn::Linear>(0)->weight) ==
        to_vector(a.body->at<nn::Linear>(0)->weight));
  nn::StateDict wrong = a.state_dict();
  wrong["steps"] = zeros({1}, kInt32);
  CHECK_THROWS_WITH(b.load_state_dict(wrong, false),
                    Catch::Contains("'steps': expected [1] i64 cpu, got [1] i32 cpu") &&
                        !Catch::Contains("pass strict = false"));
  wrong["steps"] = Tensor();
  CHECK_THROWS_WITH(b.load_state_dict(wrong), Catch::Contains("'steps': expected [1] i64 cpu, got an undefined tensor"));
}

TEST_CASE("load_state_dict: a CPU state dict into a CUDA model", "[nn][state][cuda]") {
  if (!has_cuda()) return;
  Generator g1(87), g2(88), gx(89);
  Model a(&g1), b(&g2);
  b.to(Device::cuda());
  Tensor held = b.parameters()[0];
  b.load_state_dict(a.state_dict());
  CHECK(held.is_cuda());
  Tensor x = randn({4, 3}, kFloat32, &gx);
  expect_close(b.forward(x.to(Device::cuda())), a.forward(x), 1e-5, 1e-6);
}

// GPT with activation recomputation (GPTConfig::recompute): selective and full give bitwise the
// loss and gradients of the plain model on the CPU, dropout included, keep fewer activations,
// and leave the random stream where the plain run leaves it.
#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

nn::GPTConfig config(nn::Recompute r, double dropout) {
  nn::GPTConfig c;
  c.vocab_size = 13;
  c.block_size = 8;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.dropout = dropout;
  c.recompute = r;
  return c;
}

struct Step {
  double loss;
  std::vector<std::pair<std::string, Tensor>> grads;
  uint64_t rng_offset;      // the default generator's, after the step
  int64_t activation_peak;  // bytes above the step's start (the ledger)
};

Step train_step(nn::Recompute r, double dropout, int steps = 1) {
  Generator init(71);
  auto model = std::make_shared<nn::GPT>(config(r, dropout), &init);
  Generator data(72);
  Tensor idx = ops::to(ops::to(uniform({3, 8}, 0, 13, kFloat32, &data), kInt64), Device::cpu());
  Tensor tgt = ops::to(ops::to(uniform({3, 8}, 0, 13, kFloat32, &data), kInt64), Device::cpu());
  manual_seed(5);  // dropout draws from the default generator
  Step s{};
  memory::reset_peak(DeviceType::CPU);
  int64_t base = memory::stats(DeviceType::CPU)[memory::Category::activations].current;
  for (int i = 0; i < steps; ++i) {
    Tensor loss = model->forward(idx, tgt);
    loss.backward();
    s.loss = loss.item<double>();
  }
  s.activation_peak = memory::stats(DeviceType::CPU)[memory::Category::activations].peak - base;
  s.rng_offset = default_generator().state().offset;
  for (auto& [n, p] : model->named_parameters()) s.grads.emplace_back(n, p.grad());
  return s;
}

void expect_same(const Step& got, const Step& want) {
  CHECK(got.loss == want.loss);
  CHECK(got.rng_offset == want.rng_offset);
  REQUIRE(got.grads.size() == want.grads.size());
  for (size_t i = 0; i < got.grads.size(); ++i) {
    INFO(want.grads[i].first);
    REQUIRE(got.grads[i].second.defined());
    CHECK(to_vector(got.grads[i].second) == to_vector(want.grads[i].second));
  }
}

}  // namespace

TEST_CASE("GPT recompute: selective and full give bitwise the plain gradients, dropout included",
          "[nn]") {
  for (double p : {0.0, 0.2}) {
    INFO("dropout " << p);
    Step plain = train_step(nn::Recompute::none, p);
    Step selective = train_step(nn::Recompute::selective, p);
    Step full = train_step(nn::Recompute::full, p);
    {
      INFO("selective");
      expect_same(selective, plain);
    }
    {
      INFO("full");
      expect_same(full, plain);
    }
    if (p > 0) CHECK(plain.rng_offset > 0);
    // What the graph keeps: full holds each block's input, selective drops attention's
    // [B, H, T, T] tensors; both below the plain model.
    CHECK(full.activation_peak < plain.activation_peak);
    CHECK(selective.activation_peak < plain.activation_peak);
  }
  // Two accumulating steps: the second backward adds into the first's gradients the same way.
  expect_same(train_step(nn::Recompute::full, 0.2, 2), train_step(nn::Recompute::none, 0.2, 2));
}

TEST_CASE("GPT recompute: eval and no-grad forwards are plain calls with the same logits", "[nn]") {
  Generator g1(81), g2(81), data(82);
  auto plain = std::make_shared<nn::GPT>(config(nn::Recompute::none, 0.1), &g1);
  auto full = std::make_shared<nn::GPT>(config(nn::Recompute::full, 0.1), &g2);
  Tensor idx = ops::to(ops::to(uniform({2, 8}, 0, 13, kFloat32, &data), kInt64), Device::cpu());
  plain->eval();
  full->eval();
  NoGradGuard off;
  Tensor a = plain->forward(idx), b = full->forward(idx);
  CHECK(!b.requires_grad());
  CHECK(to_vector(a) == to_vector(b));
}

TEST_CASE("GPT recompute: the option parses and names itself", "[nn]") {
  CHECK(nn::parse_recompute("selective") == nn::Recompute::selective);
  CHECK(std::string(nn::recompute_name(nn::Recompute::full)) == "full");
  CHECK_THROWS_WITH(nn::parse_recompute("some"), Catch::Contains("none, selective or full"));
}

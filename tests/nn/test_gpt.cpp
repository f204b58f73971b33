// Attention, the GPT block and model: shapes, names, weight tying, init, causality, gradients
// against finite differences, and sampling.
#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {
nn::GPTConfig tiny() {
  nn::GPTConfig c;
  c.vocab_size = 11;
  c.block_size = 6;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 8;
  c.dropout = 0.0;
  return c;
}

Tensor tokens(const Shape& shape, int64_t vocab, Generator& g) {
  std::vector<double> u = to_vector(rand(shape, kFloat64, &g));
  std::vector<int64_t> ids;
  for (double v : u) ids.push_back(int64_t(v * double(vocab)));
  return from_vector(ids, shape);
}

}  // namespace

TEST_CASE("GPT: logits shape, parameter names, tied weight listed once", "[nn]") {
  Generator g(61);
  auto model = std::make_shared<nn::GPT>(tiny(), &g);
  Tensor idx = tokens({3, 5}, 11, g);
  Tensor logits = model->forward(idx);
  CHECK(logits.shape() == Shape{3, 5, 11});

  std::vector<std::string> keys;
  for (auto& [n, p] : model->named_parameters()) keys.push_back(n);
  std::vector<std::string> want = {"wte.weight", "wpe.weight"};
  for (std::string b : {"blocks.0.", "blocks.1."})
    for (std::string p : {"ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias",
                          "attn.proj.weight", "attn.proj.bias", "ln2.weight", "ln2.bias",
                          "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias"})
      want.push_back(b + p);
  want.insert(want.end(), {"ln_f.weight", "ln_f.bias"});
  CHECK(keys == want);
  // The output projection is wte itself, not a copy, and is not listed a second time.
  int64_t C = 8, V = 11, T = 6, L = 2;
  int64_t per_block = 4 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C);
  CHECK(model->num_parameters() == V * C + T * C + L * per_block + 2 * C);
  CHECK(model->parameters()[0].is_same(model->wte->weight));

  // A loss at init is near log(V): the logits start small.
  Tensor loss = model->forward(idx, tokens({3, 5}, 11, g));
  CHECK(loss.shape() == Shape{});
  CHECK(std::fabs(loss.item<double>() - std::log(11.0)) < 0.2);
  loss.backward();
  for (auto& [n, p] : model->named_parameters()) {
    INFO(n);
    CHECK(p.grad().defined());
  }
  CHECK_THROWS_WITH(model->forward(tokens({1, 7}, 11, g)), Catch::Contains("exceeds block_size 6"));
  CHECK_THROWS_WITH(model->forward(ones({2, 3})), Catch::Contains("integer token ids"));
}

TEST_CASE("GPT init: GPT-2's scheme, reproducible from a seed", "[nn]") {
  nn::GPTConfig c = tiny();
  c.n_embd = 64;
  c.n_head = 4;
  c.vocab_size = 256;
  c.n_layer = 8;
  Generator g(62);
  nn::GPT model(c, &g);
  CHECK(std::fabs(stddev(model.wte->weight) - 0.02) < 0.002);
  auto& block = *model.blocks->at<nn::Block>(3);
  CHECK(std::fabs(stddev(block.mlp->fc->weight) - 0.02) < 0.002);
  double resid = 0.02 / std::sqrt(16.0);
  CHECK(std::fabs(stddev(block.attn->proj->weight) - resid) < 0.1 * resid);
  CHECK(std::fabs(stddev(block.mlp->proj->weight) - resid) < 0.1 * resid);
  CHECK(to_vector(block.attn->qkv->bias) == std::vector<double>(3 * 64, 0.0));
  CHECK(to_vector(block.ln1->weight) == std::vector<double>(64, 1.0));
  CHECK(to_vector(model.ln_f->bias) == std::vector<double>(64, 0.0));
  Generator g1(5), g2(5);
  nn::GPT a(tiny(), &g1), b(tiny(), &g2);
  auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i) CHECK(to_vector(pa[i]) == to_vector(pb[i]));
}

TEST_CASE("CausalSelfAttention: shape and causality", "[nn]") {
  Generator g(63);
  nn::CausalSelfAttention attn(tiny(), &g);
  CHECK(attn.named_parameters().size() == 4);
  Tensor x = randn({2, 5, 8}, kFloat64, &g);
  attn.to(kFloat64);
  Tensor y = attn.forward(x);
  CHECK(y.shape() == Shape{2, 5, 8});
  // Changing position 3 changes outputs at 3 and 4 only.
  Tensor x2 = ops::clone(x);
  ops::fill_(ops::select(x2, 1, 3), 5.0);
  std::vector<double> a = to_vector(y), b = to_vector(attn.forward(x2));
  for (int64_t bt = 0; bt < 2; ++bt)
    for (int64_t t = 0; t < 5; ++t) {
      double diff = 0;
      for (int64_t c = 0; c < 8; ++c) diff += std::fabs(a[(bt * 5 + t) * 8 + c] - b[(bt * 5 + t) * 8 + c]);
      INFO("batch " << bt << " position " << t);
      if (t < 3) CHECK(diff == 0.0);
      else CHECK(diff > 1e-6);
    }
  CHECK_THROWS_WITH(attn.forward(ones({2, 5, 7}, kFloat64)),
                    Catch::Contains("CausalSelfAttention: input [2, 5, 7] f64 cpu"));
}

TEST_CASE("GPT gradients match finite differences in f64 (tiny config)", "[nn]") {
  nn::GPTConfig c = tiny();
  c.n_layer = 1;
  c.vocab_size = 7;
  c.block_size = 4;
  Generator g(64);
  auto model = std::make_shared<nn::GPT>(c, &g);
  model->to(kFloat64);
  // Larger weights than GPT-2's 0.02 so every path carries a gradient well above the noise.
  {
    NoGradGuard no_grad;
    for (Tensor& p : model->parameters())
      if (p.dim() == 2) nn::init::normal_(p, 0.0, 0.5, &g);
  }
  Tensor idx = tokens({2, 4}, 7, g), targets = tokens({2, 4}, 7, g);
  auto r = autograd::gradcheck(
      [&](const std::vector<Tensor>&) { return model->forward(idx, targets); },
      model->parameters(), 1e-6, 1e-7, 1e-5);
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("GPT with dropout trains and evaluates deterministically", "[nn]") {
  nn::GPTConfig c = tiny();
  c.dropout = 0.2;
  Generator g(65);
  nn::GPT model(c, &g);
  Tensor idx = tokens({2, 6}, 11, g);
  manual_seed(3);
  Tensor t1 = model.forward(idx);
  manual_seed(3);
  Tensor t2 = model.forward(idx);
  CHECK(to_vector(t1) == to_vector(t2));
  Tensor t3 = model.forward(idx);
  CHECK_FALSE(to_vector(t1) == to_vector(t3));  // a fresh mask
  model.eval();
  CHECK(to_vector(model.forward(idx)) == to_vector(model.forward(idx)));
}

TEST_CASE("GPT::generate samples tokens, crops context, greedy at temperature 0", "[nn]") {
  Generator g(66);
  nn::GPT model(tiny(), &g);
  Tensor idx = tokens({2, 3}, 11, g);
  Generator s1(9), s2(9);
  Tensor out = model.generate(idx, 8, 1.0, &s1);  // 11 tokens > block_size 6: context is cropped
  CHECK(out.shape() == Shape{2, 11});
  CHECK(model.is_training());  // restored
  std::vector<double> v = to_vector(out);
  for (double t : v) CHECK((t >= 0 && t < 11));
  CHECK(to_vector(ops::narrow(out, 1, 0, 3)) == to_vector(idx));
  CHECK(to_vector(model.generate(idx, 8, 1.0, &s2)) == v);
  Tensor greedy = model.generate(idx, 1, 0.0);
  Tensor last = model.forward(idx).select(1, 2).argmax(-1);
  CHECK(to_vector(ops::select(greedy, 1, 3)) == to_vector(last));
  CHECK_THROWS_WITH(model.generate(idx, 1, -1.0), Catch::Contains("temperature must be >= 0"));
}

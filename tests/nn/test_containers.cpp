// Sequential (variadic, by value), ModuleList, ModuleDict, printing, activations.
#include <sstream>

#include "autograd/grad_helpers.h"
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
  os << m;
  return os.str();
}

// A composite module with members that alias its registered children.
struct TwoLinear : nn::Module {
  TwoLinear() : nn::Module("TwoLinear") {
    a = register_module("a", std::make_shared<nn::Linear>(8, 3));
    scale = register_parameter("scale", ones({3}));
  }
  Tensor forward(const Tensor& x) override { return a->forward(x) * scale; }
  std::shared_ptr<nn::Linear> a;
  Tensor scale;
};
}  // namespace

TEST_CASE("Sequential: variadic shared_ptrs, moved values, initializer_list", "[nn][container]") {
  auto seq = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 8),
                                              std::make_shared<nn::ReLU>(),
                                              std::make_shared<nn::Linear>(8, 2));
  CHECK(names(seq->named_parameters()) ==
        std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK(seq->forward(ones({3, 4})).shape() == Shape{3, 2});

  // Values are moved into shared_ptrs; the moved module's members still alias what is registered.
  auto byval = std::make_shared<nn::Sequential>(nn::Linear(4, 8), nn::SiLU(), TwoLinear());
  CHECK(byval->size() == 3);
  CHECK(names(byval->named_parameters()) ==
        std::vector<std::string>{"0.weight", "0.bias", "2.scale", "2.a.weight", "2.a.bias"});
  auto lin = byval->at<nn::Linear>(0);
  CHECK(lin->weight.is_same(byval->named_parameters()[0].second));
  auto pair = byval->at<TwoLinear>(2);
  CHECK(pair->a.get() == pair->named_children()[0].second.get());
  CHECK(pair->scale.is_same(pair->named_parameters(false)[0].second));
  byval->to(kFloat64);  // conversion reaches the members through the registered handles
  CHECK(lin->weight.dtype() == kFloat64);
  CHECK(pair->a->weight.dtype() == kFloat64);
  CHECK(byval->forward(ones({1, 4}, kFloat64)).shape() == Shape{1, 3});
  byval->push_back(nn::Tanh());
  CHECK((*byval)[3]->type_name() == "Tanh");
  int n = 0;
  for (const auto& m : *byval) n += m != nullptr;
  CHECK(n == 4);

  nn::Sequential list{std::make_shared<nn::Linear>(2, 2), std::make_shared<nn::ReLU>()};
  CHECK(list.size() == 2);
}

TEST_CASE("ModuleList and ModuleDict: names, access, iteration, errors", "[nn][container]") {
  nn::Module root("Root");
  auto layers = root.register_module("layers", std::make_shared<nn::ModuleList>());
  layers->push_back(std::make_shared<nn::Linear>(2, 3));
  layers->push_back(nn::Linear(nn::LinearOptions(3, 1).bias(false)));
  auto heads = root.register_module("heads", std::make_shared<nn::ModuleDict>());
  heads->insert("cls", std::make_shared<nn::Linear>(3, 5));
  heads->insert("reg", nn::Linear(3, 1));
  CHECK(names(root.named_parameters()) ==
        std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.1.weight",
                                 "heads.cls.weight", "heads.cls.bias", "heads.reg.weight",
                                 "heads.reg.bias"});
  CHECK(layers->size() == 2);
  CHECK(layers->at<nn::Linear>(1)->options.in_features() == 3);
  Tensor h = ones({4, 2});
  for (const auto& layer : *layers) h = layer->forward(h);
  CHECK(h.shape() == Shape{4, 1});
  CHECK_THROWS_WITH((*layers)[2], Catch::Contains("ModuleList: index 2 out of range for 2 modules"));
  CHECK_THROWS_WITH(layers->forward(h), Catch::Contains("ModuleList::forward(Tensor)"));

  CHECK(heads->size() == 2);
  CHECK(heads->contains("cls"));
  CHECK_FALSE(heads->contains("box"));
  CHECK(heads->keys() == std::vector<std::string>{"cls", "reg"});
  CHECK(heads->at<nn::Linear>("cls")->options.out_features() == 5);
  std::vector<std::string> order;
  for (const auto& [key, m] : *heads) order.push_back(key + ":" + m->type_name());
  CHECK(order == std::vector<std::string>{"cls:Linear", "reg:Linear"});
  CHECK_THROWS_WITH(heads->at("box"), Catch::Contains("ModuleDict::at: no module under key 'box' (keys: 'cls', 'reg')"));
  CHECK_THROWS_WITH(heads->insert("cls", nn::ReLU()), Catch::Contains("'cls' is already registered"));
  CHECK_THROWS_WITH(heads->insert("a.b", nn::ReLU()), Catch::Contains("'a.b' contains a dot"));
  nn::ModuleDict built({{"x", std::make_shared<nn::ReLU>()}, {"y", std::make_shared<nn::Tanh>()}});
  CHECK(built.keys() == std::vector<std::string>{"x", "y"});
}

TEST_CASE("printing a module: PyTorch's repr layout", "[nn][print]") {
  auto mlp = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(784, 512),
                                              std::make_shared<nn::ReLU>(),
                                              std::make_shared<nn::Linear>(512, 10, nullptr));
  CHECK(printed(*mlp) ==
        "Sequential(\n"
        "  (0): Linear(in_features=784, out_features=512, bias=true)\n"
        "  (1): ReLU()\n"
        "  (2): Linear(in_features=512, out_features=10, bias=true)\n"
        ")");

  nn::Module root("Net");
  root.register_module("emb", std::make_shared<nn::Embedding>(nn::EmbeddingOptions(10, 4)));
  root.register_module("body", std::make_shared<nn::Sequential>(
      nn::Linear(nn::LinearOptions(4, 4).bias(false)), nn::GELU(), nn::Dropout(0.1)));
  root.register_module("norm", std::make_shared<nn::LayerNorm>(nn::LayerNormOptions(4)));
  root.register_module("empty", std::make_shared<nn::ModuleList>());
  root.register_module("loss", std::make_shared<nn::CrossEntropyLoss>(
      nn::CrossEntropyLossOptions().label_smoothing(0.1)));
  CHECK(printed(root) ==
        "Net(\n"
        "  (emb): Embedding(num_embeddings=10, embedding_dim=4)\n"
        "  (body): Sequential(\n"
        "    (0): Linear(in_features=4, out_features=4, bias=false)\n"
        "    (1): GELU(approximate=tanh)\n"
        "    (2): Dropout(p=0.1)\n"
        "  )\n"
        "  (norm): LayerNorm([4], eps=1e-05, elementwise_affine=true)\n"
        "  (empty): ModuleList()\n"
        "  (loss): CrossEntropyLoss(reduction=mean, label_smoothing=0.1)\n"
        ")");

  nn::GPTConfig c;
  c.vocab_size = 11, c.block_size = 6, c.n_layer = 1, c.n_head = 2, c.n_embd = 8;
  std::string gpt = printed(nn::GPT(c));
  CHECK_THAT(gpt, Catch::StartsWith("GPT(\n  (wte): Embedding(num_embeddings=11, embedding_dim=8)\n"));
  CHECK_THAT(gpt, Catch::Contains(
      "  (blocks): Sequential(\n"
      "    (0): Block(\n"
      "      (ln1): LayerNorm([8], eps=1e-05, elementwise_affine=true)\n"
      "      (attn): CausalSelfAttention(\n"
      "        (qkv): Linear(in_features=8, out_features=24, bias=true)\n"));
  CHECK_THAT(gpt, Catch::EndsWith("  (ln_f): LayerNorm([8], eps=1e-05, elementwise_affine=true)\n)"));
}

TEST_CASE("Tanh, Sigmoid, SiLU: values and gradients", "[nn]") {
  std::vector<double> xs = {-2, -0.5, 0, 1.5};
  Tensor x = from_vector(xs, {4}, kFloat64);
  std::vector<double> th, sg, si;
  for (double v : xs) {
    th.push_back(std::tanh(v));
    sg.push_back(1 / (1 + std::exp(-v)));
    si.push_back(v / (1 + std::exp(-v)));
  }
  expect_close(nn::Tanh()(x), th, 1e-12, 1e-12);
  expect_close(nn::Sigmoid()(x), sg, 1e-12, 1e-12);
  expect_close(nn::SiLU()(x), si, 1e-12, 1e-12);
  Generator g(91);
  check_grad("silu", [](const std::vector<Tensor>& in) { return nn::functional::silu(in[0]); },
             {leaf({3, 4}, g, true, -3, 3)});
}

TEST_CASE("replace_module: containers swap a child in place; a plain Module refuses", "[nn]") {
  auto act = std::make_shared<nn::ReLU>();
  auto lin = std::make_shared<nn::Linear>(3, 3);
  nn::Sequential seq(std::make_shared<nn::Linear>(3, 3), act);
  seq.replace_module("0", lin);
  CHECK(seq[0] == lin);
  CHECK(seq.named_children()[0].second == lin);
  CHECK(seq.named_parameters()[0].second.is_same(lin->weight));
  Tensor x = randn({2, 3});
  expect_close(seq.forward(x), relu(lin->forward(x)), 0, 0, "forward runs the new child");
  REQUIRE_THROWS_WITH(seq.replace_module("2", lin), Catch::Contains("no child named '2'") && Catch::Contains("'0', '1'"));
  REQUIRE_THROWS_WITH(seq.replace_module("0", nullptr), Catch::Contains("null"));

  nn::ModuleDict dict({{"a", std::make_shared<nn::ReLU>()}});
  dict.replace_module("a", lin);
  CHECK(dict.at("a") == lin);

  // A module of its own may call the child through a member the base class cannot see.
  nn::Module plain("Plain");
  plain.register_module("child", std::make_shared<nn::ReLU>());
  REQUIRE_THROWS_WITH(plain.replace_module("child", lin),
                      Catch::Contains("Plain::replace_module('child', Linear)") &&
                          Catch::Contains("override replace_module"));
  CHECK(plain.named_children()[0].second->type_name() == "ReLU");  // unchanged
}

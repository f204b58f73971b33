// Module: registration and names, parameters and buffers, modes, conversion; the basic layers.
#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {
// A small two-level module with a parameter, a buffer and children.
struct Net : nn::Module {
  Net() : nn::Module("Net") {
    scale = register_parameter("scale", ones({2}));
    steps = register_buffer("steps", zeros({1}, kInt64));
    body = register_module("body", std::make_shared<nn::Sequential>(
        std::make_shared<nn::Linear>(3, 4), std::make_shared<nn::ReLU>(),
        std::make_shared<nn::Linear>(nn::LinearOptions(4, 2).bias(false))));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(nn::LayerNormOptions(2)));
  }
  Tensor forward(const Tensor& x) override { return norm->forward(body->forward(x)) * scale; }
  Tensor scale, steps;
  std::shared_ptr<nn::Sequential> body;
  std::shared_ptr<nn::LayerNorm> norm;
};

std::vector<std::string> names(const nn::NamedTensors& nt) {
  std::vector<std::string> out;
  for (auto& [n, t] : nt) out.push_back(n);
  return out;
}
}  // namespace

TEST_CASE("named_parameters: dotted names in registration order", "[nn]") {
  auto net = std::make_shared<Net>();
  CHECK(names(net->named_parameters()) ==
        std::vector<std::string>{"scale", "body.0.weight", "body.0.bias", "body.2.weight",
                                 "norm.weight", "norm.bias"});
  CHECK(names(net->named_parameters(false)) == std::vector<std::string>{"scale"});
  CHECK(names(net->named_buffers()) == std::vector<std::string>{"steps"});
  CHECK(net->parameters().size() == 6);
  CHECK(net->num_parameters() == 2 + 12 + 4 + 8 + 2 + 2);
  for (const Tensor& p : net->parameters()) {
    CHECK(p.requires_grad());
    CHECK(p.is_leaf());
  }
  CHECK_FALSE(net->buffers()[0].requires_grad());
  std::vector<std::string> mods;
  for (auto& [n, m] : net->named_modules()) mods.push_back(n + ":" + m->type_name());
  CHECK(mods == std::vector<std::string>{":Net", "body:Sequential", "body.0:Linear",
                                         "body.1:ReLU", "body.2:Linear", "norm:LayerNorm"});
  CHECK(net->body->at<nn::Linear>(2)->weight.shape() == Shape{2, 4});
  CHECK_THROWS_WITH(net->body->at<nn::Linear>(1), Catch::Contains("module 1 is a ReLU"));
}

TEST_CASE("registration refuses dotted, empty and duplicate names", "[nn]") {
  nn::Module m("Custom");
  CHECK_THROWS_WITH(m.register_parameter("layer.weight", ones({1})),
                    Catch::Contains("name 'layer.weight' contains a dot"));
  CHECK_THROWS_WITH(m.register_buffer("a.b", ones({1})), Catch::Contains("'a.b'"));
  CHECK_THROWS_WITH(m.register_module("x.y", std::make_shared<nn::ReLU>()),
                    Catch::Contains("'x.y'"));
  CHECK_THROWS_WITH(m.register_parameter("", ones({1})), Catch::Contains("must not be empty"));
  m.register_parameter("w", ones({1}));
  CHECK_THROWS_WITH(m.register_buffer("w", ones({1})), Catch::Contains("'w' is already registered"));
  Tensor x = ones({1}).requires_grad_();
  CHECK_THROWS_WITH(m.register_parameter("h", x * 2.0), Catch::Contains("has autograd history"));
  CHECK_THROWS_WITH(m.forward(ones({1})), Catch::Contains("Custom::forward(Tensor)"));
}

TEST_CASE("a tensor registered twice is listed once", "[nn]") {
  nn::Module m("Tied");
  Tensor w = ones({2, 2});
  auto a = m.register_module("a", std::make_shared<nn::Module>("A"));
  auto b = m.register_module("b", std::make_shared<nn::Module>("B"));
  a->register_parameter("w", w);
  b->register_parameter("w", w);
  CHECK(names(m.named_parameters()) == std::vector<std::string>{"a.w"});
}

TEST_CASE("train/eval, zero_grad, apply, to(dtype) in place", "[nn]") {
  auto net = std::make_shared<Net>();
  CHECK(net->is_training());
  net->eval();
  CHECK_FALSE(net->body->is_training());
  CHECK_FALSE((*net->body)[0]->is_training());
  net->train();
  CHECK((*net->body)[1]->is_training());

  Tensor loss = net->forward(ones({5, 3})).sum();
  loss.backward();
  for (const Tensor& p : net->parameters()) CHECK(p.grad().defined());
  net->zero_grad();
  for (const Tensor& p : net->parameters()) CHECK_FALSE(p.grad().defined());

  std::vector<std::string> visited;
  net->apply([&](nn::Module& m) { visited.push_back(m.type_name()); });
  CHECK(visited == std::vector<std::string>{"Linear", "ReLU", "Linear", "Sequential",
                                            "LayerNorm", "Net"});

  // Every handle follows the cast: the member, the list taken before, the parameter itself.
  Tensor before = net->parameters()[1];
  (net->forward(ones({1, 3})).sum()).backward();
  net->to(kFloat64);
  CHECK(before.dtype() == kFloat64);
  CHECK(before.grad().dtype() == kFloat64);
  CHECK(net->body->at<nn::Linear>(0)->weight.dtype() == kFloat64);
  CHECK(net->steps.dtype() == kInt64);  // integer buffers are not cast
  CHECK(before.requires_grad());
  Tensor y = net->forward(ones({2, 3}, kFloat64));
  CHECK(y.dtype() == kFloat64);
  y.sum().backward();
  CHECK(before.grad().dtype() == kFloat64);
  net->to(Device::cpu());  // a no-op here, but must keep everything intact
  CHECK(before.dtype() == kFloat64);
}

TEST_CASE("Linear: shapes, PyTorch init bound, forward and options", "[nn]") {
  Generator g(51);
  nn::Linear lin(nn::LinearOptions(16, 8), &g);
  CHECK(lin.weight.shape() == Shape{8, 16});
  CHECK(lin.bias.shape() == Shape{8});
  double bound = 1.0 / 4.0;
  for (double v : to_vector(lin.weight)) CHECK(std::fabs(v) <= bound);
  for (double v : to_vector(lin.bias)) CHECK(std::fabs(v) <= bound);
  Tensor x = randn({2, 5, 16}, kFloat32, &g);
  Tensor y = lin.forward(x);
  CHECK(y.shape() == Shape{2, 5, 8});
  Tensor want = ops::binary(BinaryOp::add, ops::matmul(x, ops::transpose(lin.weight, 0, 1)), lin.bias);
  expect_close(y, want, 1e-5, 1e-6);
  nn::Linear nob(nn::LinearOptions(3, 2).bias(false));
  CHECK_FALSE(nob.bias.defined());
  CHECK(nob.named_parameters().size() == 1);
  CHECK(nob.options.in_features() == 3);
  CHECK_THROWS_WITH(lin.forward(ones({2, 3})), Catch::Contains("linear: input [2, 3] f32 cpu"));
  // Same seed, same init.
  Generator g1(7), g2(7);
  nn::Linear l1(nn::LinearOptions(4, 4), &g1), l2(nn::LinearOptions(4, 4), &g2);
  CHECK(to_vector(l1.weight) == to_vector(l2.weight));
}

TEST_CASE("Embedding, LayerNorm, Dropout, ReLU, GELU", "[nn]") {
  Generator g(52);
  nn::Embedding emb(nn::EmbeddingOptions(10, 4), &g);
  Tensor ids = from_vector(std::vector<int64_t>{1, 9, 1}, {3});
  Tensor e = emb.forward(ids);
  CHECK(e.shape() == Shape{3, 4});
  expect_close(ops::select(e, 0, 0), ops::select(emb.weight, 0, 1), 0, 0);

  nn::LayerNorm ln(nn::LayerNormOptions(6));
  Tensor x = randn({4, 6}, kFloat32, &g);
  std::vector<double> y = to_vector(ln.forward(x));
  for (int r = 0; r < 4; ++r) {
    double m = 0, v = 0;
    for (int c = 0; c < 6; ++c) m += y[r * 6 + c] / 6;
    for (int c = 0; c < 6; ++c) v += (y[r * 6 + c] - m) * (y[r * 6 + c] - m) / 6;
    CHECK(std::fabs(m) < 1e-6);
    CHECK(std::fabs(v - 1) < 1e-4);
  }
  CHECK(nn::LayerNorm(nn::LayerNormOptions(6).elementwise_affine(false)).parameters().empty());
  CHECK_THROWS_WITH(ln.forward(ones({2, 5})), Catch::Contains("LayerNorm: input [2, 5]"));

  nn::Dropout drop(0.5, &g);
  Tensor ones_x = ones({1000});
  CHECK_FALSE(to_vector(drop.forward(ones_x)) == to_vector(ones_x));
  drop.eval();
  CHECK(drop.forward(ones_x).is_same(ones_x));
  CHECK_THROWS_WITH(nn::Dropout(2.0), Catch::Contains("Dropout: p must be in [0, 1], got 2"));

  Tensor z = from_vector(std::vector<double>{-1, 0.5}, {2}, kFloat64);
  expect_close(nn::ReLU().forward(z), {0, 0.5}, 0, 0);
  expect_close(nn::GELU().forward(z), to_vector(ops::unary(UnaryOp::gelu, z)), 0, 0);
}

TEST_CASE("a small MLP overfits a tiny batch with plain SGD", "[nn]") {
  Generator g(53);
  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 32, &g),
                                                std::make_shared<nn::ReLU>(),
                                                std::make_shared<nn::Linear>(32, 3, &g));
  Tensor x = randn({8, 4}, kFloat32, &g);
  Tensor y = from_vector(std::vector<int64_t>{0, 1, 2, 0, 1, 2, 2, 1}, {8});
  const double lr = 0.5;
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    Tensor loss = nn::functional::cross_entropy(model->forward(x), y);
    model->zero_grad();
    loss.backward();
    {
      NoGradGuard no_grad;
      for (Tensor& p : model->parameters()) ops::add_(p, p.grad(), -lr);  // p -= lr * grad
    }
    (step == 0 ? first : last) = loss.item<double>();
  }
  INFO("loss " << first << " -> " << last);
  CHECK(first > 0.5);
  CHECK(last < 0.01);
}

TEST_CASE("a module moved to CUDA trains like the same module on the CPU", "[nn][cuda]") {
  if (!has_cuda()) return;
  Generator g1(54), g2(54);
  nn::Linear cpu_lin(nn::LinearOptions(8, 4), &g1), gpu_lin(nn::LinearOptions(8, 4), &g2);
  gpu_lin.to(Device::cuda());
  CHECK(gpu_lin.weight.is_cuda());
  CHECK(gpu_lin.weight.requires_grad());
  Generator gx(55);
  Tensor x = randn({3, 8}, kFloat32, &gx);
  Tensor y = from_vector(std::vector<int64_t>{0, 3, 1}, {3});
  nn::functional::cross_entropy(cpu_lin.forward(x), y).backward();
  nn::functional::cross_entropy(gpu_lin.forward(x.to(Device::cuda())), y.to(Device::cuda())).backward();
  expect_close(gpu_lin.weight.grad(), cpu_lin.weight.grad(), 1e-4, 1e-5, "weight grad");
  expect_close(gpu_lin.bias.grad(), cpu_lin.bias.grad(), 1e-4, 1e-5, "bias grad");
}

// Activation recomputation (autograd/recompute.h) and autograd::grad: a recomputed region gives
// bitwise the gradients of the plain one (dropout included), against finite differences too;
// hooks fire once; grad mode off is a plain call; regions nest; a rerun that differs is an error.
#include "grad_helpers.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

// Bitwise equality of two tensors' values (CPU, same dtype).
void expect_bitwise(const Tensor& a, const Tensor& b, const std::string& what) {
  INFO(what);
  REQUIRE(a.defined());
  REQUIRE(b.defined());
  REQUIRE(a.shape() == b.shape());
  std::vector<double> x = to_vector(a), y = to_vector(b);
  int64_t bad = 0;
  for (size_t i = 0; i < x.size(); ++i) bad += x[i] != y[i];
  CHECK(bad == 0);
}

// tanh(x @ w1 + b1) with dropout, then @ w2: the region reads x (an input) and w1, b1, w2
// (closed over: the parameters a module would hold).
struct Params {
  Tensor w1, b1, w2;
  explicit Params(uint64_t seed) {
    Generator g(seed);
    w1 = uniform({6, 5}, -1, 1, kFloat32, &g).requires_grad_();
    b1 = uniform({5}, -1, 1, kFloat32, &g).requires_grad_();
    w2 = uniform({5, 3}, -1, 1, kFloat32, &g).requires_grad_();
  }
  Tensor body(const Tensor& x, Generator* drop) const {
    return matmul(dropout(tanh(matmul(x, w1) + b1), 0.4, true, drop), w2);
  }
};

}  // namespace

TEST_CASE("recompute: gradients bitwise equal to the plain region, dropout included", "[autograd]") {
  Generator data(3);
  Tensor x0 = uniform({4, 6}, -1, 1, kFloat32, &data);
  auto run = [&](bool recomputed, Generator& drop) {
    Params p(11);
    Tensor x = x0.detach().requires_grad_();
    auto body = [&](const Tensor& in) { return p.body(in, &drop); };
    Tensor y = recomputed ? autograd::recompute("mlp", body, x) : body(x);
    Tensor loss = sum(y * y);
    loss.backward();
    return std::vector<Tensor>{loss, y.detach(), x.grad(), p.w1.grad(), p.b1.grad(), p.w2.grad()};
  };
  Generator g_plain(5), g_re(5);
  auto plain = run(false, g_plain);
  auto re = run(true, g_re);
  const char* names[] = {"loss", "y", "x.grad", "w1.grad", "b1.grad", "w2.grad"};
  for (size_t i = 0; i < plain.size(); ++i) expect_bitwise(re[i], plain[i], names[i]);
  // The replay put the generator back: the run's random stream is the plain run's.
  CHECK(g_re.state().offset == g_plain.state().offset);
  CHECK(g_re.state().offset > 0);
}

TEST_CASE("recompute: gradcheck through a region with dropout and a closed-over leaf", "[autograd]") {
  Generator g(21);
  Tensor x = leaf({3, 4}, g), w = leaf({4, 4}, g), v = leaf({4, 2}, g);
  // The region's inputs are x and w; v is read from outside, as a module's parameter would be.
  // Dropout's generator is reseeded by every evaluation, so each draws the same mask; it lives
  // outside f because the region's backward (after f returns) replays it.
  Generator drop(9);
  auto f = [&drop](const std::vector<Tensor>& in) {
    drop.manual_seed(9);
    Tensor vv = in[2];
    auto region = [vv, &drop](const std::vector<Tensor>& r) {
      Tensor h = dropout(sigmoid(matmul(r[0], r[1])), 0.3, true, &drop);
      return std::vector<Tensor>{matmul(h, vv), h};
    };
    std::vector<Tensor> out = autograd::recompute("region", region, {in[0], in[1]});
    return sum(out[0] * out[0]) + mean(out[1]);
  };
  check_grad("recompute(x, w) closing over v", f, {x, w, v});
}

TEST_CASE("recompute: a parameter's hook fires once per backward, after its gradient is final",
          "[autograd]") {
  Generator g(31);
  Tensor w = uniform({4, 4}, -1, 1, kFloat32, &g).requires_grad_();
  Tensor x0 = uniform({2, 4}, -1, 1, kFloat32, &g);
  // w is used in two recomputed regions and once outside them.
  auto forward = [&](bool re) {
    auto layer = [&](const Tensor& in) { return tanh(matmul(in, w)); };
    Tensor h = re ? autograd::recompute("l1", layer, x0) : layer(x0);
    h = re ? autograd::recompute("l2", layer, h) : layer(h);
    return sum(matmul(h, w));
  };
  forward(false).backward();
  Tensor want = w.grad().detach();
  w.zero_grad();
  int fired = 0;
  std::vector<double> seen;
  autograd::HookId id = autograd::register_post_accumulate_hook(w, [&](const Tensor& leaf) {
    ++fired;
    seen = to_vector(leaf.grad());
  });
  forward(true).backward();
  CHECK(fired == 1);
  CHECK(seen == to_vector(want));
  expect_bitwise(w.grad(), want, "w.grad");
  autograd::remove_hook(w, id);
}

TEST_CASE("recompute: grad mode off is a plain call; nothing to differentiate records nothing",
          "[autograd]") {
  Params p(41);
  Generator g1(7), g2(7);
  Tensor x = uniform({2, 6}, -1, 1, kFloat32, &g1);
  int calls = 0;
  auto body = [&](const Tensor& in) {
    ++calls;
    return p.body(in, &g2);
  };
  {
    NoGradGuard off;
    Tensor y = autograd::recompute("mlp", body, x);
    CHECK(calls == 1);
    CHECK(!y.requires_grad());
  }
  // Grad mode on, but no input or parameter needs a gradient: one run, no node.
  Tensor c = uniform({3}, 0, 1, kFloat32, &g1);
  Tensor y = autograd::recompute("const", [](const Tensor& in) { return in * 2.0; }, c);
  CHECK(!y.requires_grad());
  expect_bitwise(y, c * 2.0, "y");
}

TEST_CASE("recompute: nested regions and retain_graph give the plain gradients", "[autograd]") {
  Generator data(51);
  Tensor x0 = uniform({3, 6}, -1, 1, kFloat32, &data);
  auto run = [&](int mode, bool twice) {
    Params p(52);
    Generator drop(8);
    Tensor x = x0.detach().requires_grad_();
    auto inner = [&](const Tensor& in) { return p.body(in, &drop); };
    auto outer = [&](const Tensor& in) {
      Tensor h = mode == 0 ? inner(in) : autograd::recompute("inner", inner, in);
      return tanh(h) * 3.0;
    };
    Tensor y = mode == 0 ? outer(x) : autograd::recompute("outer", outer, x);
    Tensor loss = sum(y * y);
    loss.backward({}, twice);
    if (twice) loss.backward();
    return std::vector<Tensor>{x.grad(), p.w1.grad(), p.b1.grad(), p.w2.grad()};
  };
  for (bool twice : {false, true}) {
    auto plain = run(0, twice), nested = run(1, twice);
    for (size_t i = 0; i < plain.size(); ++i)
      expect_bitwise(nested[i], plain[i], std::string("grad ") + std::to_string(i) + (twice ? " retained" : ""));
  }
}

TEST_CASE("recompute: a rerun that reaches other tensors is an error naming the region; a freed one too",
          "[autograd]") {
  Generator g(61);
  Tensor a = uniform({3}, -1, 1, kFloat32, &g).requires_grad_();
  Tensor b = uniform({3}, -1, 1, kFloat32, &g).requires_grad_();
  int calls = 0;
  Tensor x = uniform({3}, -1, 1, kFloat32, &g).requires_grad_();
  Tensor y = autograd::recompute("fickle", [&](const Tensor& in) { return in * (calls++ == 0 ? a : b); }, x);
  CHECK_THROWS_WITH(sum(y).backward(), Catch::Contains("recompute fickle") && Catch::Contains("same thing twice"));

  Tensor z = autograd::recompute("once", [&](const Tensor& in) { return in * a; }, x);
  Tensor l = sum(z);
  l.backward();
  CHECK_THROWS_WITH(l.backward(), Catch::Contains("retain_graph"));
}

TEST_CASE("autograd::grad: gradients at edges without touching .grad or hooks", "[autograd]") {
  Generator g(71);
  Tensor w = uniform({3, 2}, -1, 1, kFloat32, &g).requires_grad_();
  Tensor x = uniform({4, 3}, -1, 1, kFloat32, &g).requires_grad_();
  Tensor h = tanh(matmul(x, w));
  Tensor loss = sum(h * h);
  int fired = 0;
  autograd::HookId id = autograd::register_post_accumulate_hook(w, [&](const Tensor&) { ++fired; });
  // At the leaf w, and at h (a non-leaf: the graph below it does not run).
  autograd::Grads at_w = autograd::grad({loss}, {}, {autograd::gradient_edge(w)}, true);
  autograd::Grads at_h = autograd::grad({loss}, {}, {autograd::gradient_edge(h)}, true);
  CHECK(fired == 0);
  CHECK(!w.grad().defined());
  CHECK(!x.grad().defined());
  expect_bitwise(at_h[0], h.detach() * 2.0, "dloss/dh");
  loss.backward();
  CHECK(fired == 1);
  expect_bitwise(at_w[0], w.grad(), "dloss/dw");
  autograd::remove_hook(w, id);
}

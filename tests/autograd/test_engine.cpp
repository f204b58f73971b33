// The backward engine: accumulation, shared subexpressions, retain_graph and freed graphs,
// grad mode, detach, hooks (once per leaf per pass, as soon as the leaf is final), deep graphs.
#include <thread>

#include "grad_helpers.h"

using namespace fathom;
using namespace fathom::testing;

namespace {
Tensor vec(std::vector<double> v) {
  int64_t n = int64_t(v.size());
  return from_vector(std::move(v), {n}, kFloat64);
}
}  // namespace

TEST_CASE("gradients accumulate over two backward passes; zero_grad drops them", "[autograd]") {
  Tensor x = vec({1, 2, 3}).requires_grad_();
  (x * x).sum().backward();
  expect_close(x.grad(), {2, 4, 6}, 0, 0);
  (x * x).sum().backward();
  expect_close(x.grad(), {4, 8, 12}, 0, 0);
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  (x * 3.0).sum().backward();
  expect_close(x.grad(), {3, 3, 3}, 0, 0);
}

TEST_CASE("a shared subexpression sums the gradients of its consumers", "[autograd]") {
  Tensor x = vec({0.5, -1}).requires_grad_();
  Tensor y = vec({2, 3}).requires_grad_();
  Tensor z = x * y;                         // used three times below
  Tensor out = (z * z + z + exp(z)).sum();  // d/dz = 2z + 1 + e^z
  out.backward();
  std::vector<double> gx, gy;
  for (auto [xv, yv] : {std::pair{0.5, 2.0}, std::pair{-1.0, 3.0}}) {
    double zv = xv * yv, dz = 2 * zv + 1 + std::exp(zv);
    gx.push_back(dz * yv);
    gy.push_back(dz * xv);
  }
  expect_close(x.grad(), gx, 1e-12, 1e-12);
  expect_close(y.grad(), gy, 1e-12, 1e-12);
  // The same leaf on both sides of an op (a diamond ending in one leaf).
  Tensor w = vec({3}).requires_grad_();
  (w * w * w).backward();
  expect_close(w.grad(), {27}, 1e-12, 0);
}

TEST_CASE("retain_graph keeps the graph; without it a second backward is an error", "[autograd]") {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor loss = (x * x).sum();
  loss.backward(Tensor(), /*retain_graph=*/true);
  loss.backward(Tensor(), true);
  expect_close(x.grad(), {4, 8}, 0, 0);
  loss.backward();  // frees it
  expect_close(x.grad(), {6, 12}, 0, 0);
  CHECK_THROWS_WITH(loss.backward(),
                    Catch::Contains("backward through a graph that was already freed; pass "
                                    "retain_graph=true to the first backward"));
  // A new graph over the same leaf is fine.
  (x * 2.0).sum().backward();
  expect_close(x.grad(), {8, 14}, 0, 0);
}

TEST_CASE("saved tensors are freed after backward unless the graph is retained", "[autograd]") {
  Tensor a = vec({1, 2}).requires_grad_(), b = vec({3, 4}).requires_grad_();
  auto refs = [&] { return a.impl().storage.use_count() + b.impl().storage.use_count(); };
  long before = refs();
  Tensor loss = (a * b).sum();  // mul saves a and b
  CHECK(refs() == before + 2);
  loss.backward(Tensor(), true);
  CHECK(refs() == before + 2);  // retained
  loss.backward();
  CHECK(refs() == before);      // freed
}

TEST_CASE("grad mode, requires_grad and detach", "[autograd]") {
  Tensor x = vec({1, 2}).requires_grad_();
  CHECK(x.requires_grad());
  CHECK(x.is_leaf());
  Tensor y = x * 2.0;
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  {
    NoGradGuard no_grad;
    Tensor z = x * 2.0;
    CHECK_FALSE(z.requires_grad());
    CHECK(z.is_leaf());
    CHECK_FALSE(autograd::is_grad_enabled());
    {
      EnableGradGuard on;
      CHECK((x * 2.0).requires_grad());
    }
    CHECK_THROWS_WITH(z.sum().backward(), Catch::Contains("does not require grad"));
  }
  CHECK(autograd::is_grad_enabled());
  // Grad mode is per thread.
  bool other_thread_enabled = false;
  {
    NoGradGuard no_grad;
    std::thread([&] { other_thread_enabled = autograd::is_grad_enabled(); }).join();
  }
  CHECK(other_thread_enabled);

  Tensor d = y.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.is_leaf());
  CHECK(d.data_ptr() == y.data_ptr());  // shares storage
  CHECK_FALSE((d * 3.0).requires_grad());

  CHECK_THROWS_WITH(vec({1}).sum().backward(), Catch::Contains("does not require grad"));
  CHECK_THROWS_WITH(y.requires_grad_(false), Catch::Contains("not a leaf"));
  CHECK_THROWS_WITH(ones({2}, kInt64).requires_grad_(), Catch::Contains("floating-point"));
  Tensor off = vec({1}).requires_grad_().requires_grad_(false);
  CHECK_FALSE(off.requires_grad());
}

TEST_CASE("backward with a given gradient; non-scalar roots need one", "[autograd]") {
  Tensor x = vec({1, 2, 3}).requires_grad_();
  Tensor y = x * 3.0;
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("a gradient can be implied only for a "
                                                  "one-element tensor, got [3] f64 cpu"));
  CHECK_THROWS_WITH(y.backward(vec({1, 2})), Catch::Contains("does not match"));
  Tensor g = vec({1, 0.5, -1});
  y.backward(g);
  expect_close(x.grad(), {3, 1.5, -3}, 0, 0);
  // A leaf root takes a copy of the gradient: later accumulation must not write into g.
  Tensor leaf_root = vec({0, 0, 0}).requires_grad_();
  leaf_root.backward(g);
  leaf_root.backward(g);
  expect_close(g, {1, 0.5, -1}, 0, 0);
  expect_close(leaf_root.grad(), {2, 1, -2}, 0, 0);
  // Several roots at once.
  Tensor a = vec({1}).requires_grad_();
  autograd::backward({a * 2.0, a * 5.0}, {});
  expect_close(a.grad(), {7}, 0, 0);
}

TEST_CASE("gradients of different leaves never alias", "[autograd]") {
  // add hands the same gradient tensor to both inputs; each leaf must own its .grad.
  Tensor a = vec({1, 1}).requires_grad_(), b = vec({1, 1}).requires_grad_();
  (a + b).sum().backward();
  (a * 3.0 + b).sum().backward();
  expect_close(a.grad(), {4, 4}, 0, 0);
  expect_close(b.grad(), {2, 2}, 0, 0);
  // A broadcast gradient (a stride-0 expand from sum) is materialised before accumulating.
  Tensor c = vec({1, 2}).requires_grad_();
  c.sum().backward();
  c.sum().backward();
  expect_close(c.grad(), {2, 2}, 0, 0);
}

TEST_CASE("broadcasting in the forward is summed away in the backward", "[autograd]") {
  Tensor a = ones({3, 1}, kFloat64).requires_grad_(), b = ones({4}, kFloat64).requires_grad_();
  (a + b).sum().backward();
  CHECK(a.grad().shape() == Shape{3, 1});
  CHECK(b.grad().shape() == Shape{4});
  expect_close(a.grad(), {4, 4, 4}, 0, 0);
  expect_close(b.grad(), {3, 3, 3, 3}, 0, 0);
}

TEST_CASE("retain_grad keeps a non-leaf's gradient", "[autograd]") {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor h = x * 2.0;
  autograd::retain_grad(h);
  Tensor other = x * 4.0;
  (h * h).sum().backward();
  expect_close(h.grad(), {4, 8}, 0, 0);
  CHECK_FALSE(other.grad().defined());
}

TEST_CASE("post-accumulate hooks: once per leaf per pass, with the final gradient", "[autograd]") {
  Tensor w = vec({1, 2}).requires_grad_();
  std::vector<std::vector<double>> seen;
  autograd::HookId id = autograd::register_post_accumulate_hook(
      w, [&](const Tensor& leaf) { seen.push_back(to_vector(leaf.grad())); });
  // w is used three times; the hook sees the sum of all three contributions, once.
  Tensor loss = (w * 2.0 + w * w + exp(w).detach() * w).sum();
  loss.backward();
  REQUIRE(seen.size() == 1);
  expect_close(vec(seen[0]), {2 + 2 + std::exp(1.0), 2 + 4 + std::exp(2.0)}, 1e-12, 0);
  (w * 1.0).sum().backward();
  REQUIRE(seen.size() == 2);
  expect_close(vec(seen[1]), {5 + std::exp(1.0), 7 + std::exp(2.0)}, 1e-12, 0);
  autograd::remove_hook(w, id);
  (w * 1.0).sum().backward();
  CHECK(seen.size() == 2);
  CHECK_THROWS_WITH(autograd::register_post_accumulate_hook(w * 2.0, [](const Tensor&) {}),
                    Catch::Contains("not a leaf"));
}

TEST_CASE("a leaf's hook fires as soon as it is final, before earlier layers run", "[autograd]") {
  // Three layers; w3 (last layer) is final right after the loss's first nodes, w1 only at the
  // end. A probe node between layer 1 and 2 records when the engine reaches it.
  Generator g(41);
  Tensor x = uniform({2, 3}, -1, 1, kFloat64, &g);
  Tensor w1 = uniform({3, 3}, -1, 1, kFloat64, &g).requires_grad_();
  Tensor w2 = uniform({3, 3}, -1, 1, kFloat64, &g).requires_grad_();
  Tensor w3 = uniform({3, 1}, -1, 1, kFloat64, &g).requires_grad_();
  std::vector<std::string> order;
  for (auto [name, w] : {std::pair{"w1", w1}, std::pair{"w2", w2}, std::pair{"w3", w3}})
    autograd::register_post_accumulate_hook(w, [&order, n = std::string(name)](const Tensor& l) {
      CHECK(l.grad().defined());
      order.push_back(n);
    });
  auto probe = [&](const Tensor& t, std::string name) {
    return autograd::record("probe", {t}, ops::clone(t), [&order, name](const autograd::Grads& gr) {
      order.push_back(name);
      return autograd::Grads{gr[0]};
    });
  };
  // A callback queued from the first hook runs after every node, before backward returns.
  autograd::register_post_accumulate_hook(w3, [&order](const Tensor&) {
    autograd::queue_callback([&order] { order.push_back("callback"); });
  });
  Tensor h1 = probe(tanh(matmul(x, w1)), "after layer 1");
  Tensor h2 = probe(tanh(matmul(h1, w2)), "after layer 2");
  Tensor loss = matmul(h2, w3).sum();
  loss.backward();
  REQUIRE(order == std::vector<std::string>{"w3", "after layer 2", "w2", "after layer 1", "w1",
                                            "callback"});
  CHECK_THROWS_WITH(autograd::queue_callback([] {}), Catch::Contains("no backward pass is running"));
}

TEST_CASE("deep graphs run and free without recursion", "[autograd]") {
  // Far deeper than a recursive walk (or a recursive destructor chain) could survive.
  Tensor x = vec({1}).requires_grad_();
  Tensor h = x;
  const int depth = 100000;
  for (int i = 0; i < depth; ++i) h = h * 1.0 + 1.0;
  h.backward();
  expect_close(x.grad(), {1}, 0, 0);
  h = Tensor();  // drops the whole chain
  SUCCEED();
}

TEST_CASE("custom ops through autograd::record", "[autograd]") {
  // cube(x) with a hand-written backward, checked against finite differences.
  auto cube = [](const Tensor& x) {
    Tensor y = ops::binary(BinaryOp::pow, x, 3.0);
    return autograd::record("cube", {x}, y, [x = autograd::saved(x)](const autograd::Grads& g) {
      return autograd::Grads{ops::binary(BinaryOp::mul, g[0],
                                         ops::binary(BinaryOp::mul, ops::unary(UnaryOp::square, x), 3.0))};
    });
  };
  Generator g(42);
  Tensor x = leaf({4}, g);
  check_grad("custom cube", [&](auto& v) { return cube(v[0]); }, {x});
  // A backward returning the wrong shape is reported with the node's name.
  auto bad = [](const Tensor& x) {
    return autograd::record("bad_op", {x}, ops::clone(x), [](const autograd::Grads&) {
      return autograd::Grads{ones({7}, kFloat64)};
    });
  };
  CHECK_THROWS_WITH(bad(x).sum().backward(), Catch::Contains("bad_op returned a gradient"));
}

TEST_CASE("gradcheck catches a wrong backward and refuses non-f64 inputs", "[autograd]") {
  // cube with the derivative of a square: gradcheck must say so, naming the input.
  auto wrong = [](const Tensor& x) {
    Tensor y = ops::binary(BinaryOp::pow, x, 3.0);
    return autograd::record("wrong_cube", {x}, y, [x = autograd::saved(x)](const autograd::Grads& g) {
      return autograd::Grads{ops::binary(BinaryOp::mul, g[0], ops::binary(BinaryOp::mul, x, 2.0))};
    });
  };
  Generator g(43);
  Tensor x = leaf({5}, g, false, 0.5, 1.5);
  auto r = autograd::gradcheck([&](auto& v) { return wrong(v[0]); }, {x});
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.message, Catch::Contains("input 0 [5] f64 cpu element 0"));
  Tensor f = ones({2}).requires_grad_();
  CHECK_THROWS_WITH(autograd::gradcheck([](auto& v) { return v[0] * 2.0; }, {f}),
                    Catch::Contains("must be an f64 CPU leaf"));
}

TEST_CASE("to(device): the gradient moves back to the input's device", "[autograd][cuda]") {
  if (!has_cuda()) return;
  Tensor x = from_vector(std::vector<double>{1, 2, 3}, {3}, kFloat32).requires_grad_();
  Tensor y = x.to(Device::cuda());
  CHECK(y.is_cuda());
  (y * 2.0).to(Device::cpu()).sum().backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().device().is_cpu());
  expect_close(x.grad(), {2, 2, 2}, 0, 0);
}

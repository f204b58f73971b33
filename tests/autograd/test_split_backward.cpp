// The split backward of zero-bubble pipeline schedules: grad() to the input, then
// backward_excluding() the input, gives what one backward() gives, and each half runs only the
// nodes that lead where it is going (pruning), which is what makes the split worth anything.
#include "grad_helpers.h"

using namespace fathom;
using namespace fathom::testing;

namespace {
// y = t * 2, recorded as a node that counts how often its backward runs.
Tensor counted(const Tensor& t, int& calls) {
  Tensor y = ops::binary(BinaryOp::mul, t, full({}, 2.0, t.options()));
  return autograd::record("counted", {t}, y, [&calls](const autograd::Grads& g) -> autograd::Grads {
    ++calls;
    return {ops::binary(BinaryOp::mul, g[0], full({}, 2.0, g[0].options()))};
  });
}
}  // namespace

TEST_CASE("split backward: input half then weight half equals one backward", "[autograd]") {
  Generator gen(3);
  Tensor x0 = randn({4, 3}, kFloat64, &gen), w0 = randn({3, 5}, kFloat64, &gen);
  Tensor b0 = randn({5}, kFloat64, &gen), g = randn({4, 5}, kFloat64, &gen);
  int act_calls = 0, weight_calls = 0;
  auto forward = [&](const Tensor& x, const Tensor& w, const Tensor& b) {
    // counted(x) lies only on the input's path, counted(b) only on a weight's.
    return matmul(counted(x, act_calls), w) + counted(b, weight_calls);
  };
  Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
  autograd::backward({forward(x, w, b)}, {g});
  REQUIRE(act_calls == 1);
  REQUIRE(weight_calls == 1);

  Tensor xs = x0.clone().requires_grad_(), ws = w0.clone().requires_grad_(), bs = b0.clone().requires_grad_();
  act_calls = weight_calls = 0;
  Tensor y = forward(xs, ws, bs);
  autograd::Grads dx = autograd::grad({y}, {g}, {autograd::gradient_edge(xs)}, /*retain_graph=*/true);
  CHECK(act_calls == 1);
  CHECK(weight_calls == 0);  // pruned: it leads to no requested edge
  CHECK_FALSE(ws.grad().defined());
  expect_close(dx[0], x.grad(), 1e-12, 1e-12, "input grad");
  autograd::backward_excluding({y}, {g}, {autograd::gradient_edge(xs)});
  CHECK(act_calls == 1);  // the input's own path is not run again
  CHECK(weight_calls == 1);
  CHECK_FALSE(xs.grad().defined());  // nothing flowed into the excluded input
  expect_close(ws.grad(), w.grad(), 1e-12, 1e-12, "weight grad");
  expect_close(bs.grad(), b.grad(), 1e-12, 1e-12, "bias grad");
  // The weight half freed the graph.
  CHECK_THROWS(autograd::backward({y}, {g}));
}

TEST_CASE("backward_excluding fires leaf hooks once and skips only the listed edge", "[autograd]") {
  Tensor x = from_vector(std::vector<double>{1, 2}, {2}, kFloat64).requires_grad_();
  Tensor w = from_vector(std::vector<double>{3, 4}, {2}, kFloat64).requires_grad_();
  int fired = 0;
  autograd::register_post_accumulate_hook(w, [&](const Tensor&) { ++fired; });
  Tensor loss = (x * w * w).sum();  // d/dw = 2 x w
  autograd::backward_excluding({loss}, {}, {autograd::gradient_edge(x)});
  CHECK(fired == 1);
  expect_close(w.grad(), {6, 16}, 0, 0);
  CHECK_FALSE(x.grad().defined());
  // Nothing wanted reachable: a no-op, not an error.
  Tensor only_x = (x * x).sum();
  autograd::backward_excluding({only_x}, {}, {autograd::gradient_edge(x)});
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("input_wanted tells a node which gradients a split backward will use", "[autograd]") {
  Generator gen(5);
  Tensor x = randn({3, 4}, kFloat64, &gen).requires_grad_();
  Tensor w = randn({4, 2}, kFloat64, &gen).requires_grad_();
  std::vector<std::pair<bool, bool>> seen;  // (x wanted, w wanted) at each run of the node
  Tensor h = x * 1.0;                        // x reaches the node through another node
  Tensor y = ops::matmul(h, w);
  y = autograd::record("probe", {h, w}, y, [&](const autograd::Grads& g) -> autograd::Grads {
    seen.emplace_back(autograd::input_wanted(0), autograd::input_wanted(1));
    return {ops::matmul(g[0], ops::transpose(w.detach(), 0, 1)), ops::matmul(ops::transpose(h.detach(), 0, 1), g[0])};
  });
  Tensor g = randn({3, 2}, kFloat64, &gen);
  autograd::grad({y}, {g}, {autograd::gradient_edge(x)}, /*retain_graph=*/true);
  autograd::backward_excluding({y}, {g}, {autograd::gradient_edge(x)}, /*retain_graph=*/true);
  autograd::backward({y}, {g});
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] == std::pair{true, false});  // input half: w's gradient is dropped
  CHECK(seen[1] == std::pair{false, true});  // weight half: h leads only to the excluded x
  CHECK(seen[2] == std::pair{true, true});   // a plain backward wants everything
  // matmul skips the unwanted side and the results are unchanged: dW = h^T g.
  Tensor x2 = x.detach().clone().requires_grad_(), w2 = w.detach().clone().requires_grad_();
  Tensor y2 = matmul(x2 * 1.0, w2);
  autograd::Grads dx = autograd::grad({y2}, {g}, {autograd::gradient_edge(x2)}, true);
  autograd::backward_excluding({y2}, {g}, {autograd::gradient_edge(x2)});
  expect_close(dx[0], to_vector(ops::matmul(g, ops::transpose(w.detach(), 0, 1))), 1e-12, 1e-12, "dx");
  expect_close(w2.grad(), to_vector(ops::matmul(ops::transpose(x.detach(), 0, 1), g)), 1e-12, 1e-12, "dw");
}

TEST_CASE("grad_input then backward_weight: one backward, every node run once", "[autograd]") {
  Generator gen(9);
  Tensor x0 = randn({4, 3}, kFloat64, &gen), w10 = randn({3, 5}, kFloat64, &gen);
  Tensor w20 = randn({5, 2}, kFloat64, &gen), b0 = randn({2}, kFloat64, &gen);
  Tensor g = randn({4, 2}, kFloat64, &gen);
  int mid_calls = 0, bias_calls = 0;
  // Two layers with a node between them that lies only on the activation path: a split that
  // restarts from the output (backward_excluding) would run it twice.
  auto forward = [&](const Tensor& x, const Tensor& w1, const Tensor& w2, const Tensor& b) {
    Tensor h = counted(matmul(x, w1), mid_calls);
    return matmul(h, w2) + counted(b, bias_calls);
  };
  Tensor x = x0.clone().requires_grad_(), w1 = w10.clone().requires_grad_();
  Tensor w2 = w20.clone().requires_grad_(), b = b0.clone().requires_grad_();
  autograd::backward({forward(x, w1, w2, b)}, {g});

  Tensor xs = x0.clone().requires_grad_(), w1s = w10.clone().requires_grad_();
  Tensor w2s = w20.clone().requires_grad_(), bs = b0.clone().requires_grad_();
  int hooks = 0;
  autograd::register_post_accumulate_hook(w1s, [&](const Tensor&) { ++hooks; });
  mid_calls = bias_calls = 0;
  Tensor y = forward(xs, w1s, w2s, bs);
  autograd::WeightGradPending pending;
  autograd::Grads dx = autograd::grad_input({y}, {g}, {autograd::gradient_edge(xs)}, pending);
  CHECK(mid_calls == 1);
  CHECK(bias_calls == 0);
  CHECK_FALSE(w1s.grad().defined());
  CHECK_FALSE(pending.empty());
  CHECK_THROWS_WITH(autograd::grad_input({y}, {g}, {autograd::gradient_edge(xs)}, pending),
                    Catch::Contains("run backward_weight() on it first"));
  expect_close(dx[0], x.grad(), 1e-12, 1e-12, "input grad");
  autograd::backward_weight(pending);
  CHECK(mid_calls == 1);  // not rerun: the weights' gradients start where the input half left off
  CHECK(bias_calls == 1);
  CHECK(hooks == 1);
  CHECK(pending.empty());
  CHECK_FALSE(xs.grad().defined());
  expect_close(w1s.grad(), w1.grad(), 1e-12, 1e-12, "w1 grad");
  expect_close(w2s.grad(), w2.grad(), 1e-12, 1e-12, "w2 grad");
  expect_close(bs.grad(), b.grad(), 1e-12, 1e-12, "bias grad");
  CHECK_THROWS_WITH(autograd::backward_weight(pending), Catch::Contains("no grad_input() ran"));
}

// Finite-difference checks (f64) of reductions, matmul and the neural-network ops.
#include "grad_helpers.h"

using namespace fathom;
using namespace fathom::testing;

namespace {
Tensor weigh(const Tensor& y, uint64_t seed = 7) {
  Generator g(seed);
  return y * uniform(y.shape(), 0.5, 1.5, kFloat64, &g);
}
}  // namespace

TEST_CASE("sum, mean, amax over dims with keepdim", "[autograd]") {
  Generator g(31);
  std::vector<Shape> dim_sets = {{}, {0}, {-1}, {0, 2}, {1}};
  for (int nc = 0; nc < 2; ++nc)
    for (const Shape& dims : dim_sets)
      for (bool keep : {false, true}) {
        Tensor x = leaf({3, 4, 2}, g, nc);
        std::string tag = shape_str(dims) + (keep ? " keepdim" : "") + (nc ? " strided" : "");
        check_grad("sum " + tag, [&](auto& v) { return weigh(v[0].sum(dims, keep)); }, {x});
        check_grad("mean " + tag, [&](auto& v) { return weigh(mean(v[0], dims, keep)); }, {x});
        check_grad("amax " + tag, [&](auto& v) { return weigh(v[0].amax(dims, keep)); }, {x});
      }
  Tensor s = leaf({}, g);
  check_grad("sum of a scalar", [](auto& v) { return v[0].sum(); }, {s});
  // amax shares the gradient between tied maxima.
  Tensor t = from_vector(std::vector<double>{1, 3, 3, 2}, {4}, kFloat64).requires_grad_();
  t.amax().backward();
  expect_close(t.grad(), {0, 0.5, 0.5, 0}, 0, 0);
  CHECK_THROWS_WITH(t.sum({0, 0}), Catch::Contains("repeats"));
  CHECK_FALSE(t.argmax(0).requires_grad());
}

TEST_CASE("matmul: shapes, batches, broadcasting, 1-d operands, transposed views", "[autograd]") {
  Generator g(32);
  struct Case { Shape a, b; };
  std::vector<Case> cases = {
      {{3, 4}, {4, 5}},       {{2, 3, 4}, {4, 5}},       {{2, 3, 4}, {2, 4, 5}},
      {{2, 1, 3, 4}, {3, 4, 2}}, {{3, 4}, {2, 4, 5}},    {{4}, {4, 5}},
      {{3, 4}, {4}},          {{4}, {4}},                {{2, 3, 4}, {4}},
      {{4}, {2, 4, 3}},       {{1, 1}, {1, 1}},
  };
  for (const auto& c : cases)
    for (int nc = 0; nc < 2; ++nc) {
      Tensor a = leaf(c.a, g, nc), b = leaf(c.b, g, nc);
      check_grad("matmul " + shape_str(c.a) + " @ " + shape_str(c.b) + (nc ? " strided" : ""),
                 [](auto& v) { return matmul(v[0], v[1]); }, {a, b});
    }
  // Transposed views (the GEMM reads them in place) and one side frozen.
  Tensor w = leaf({5, 4}, g);
  Tensor x = leaf({2, 3, 4}, g);
  check_grad("x @ w.t()", [](auto& v) { return matmul(v[0], v[1].t()); }, {x, w});
  Tensor frozen = uniform({4, 5}, -1, 1, kFloat64, &g);
  check_grad("frozen b", [&](auto& v) { return matmul(v[0], frozen); }, {x});
  CHECK_THROWS_WITH(matmul(x, w), Catch::Contains("matmul: a [2, 3, 4] f64 cpu, b [5, 4] f64 cpu"));
}

TEST_CASE("softmax and log_softmax over any dim", "[autograd]") {
  Generator g(33);
  for (int nc = 0; nc < 2; ++nc)
    for (int64_t dim : {-1, 0, 1}) {
      Tensor x = leaf({3, 4, 5}, g, nc, -3, 3);
      check_grad("softmax dim " + std::to_string(dim),
                 [dim](auto& v) { return weigh(softmax(v[0], dim)); }, {x});
      check_grad("log_softmax dim " + std::to_string(dim),
                 [dim](auto& v) { return weigh(log_softmax(v[0], dim)); }, {x});
    }
}

TEST_CASE("layer_norm with and without affine parameters", "[autograd]") {
  Generator g(34);
  for (int nc = 0; nc < 2; ++nc) {
    Tensor x = leaf({2, 3, 6}, g, nc, -2, 2), w = leaf({6}, g, nc, 0.5, 1.5), b = leaf({6}, g, nc);
    check_grad("layer_norm affine", [](auto& v) { return weigh(layer_norm(v[0], v[1], v[2])); },
               {x, w, b});
    check_grad("layer_norm weight only",
               [](auto& v) { return weigh(layer_norm(v[0], v[1], Tensor())); }, {x, w});
    check_grad("layer_norm plain",
               [](auto& v) { return weigh(layer_norm(v[0], Tensor(), Tensor(), 1e-3)); }, {x});
  }
}

TEST_CASE("cross_entropy: [N, C] and [B, T, C], ignore_index", "[autograd]") {
  Generator g(35);
  for (int nc = 0; nc < 2; ++nc) {
    Tensor logits = leaf({5, 7}, g, nc, -3, 3);
    Tensor t = from_vector(std::vector<int64_t>{0, 6, 3, ops::kIgnoreIndex, 3}, {5});
    check_grad("cross_entropy [N, C]", [&](auto& v) { return cross_entropy(v[0], t); }, {logits});
    Tensor l3 = leaf({2, 3, 4}, g, nc, -3, 3);
    Tensor t3 = from_vector(std::vector<int64_t>{0, 1, 2, 3, 1, 0}, {2, 3});
    check_grad("cross_entropy [B, T, C]", [&](auto& v) { return cross_entropy(v[0], t3); }, {l3});
    check_grad("cross_entropy ignore 2",
               [&](auto& v) { return cross_entropy(v[0], t3, 2); }, {l3});
  }
  Tensor l = ones({2, 3, 4});
  CHECK_THROWS_WITH(cross_entropy(l, from_vector(std::vector<int64_t>{0, 1}, {2})),
                    Catch::Contains("cross_entropy: targets [2] i64 cpu"));
}

TEST_CASE("embedding and index_select accumulate repeated indices", "[autograd]") {
  Generator g(36);
  for (int nc = 0; nc < 2; ++nc) {
    Tensor w = leaf({6, 3}, g, nc);
    Tensor ids = from_vector(std::vector<int64_t>{1, 4, 1, 0, 5, 1}, {2, 3});
    check_grad("embedding", [&](auto& v) { return weigh(embedding(v[0], ids)); }, {w});
    Tensor x = leaf({4, 5, 2}, g, nc);
    Tensor idx = from_vector(std::vector<int64_t>{3, 0, 3, 4}, {4});
    for (int64_t dim : {0, 1, -1}) {
      Tensor ix = dim == 0 ? ops::narrow(idx, 0, 0, 3) : dim == 1 ? idx
                           : from_vector(std::vector<int64_t>{1, 1, 0}, {3});
      check_grad("index_select dim " + std::to_string(dim),
                 [&](auto& v) { return weigh(index_select(v[0], dim, ix)); }, {x});
    }
  }
  Tensor w = zeros({3, 2}).requires_grad_();
  embedding(w, from_vector(std::vector<int64_t>{2, 2, 0}, {3})).sum().backward();
  expect_close(w.grad(), {1, 1, 0, 0, 2, 2}, 0, 0);
}

TEST_CASE("a composite: a tiny two-layer network with every family", "[autograd]") {
  Generator g(37);
  Tensor x = leaf({2, 3, 4}, g), w1 = leaf({4, 8}, g), b1 = leaf({8}, g), w2 = leaf({8, 5}, g);
  Tensor ln_w = leaf({8}, g, false, 0.5, 1.5);
  Tensor t = from_vector(std::vector<int64_t>{0, 4, 2, 1, 3, 0}, {2, 3});
  check_grad("mlp", [&](auto& v) {
    Tensor h = gelu(layer_norm(matmul(v[0], v[1]) + v[2], v[4], Tensor()));
    return cross_entropy(matmul(h, v[3]), t);
  }, {x, w1, b1, w2, ln_w});
}

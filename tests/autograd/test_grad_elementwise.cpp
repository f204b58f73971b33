// Finite-difference checks (f64) of every elementwise op: random shapes, broadcasting and
// strided (non-contiguous) inputs.
#include "grad_helpers.h"

using namespace fathom;
using namespace fathom::testing;

TEST_CASE("binary ops: gradients match finite differences with broadcasting", "[autograd]") {
  Generator g(11);
  using Bin = Tensor (*)(const Tensor&, const Tensor&);
  struct Op { const char* name; Bin fn; bool positive_b; };
  std::vector<Op> table = {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }, false},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }, false},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }, false},
      {"div", [](const Tensor& a, const Tensor& b) { return a / b; }, true},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, false},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, false},
  };
  for (const Op& op : table)
    for (int trial = 0; trial < 6; ++trial) {
      Shape sa = random_shape(g), sb = broadcastable(sa, g);
      if (trial % 2) std::swap(sa, sb);  // either side may be the broadcast one
      bool nc = trial >= 3;
      Tensor a = leaf(sa, g, nc);
      Tensor b = op.positive_b ? leaf(sb, g, nc, 0.5, 2) : leaf(sb, g, nc);
      check_grad(std::string(op.name) + " " + shape_str(sa) + " " + shape_str(sb),
                 [&](const std::vector<Tensor>& x) { return op.fn(x[0], x[1]); }, {a, b});
    }
}

TEST_CASE("tensor-scalar and scalar-tensor ops", "[autograd]") {
  Generator g(12);
  for (int nc = 0; nc < 2; ++nc) {
    Tensor x = leaf({3, 4}, g, nc, 0.5, 2);
    std::vector<std::pair<const char*, Fn>> fns = {
        {"x + 2", [](const std::vector<Tensor>& v) { return v[0] + 2.0; }},
        {"2 + x", [](const std::vector<Tensor>& v) { return 2.0 + v[0]; }},
        {"x - 3", [](const std::vector<Tensor>& v) { return v[0] - 3.0; }},
        {"3 - x", [](const std::vector<Tensor>& v) { return 3.0 - v[0]; }},
        {"x * 1.5", [](const std::vector<Tensor>& v) { return v[0] * 1.5; }},
        {"1.5 * x", [](const std::vector<Tensor>& v) { return 1.5 * v[0]; }},
        {"x / 4", [](const std::vector<Tensor>& v) { return v[0] / 4.0; }},
        {"4 / x", [](const std::vector<Tensor>& v) { return 4.0 / v[0]; }},
        {"-x", [](const std::vector<Tensor>& v) { return -v[0]; }},
    };
    for (auto& [name, f] : fns) check_grad(name, f, {x});
  }
}

TEST_CASE("pow with a scalar exponent", "[autograd]") {
  Generator g(13);
  for (double p : {0.0, 1.0, 2.0, 3.0, 0.5, -1.5}) {
    Tensor x = leaf(random_shape(g), g, p > 1, 0.5, 2);
    check_grad("pow " + std::to_string(p),
               [p](const std::vector<Tensor>& v) { return pow(v[0], p); }, {x});
  }
}

TEST_CASE("unary ops: gradients match finite differences", "[autograd]") {
  Generator g(14);
  using Un = Tensor (*)(const Tensor&);
  struct Op { const char* name; Un fn; bool positive; };
  std::vector<Op> table = {
      {"neg", neg, false},   {"exp", exp, false},   {"log", log, true},
      {"tanh", tanh, false}, {"relu", relu, false}, {"gelu", gelu, false},
      {"sigmoid", sigmoid, false}, {"sqrt", sqrt, true}, {"rsqrt", rsqrt, true},
      {"abs", abs, false},   {"square", square, false},
      {"sin", sin, false},   {"cos", cos, false},   {"log1p", log1p, true},
      {"expm1", expm1, false}, {"erf", erf, false},
  };
  for (const Op& op : table)
    for (int trial = 0; trial < 4; ++trial) {
      Shape s = random_shape(g);
      Tensor x = op.positive ? leaf(s, g, trial % 2, 0.3, 3) : leaf(s, g, trial % 2, -2, 2);
      check_grad(std::string(op.name) + " " + shape_str(s),
                 [&](const std::vector<Tensor>& v) { return op.fn(v[0]); }, {x});
    }
}

TEST_CASE("sign has a zero gradient", "[autograd]") {
  Tensor x = from_vector(std::vector<double>{-2, 0, 3}, {3}, kFloat64).requires_grad_();
  Tensor y = sign(x);
  CHECK(to_vector(y) == std::vector<double>{-1, 0, 1});
  CHECK(y.requires_grad());
  (y * x).sum().backward();  // d(sign(x) x)/dx = sign(x) when sign's own derivative is 0
  expect_close(x.grad(), {-1, 0, 1}, 0, 0);
}

TEST_CASE("clamp: gradient 1 inside [min, max], 0 outside", "[autograd]") {
  Generator g(17);
  for (int nc = 0; nc < 2; ++nc) {
    // Values kept away from the bounds, where the finite difference straddles the kink.
    Tensor x = leaf({4, 6}, g, nc, -2, 2);
    {
      NoGradGuard ng;
      Tensor near = lt(abs(abs(x) - 0.5), 0.05);
      x.copy_(where(near, x * 1.5, x));
    }
    check_grad("clamp(-0.5, 0.5)", [](const std::vector<Tensor>& v) {
      return clamp(v[0], -0.5, 0.5) * v[0];
    }, {x});
    check_grad("clamp_min", [](const std::vector<Tensor>& v) { return clamp_min(v[0], 0.5); }, {x});
    check_grad("clamp_max", [](const std::vector<Tensor>& v) { return clamp_max(v[0], -0.5); }, {x});
  }
  // At a bound the gradient is 1 (PyTorch's inclusive mask).
  Tensor x = from_vector(std::vector<double>{-1, 0, 1, 2}, {4}, kFloat64).requires_grad_();
  clamp(x, 0.0, 1.0).sum().backward();
  expect_close(x.grad(), {0, 1, 1, 0}, 0, 0);
  CHECK_THROWS_WITH(clamp(x, std::nullopt, std::nullopt), Catch::Contains("at least one of min"));
}

TEST_CASE("pow with a tensor exponent: gradients for base and exponent", "[autograd]") {
  Generator g(18);
  for (int trial = 0; trial < 6; ++trial) {
    Shape sa = random_shape(g), sb = broadcastable(sa, g);
    if (trial % 2) std::swap(sa, sb);
    bool nc = trial >= 3;
    Tensor a = leaf(sa, g, nc, 0.5, 2), b = leaf(sb, g, nc, -2, 2);
    check_grad("pow " + shape_str(sa) + " " + shape_str(sb),
               [](const std::vector<Tensor>& v) { return pow(v[0], v[1]); }, {a, b});
  }
  Tensor b = leaf({5}, g, false, -1, 2);
  check_grad("2.5 ** b", [](const std::vector<Tensor>& v) { return pow(2.5, v[0]); }, {b});
  // Base 0 with exponent >= 0: the exponent's gradient is 0, not NaN (PyTorch's convention).
  Tensor z = zeros({2}, kFloat64).requires_grad_();
  Tensor e = from_vector(std::vector<double>{2, 0}, {2}, kFloat64).requires_grad_();
  pow(z, e).sum().backward();
  expect_close(e.grad(), {0, 0}, 0, 0);
  expect_close(z.grad(), {0, 0}, 0, 0);
}

TEST_CASE("maximum and minimum split the gradient on ties", "[autograd]") {
  Tensor a = from_vector(std::vector<double>{1, 2, 3}, {3}, kFloat64).requires_grad_();
  Tensor b = from_vector(std::vector<double>{1, 5, 0}, {3}, kFloat64).requires_grad_();
  maximum(a, b).sum().backward();
  expect_close(a.grad(), {0.5, 0, 1}, 0, 0);
  expect_close(b.grad(), {0.5, 1, 0}, 0, 0);
  check_grad("maximum with ties", [](const std::vector<Tensor>& v) { return maximum(v[0], v[1]); },
             {a, b});
}

TEST_CASE("where, masked_fill and comparisons", "[autograd]") {
  Generator g(15);
  for (int nc = 0; nc < 2; ++nc) {
    Tensor a = leaf({2, 3, 4}, g, nc), b = leaf({3, 1}, g, nc);
    Tensor cond = rand({3, 4}, kFloat32, &g) > 0.5;
    check_grad("where", [&](const std::vector<Tensor>& v) { return where(cond, v[0], v[1]); },
               {a, b});
    Tensor mask = rand({1, 4}, kFloat32, &g) > 0.5;
    check_grad("masked_fill", [&](const std::vector<Tensor>& v) {
      return masked_fill(v[0], mask, -7.0) * v[0];
    }, {a});
  }
  Tensor x = from_vector(std::vector<double>{1, 2, 3}, {3}, kFloat64).requires_grad_();
  Tensor c = x > 1.5;
  CHECK(c.dtype() == kBool);
  CHECK_FALSE(c.requires_grad());
  CHECK(to_vector(c) == std::vector<double>{0, 1, 1});
  CHECK(to_vector(lt(x, 2.5)) == std::vector<double>{1, 1, 0});
  CHECK(to_vector(eq(x, x)) == std::vector<double>{1, 1, 1});
  CHECK_FALSE(ne(x, x).requires_grad());
  // -inf in masked_fill is what attention relies on: its gradient there is exactly 0.
  Tensor y = masked_fill(x, x > 2.5, -INFINITY);
  softmax(y).select(0, 0).backward();
  CHECK(to_vector(x.grad())[2] == 0.0);
}

TEST_CASE("dropout: gradient, mask statistics, eval and p limits", "[autograd]") {
  Generator g(16);
  Tensor x = leaf({4, 5}, g, true);
  check_grad("dropout", [](const std::vector<Tensor>& v) {
    Generator mask_gen(99);  // the same mask on every call
    return dropout(v[0], 0.3, true, &mask_gen);
  }, {x});
  // Kept elements are scaled by 1/(1-p) and about 1-p of them are kept.
  Tensor ones_big = ones({20000}, kFloat64);
  std::vector<double> y = to_vector(dropout(ones_big, 0.25, true, &g));
  int kept = 0;
  for (double v : y) {
    REQUIRE((v == 0.0 || std::fabs(v - 1 / 0.75) < 1e-12));
    kept += v != 0;
  }
  CHECK(std::abs(kept / 20000.0 - 0.75) < 0.02);
  CHECK(dropout(x, 0.5, false).is_same(x));
  CHECK(to_vector(dropout(x, 1.0, true, &g)) == std::vector<double>(20, 0.0));
  CHECK_THROWS_WITH(dropout(x, 1.5, true), Catch::Contains("dropout: p must be in [0, 1]"));
}

TEST_CASE("mixed dtypes: gradients come back in each input's dtype", "[autograd]") {
  Tensor a = ones({2, 3}, kFloat32).requires_grad_();
  Tensor b = full({3}, 2.0, kFloat64).requires_grad_();
  Tensor y = a * b;
  CHECK(y.dtype() == kFloat64);
  y.sum().backward();
  CHECK(a.grad().dtype() == kFloat32);
  CHECK(b.grad().dtype() == kFloat64);
  expect_close(a.grad(), std::vector<double>(6, 2.0), 0, 0);
  expect_close(b.grad(), std::vector<double>(3, 2.0), 0, 0);
}

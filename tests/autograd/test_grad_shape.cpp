// Finite-difference checks (f64) of the view methods, casts, cat and split.
#include "grad_helpers.h"

using namespace fathom;
using namespace fathom::testing;

namespace {
// Multiplying by a fixed random tensor makes every output element matter differently, so a
// view backward that misplaces elements cannot pass.
Tensor weigh(const Tensor& y, uint64_t seed = 7) {
  Generator g(seed);
  return y * uniform(y.shape(), 0.5, 1.5, kFloat64, &g);
}
}  // namespace

TEST_CASE("view methods: gradients match finite differences", "[autograd]") {
  Generator g(21);
  for (int nc = 0; nc < 2; ++nc) {
    Tensor x = leaf({2, 3, 4}, g, nc);
    std::vector<std::pair<std::string, Fn>> fns = {
        {"reshape", [](auto& v) { return weigh(v[0].reshape({4, -1})); }},
        {"view", [](auto& v) { return weigh(v[0].contiguous().view({6, 4})); }},
        {"flatten", [](auto& v) { return weigh(v[0].flatten(1)); }},
        {"flatten all", [](auto& v) { return weigh(v[0].flatten()); }},
        {"transpose", [](auto& v) { return weigh(v[0].transpose(0, 2)); }},
        {"permute", [](auto& v) { return weigh(v[0].permute({2, 0, 1})); }},
        {"narrow", [](auto& v) { return weigh(v[0].narrow(2, 1, 2)); }},
        {"narrow negative start", [](auto& v) { return weigh(v[0].narrow(1, -2, 2)); }},
        {"select", [](auto& v) { return weigh(v[0].select(1, 2)); }},
        {"unsqueeze", [](auto& v) { return weigh(v[0].unsqueeze(-1)); }},
        {"unsqueeze+squeeze", [](auto& v) { return weigh(v[0].unsqueeze(1).squeeze(1)); }},
        {"expand", [](auto& v) { return weigh(v[0].narrow(1, 0, 1).expand({5, 2, 3, 4})); }},
        {"contiguous", [](auto& v) { return weigh(v[0].transpose(0, 1).contiguous()); }},
        {"chain", [](auto& v) {
           return weigh(v[0].permute({1, 2, 0}).reshape({12, 2}).t().narrow(1, 3, 6));
         }},
    };
    for (auto& [name, f] : fns) check_grad(name + (nc ? " (strided)" : ""), f, {x});
  }
  Tensor s = leaf({1, 3, 1}, g);
  check_grad("squeeze", [](auto& v) { return weigh(v[0].squeeze(0).squeeze(-1)); }, {s});
  CHECK(s.squeeze(1).is_same(s));  // size 3: nothing to squeeze, no node
}

TEST_CASE("view errors name the op and the tensor", "[autograd]") {
  Tensor x = ones({2, 3}).requires_grad_();
  CHECK_THROWS_WITH(x.t().view({6}), Catch::Contains("view: cannot view [3, 2] f32 cpu"));
  CHECK_THROWS_WITH(x.narrow(1, 2, 5), Catch::Contains("narrow"));
  CHECK_THROWS_WITH(x.permute({0, 0}), Catch::Contains("permute"));
}

TEST_CASE("to(dtype) casts the gradient back; integer casts end the history", "[autograd]") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3}, {3}, kFloat64).requires_grad_();
  Tensor y = x.to(kFloat32);
  CHECK(y.dtype() == kFloat32);
  CHECK(y.requires_grad());
  (y * 2.0).sum().backward();
  CHECK(x.grad().dtype() == kFloat64);
  expect_close(x.grad(), {2, 2, 2}, 0, 0);
  CHECK(x.to(kFloat64).is_same(x));
  CHECK_FALSE(x.to(kInt64).requires_grad());
  CHECK(x.to(Device::cpu()).is_same(x));
  Tensor h = x.to(kBFloat16);
  h.sum().backward();
  expect_close(x.grad(), {3, 3, 3}, 0, 0);
}

TEST_CASE("cat and split", "[autograd]") {
  Generator g(22);
  for (int nc = 0; nc < 2; ++nc) {
    Tensor a = leaf({2, 3}, g, nc), b = leaf({2, 1}, g, nc), c = leaf({2, 4}, g, nc);
    check_grad("cat dim 1", [](auto& v) { return weigh(cat({v[0], v[1], v[2]}, 1)); }, {a, b, c});
    check_grad("cat dim 0", [](auto& v) { return weigh(cat({v[0], v[0].narrow(0, 1, 1)}, 0)); },
               {a});
    Tensor x = leaf({7, 3}, g, nc);
    check_grad("split, all parts", [](auto& v) {
      auto parts = split(v[0], 3, 0);
      REQUIRE(parts.size() == 3);
      return weigh(parts[0]).sum() + weigh(parts[1], 8).sum() * 2.0 + weigh(parts[2], 9).sum();
    }, {x});
    // Unused parts contribute zeros (the engine fills them in).
    check_grad("split, one part", [](auto& v) { return weigh(split(v[0], 2, 1)[1]); }, {x});
  }
  // Only some inputs need grad.
  Tensor p = ones({2}).requires_grad_(), q = ones({3});
  cat({p, q}).sum().backward();
  expect_close(p.grad(), {1, 1}, 0, 0);
  CHECK_FALSE(q.grad().defined());
}

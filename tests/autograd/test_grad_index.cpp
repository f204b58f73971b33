// Gradients of clone and basic indexing against finite differences (f64), of to(device, dtype),
// and the in-place rules: copy_/fill_/zero_/index_put_ refuse tensors that require grad while
// grad mode is on, and work under NoGradGuard.
#include "grad_helpers.h"

using namespace fathom;
using namespace fathom::testing;
using namespace fathom::indexing;

TEST_CASE("clone and to(device, dtype): gradients pass through", "[autograd]") {
  Generator g(31);
  for (int nc = 0; nc < 2; ++nc) {
    Tensor x = leaf({3, 4}, g, nc);
    check_grad("clone", [](const std::vector<Tensor>& v) { return v[0].clone() * v[0]; }, {x});
  }
  Tensor x = leaf({2}, g);
  Tensor y = x.clone();
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  CHECK_FALSE(x.to(kCPU, kInt64).requires_grad());  // an integer cast ends the history
  // Through f32 a finite difference drowns in rounding: check the cast-back gradient exactly.
  Tensor z = x.to(kCPU, kFloat32);
  (z * 3.0).to(TensorOptions(kFloat64)).sum().backward();
  CHECK(x.grad().dtype() == kFloat64);
  expect_close(x.grad(), {3, 3}, 0, 0);
}

TEST_CASE("index: gradients match finite differences for every kind of index", "[autograd]") {
  Generator g(32);
  std::vector<std::pair<const char*, std::vector<TensorIndex>>> cases = {
      {"[0:2]", {Slice(0, 2)}},
      {"[1:, -1]", {Slice(1, None), -1}},
      {"[::2, 1:5:2]", {Slice(None, None, 2), Slice(1, 5, 2)}},
      {"[1]", {1}},
      {"[..., 2]", {Ellipsis, 2}},
      {"[None, :, ..., None]", {None, Slice(), Ellipsis, None}},
      {"[-3:, None, ::3, 0]", {Slice(-3, None), None, Slice(None, None, 3), 0}},
      {"[5:9]", {Slice(5, 9)}},  // empty: the gradient is all zeros
  };
  for (int nc = 0; nc < 2; ++nc)
    for (auto& [name, idx] : cases) {
      Tensor x = leaf({4, 5, 3}, g, nc);
      check_grad(std::string("index ") + name + (nc ? " noncontiguous" : ""),
                 [&idx = idx](const std::vector<Tensor>& v) {
                   Tensor y = v[0].index(idx);
                   return y * y;
                 }, {x});
    }
  // Gradients of overlapping views of one base add up.
  Tensor x = leaf({6}, g);
  (x.index({Slice(0, 4)}) * 2.0 + x.index({Slice(2, 6)})).sum().backward();
  expect_close(x.grad(), {2, 2, 3, 3, 1, 1}, 0, 0);
  // Step 2 routes the gradient to every other element, zeros between.
  x.zero_grad();
  x.index({Slice(1, None, 2)}).sum().backward();
  expect_close(x.grad(), {0, 1, 0, 1, 0, 1}, 0, 0);
}

TEST_CASE("in-place ops refuse tensors that require grad while grad mode is on", "[autograd]") {
  Tensor w = zeros({2, 3}, kFloat64).requires_grad_();
  Tensor data = ones({3}, kFloat64);
  const char* fix = "Wrap the write in a NoGradGuard";
  CHECK_THROWS_WITH(w.copy_(data), Catch::Contains("copy_: cannot write in place into [2, 3] f64 "
                                                   "cpu, which requires grad") &&
                                       Catch::Contains(fix));
  CHECK_THROWS_WITH(w.fill_(1), Catch::Contains("fill_: cannot write in place") && Catch::Contains(fix));
  CHECK_THROWS_WITH(w.zero_(), Catch::Contains("fill_: cannot write in place"));
  CHECK_THROWS_WITH(w.index_put_({0}, 1.0), Catch::Contains("index_put_: cannot write in place"));
  // A view of a leaf that requires grad requires grad too.
  CHECK_THROWS_WITH(w.index({0}).fill_(1), Catch::Contains("requires grad"));
  // Copying from a tensor that requires grad would drop its gradient: refused as well.
  Tensor plain = zeros({3}, kFloat64);
  CHECK_THROWS_WITH(plain.copy_(w.index({1})),
                    Catch::Contains("copy_: the source [3] f64 cpu requires grad") &&
                        Catch::Contains("detach()"));
  CHECK_THROWS_WITH(plain.index_put_({Slice()}, w.index({1})), Catch::Contains("index_put_: the source"));
  CHECK(to_vector(w) == std::vector<double>(6, 0.0));  // nothing was written
  plain.copy_(w.index({1}).detach());

  {
    NoGradGuard ng;  // how parameters are initialised and updated
    w.copy_(data);
    w.index_put_({1, Slice(0, 2)}, -1.0);
    plain.copy_(w.index({0}));
  }
  CHECK(to_vector(w) == std::vector<double>{1, 1, 1, -1, -1, 1});
  CHECK(to_vector(plain) == std::vector<double>{1, 1, 1});
  CHECK(w.requires_grad());
  CHECK(w.is_leaf());  // not recorded: still a leaf with no history
  (w * 3.0).sum().backward();
  expect_close(w.grad(), std::vector<double>(6, 3.0), 0, 0);
}

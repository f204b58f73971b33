// f64 finite-difference checks of conv2d, the poolings, batch norm (train and eval) and
// flatten, on odd sizes, strided/padded/dilated/grouped/depthwise convolutions and
// non-contiguous inputs; and the running-statistics update against PyTorch's formula.
#include "grad_helpers.h"

using namespace fathom;
using namespace fathom::testing;

TEST_CASE("conv2d gradients match finite differences", "[grad][conv]") {
  Generator g(31);
  struct Case {
    Shape x, w;
    Pair stride, padding, dilation;
    int64_t groups;
    bool bias, nc;
  } cases[] = {
      {{2, 3, 5, 4}, {4, 3, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, true, false},
      {{1, 4, 7, 6}, {6, 2, 3, 2}, {2, 1}, {1, 0}, {1, 2}, 2, true, true},
      {{2, 3, 6, 7}, {3, 1, 3, 3}, {2, 2}, {1, 1}, {1, 1}, 3, false, true},  // depthwise
      {{1, 2, 7, 5}, {3, 2, 2, 3}, {1, 2}, {2, 1}, {2, 1}, 1, true, false},
  };
  for (const Case& c : cases) {
    Tensor x = leaf(c.x, g, c.nc), w = leaf(c.w, g, c.nc);
    std::vector<Tensor> in{x, w};
    if (c.bias) in.push_back(leaf({c.w[0]}, g));
    check_grad("conv2d " + shape_str(c.x) + " * " + shape_str(c.w),
               [&](const std::vector<Tensor>& t) {
                 return conv2d(t[0], t[1], t.size() > 2 ? t[2] : Tensor(), c.stride, c.padding,
                               c.dilation, c.groups);
               },
               in);
  }
}

TEST_CASE("pooling gradients match finite differences", "[grad][conv]") {
  Generator g(32);
  for (bool nc : {false, true}) {
    // Distinct values with gaps far wider than the difference step keep max off its kinks.
    Tensor idx = ops::reshape(arange(0, 2 * 3 * 7 * 6, 1, kFloat64), {2, 3, 7, 6});
    Tensor xm = ops::binary(BinaryOp::mul, ops::unary(UnaryOp::sin, idx), 10.0);
    if (nc) xm = noncontiguous(xm);
    xm.requires_grad_();
    check_grad("max_pool2d 3x3 s2 p1", [](const std::vector<Tensor>& t) {
      return max_pool2d(t[0], {3, 3}, {2, 2}, {1, 1});
    }, {xm});
    check_grad("max_pool2d 2x2", [](const std::vector<Tensor>& t) {
      return max_pool2d(t[0], {2, 2});
    }, {xm});
    Tensor x = leaf({2, 3, 7, 6}, g, nc);
    for (bool inc : {true, false})
      check_grad("avg_pool2d 3x2 s(2,1) p1", [inc](const std::vector<Tensor>& t) {
        return avg_pool2d(t[0], {3, 2}, {2, 1}, {1, 1}, inc);
      }, {x});
    check_grad("adaptive_avg_pool2d divisible", [](const std::vector<Tensor>& t) {
      return adaptive_avg_pool2d(t[0].narrow(3, 0, 6), {7, 3});
    }, {x});
    check_grad("adaptive_avg_pool2d uneven", [](const std::vector<Tensor>& t) {
      return adaptive_avg_pool2d(t[0], {3, 4});
    }, {x});
  }
}

TEST_CASE("adaptive_avg_pool2d uses PyTorch's cells", "[conv]") {
  // One row of 5 to 3 cells: [0, 2), [1, 4), [3, 5).
  Tensor x = ops::reshape(arange(0, 5, 1, kFloat64), {1, 1, 1, 5});
  expect_close(adaptive_avg_pool2d(x, {1, 3}), {0.5, 2.0, 3.5}, 0, 1e-15);
  expect_close(adaptive_avg_pool2d(x, {1, 1}), {2.0}, 0, 1e-15);
  CHECK_THROWS_WITH(adaptive_avg_pool2d(x, {0, 1}), Catch::Contains("output_size"));
}

TEST_CASE("batch_norm gradients match finite differences, train and eval", "[grad][conv]") {
  Generator g(33);
  for (Shape s : {Shape{3, 2, 3, 5}, Shape{4, 3}, Shape{2, 3, 4}}) {
    for (bool nc : {false, true}) {
      int64_t C = s[1];
      Tensor x = leaf(s, g, nc), w = leaf({C}, g, false, 0.5, 1.5), b = leaf({C}, g);
      check_grad("batch_norm train " + shape_str(s), [](const std::vector<Tensor>& t) {
        return batch_norm(t[0], t[1], t[2], Tensor(), Tensor(), true);
      }, {x, w, b});
      check_grad("batch_norm train, no affine " + shape_str(s), [](const std::vector<Tensor>& t) {
        return batch_norm(t[0], Tensor(), Tensor(), Tensor(), Tensor(), true);
      }, {x});
      Tensor rm = uniform({C}, -1, 1, kFloat32, &g), rv = uniform({C}, 0.5, 2, kFloat32, &g);
      check_grad("batch_norm eval " + shape_str(s), [&](const std::vector<Tensor>& t) {
        return batch_norm(t[0], t[1], t[2], rm, rv, false);
      }, {x, w, b});
    }
  }
}

TEST_CASE("batch_norm updates running statistics as PyTorch does", "[conv]") {
  Generator g(34);
  Tensor x = uniform({4, 3, 5, 5}, -2, 3, kFloat64, &g);
  Tensor rm = full({3}, 0.5, kFloat32), rv = full({3}, 2.0, kFloat32);
  Tensor y = batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.2);
  std::vector<double> xv = to_vector(x), want_m(3), want_v(3);
  for (int c = 0; c < 3; ++c) {
    double s = 0, ss = 0;
    for (int n = 0; n < 4; ++n)
      for (int i = 0; i < 25; ++i) s += xv[size_t((n * 3 + c) * 25 + i)];
    double mu = s / 100;
    for (int n = 0; n < 4; ++n)
      for (int i = 0; i < 25; ++i) ss += std::pow(xv[size_t((n * 3 + c) * 25 + i)] - mu, 2);
    want_m[size_t(c)] = 0.8 * 0.5 + 0.2 * mu;
    want_v[size_t(c)] = 0.8 * 2.0 + 0.2 * ss / 99;  // unbiased
  }
  expect_close(rm, want_m, 1e-6, 1e-7, "running_mean");
  expect_close(rv, want_v, 1e-6, 1e-7, "running_var");
  // Eval normalises with them.
  Tensor ye = batch_norm(x, Tensor(), Tensor(), rm, rv, false);
  std::vector<double> ev = to_vector(ye);
  double rm0 = to_vector(rm)[0], rv0 = to_vector(rv)[0];
  CHECK(ev[0] == Approx((xv[0] - rm0) / std::sqrt(rv0 + 1e-5)).epsilon(1e-12));
  CHECK_THROWS_WITH(batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false),
                    Catch::Contains("running"));
}

TEST_CASE("flatten merges dims and passes gradients", "[grad][conv]") {
  Generator g(35);
  Tensor x = leaf({2, 3, 4, 5}, g, true);
  CHECK(flatten(x).shape() == Shape{2, 60});
  CHECK(flatten(x, 1, 2).shape() == Shape{2, 12, 5});
  check_grad("flatten", [](const std::vector<Tensor>& t) { return flatten(t[0]); }, {x});
}

// Losses: values by hand and by PyTorch's documented formulas, every reduction, f64 gradients
// against finite differences, numerical stability and the errors.
#include "autograd/grad_helpers.h"
#include "testing.h"

using namespace fathom;
using namespace fathom::testing;
namespace F = fathom::nn::functional;
using nn::Reduction;

namespace {
const Reduction kAll[] = {Reduction::none, Reduction::mean, Reduction::sum};

Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, kFloat64); }

// Host reference: log_softmax of one row.
std::vector<double> log_softmax_row(const std::vector<double>& x) {
  double m = *std::max_element(x.begin(), x.end()), s = 0;
  for (double v : x) s += std::exp(v - m);
  std::vector<double> out;
  for (double v : x) out.push_back(v - m - std::log(s));
  return out;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
}  // namespace

TEST_CASE("mse_loss and l1_loss: values for each reduction", "[nn][loss]") {
  Tensor x = f64({1, 2, 3}, {3}), y = f64({1, 0, 5}, {3});
  CHECK(F::mse_loss(x, y).item<double>() == Approx(8.0 / 3.0));
  CHECK(F::mse_loss(x, y, Reduction::sum).item<double>() == Approx(8.0));
  expect_close(F::mse_loss(x, y, Reduction::none), {0, 4, 4}, 0, 0);
  CHECK(nn::MSELoss()(x, y).item<double>() == Approx(8.0 / 3.0));
  CHECK(F::l1_loss(x, y).item<double>() == Approx(4.0 / 3.0));
  CHECK(nn::L1Loss(nn::L1LossOptions().reduction(Reduction::sum)).forward(x, y).item<double>() ==
        Approx(4.0));
  expect_close(F::l1_loss(x, y, Reduction::none), {0, 2, 2}, 0, 0);
}

TEST_CASE("binary_cross_entropy_with_logits: PyTorch's formula, pos_weight, stability",
          "[nn][loss]") {
  std::vector<double> xs = {0.0, 2.0, -3.0, 0.7}, ys = {1.0, 0.0, 0.5, 0.2}, pw = {2, 1, 3, 0.5};
  Tensor x = f64(xs, {2, 2}), y = f64(ys, {2, 2});
  // -[p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], per element.
  std::vector<double> plain, weighted;
  for (size_t i = 0; i < xs.size(); ++i) {
    double s = sigmoid(xs[i]);
    plain.push_back(-(ys[i] * std::log(s) + (1 - ys[i]) * std::log(1 - s)));
    double p = pw[i % 2 == 0 ? 0 : 1];  // pos_weight [2] broadcast over the last dim
    weighted.push_back(-(p * ys[i] * std::log(s) + (1 - ys[i]) * std::log(1 - s)));
  }
  expect_close(F::binary_cross_entropy_with_logits(x, y, Reduction::none), plain, 1e-12, 1e-12);
  double total = plain[0] + plain[1] + plain[2] + plain[3];
  CHECK(F::binary_cross_entropy_with_logits(x, y).item<double>() == Approx(total / 4));
  CHECK(F::binary_cross_entropy_with_logits(x, y, Reduction::sum).item<double>() == Approx(total));
  CHECK(plain[0] == Approx(std::log(2.0)));  // x = 0, y = 1: log 2 by hand

  auto opts = nn::BCEWithLogitsLossOptions(Reduction::none).pos_weight(f64({2, 1}, {2}));
  expect_close(F::binary_cross_entropy_with_logits(x, y, opts), weighted, 1e-12, 1e-12);
  nn::BCEWithLogitsLoss module(opts);
  CHECK(module.named_buffers().size() == 1);
  expect_close(module(x, y), weighted, 1e-12, 1e-12);

  // |x| = 1000 in f32: exp(1000) would be inf; the stable form gives the exact 1000 and 0.
  Tensor big = from_vector(std::vector<double>{1000, -1000, 1000, -1000}, {4});
  Tensor t = from_vector(std::vector<double>{0, 1, 1, 0}, {4});
  expect_close(F::binary_cross_entropy_with_logits(big, t, Reduction::none), {1000, 1000, 0, 0},
               1e-6, 1e-6);
}

TEST_CASE("nll_loss: picks -input[target], ignore_index, reductions", "[nn][loss]") {
  std::vector<double> r0 = log_softmax_row({1, 2, 3}), r1 = log_softmax_row({1, 0, -1});
  Tensor logp = f64({r0[0], r0[1], r0[2], r1[0], r1[1], r1[2]}, {2, 3});
  Tensor t = from_vector(std::vector<int64_t>{2, 0}, {2});
  CHECK(F::nll_loss(logp, t).item<double>() == Approx(-(r0[2] + r1[0]) / 2));
  CHECK(F::nll_loss(logp, t, Reduction::sum).item<double>() == Approx(-(r0[2] + r1[0])));
  expect_close(F::nll_loss(logp, t, Reduction::none), {-r0[2], -r1[0]}, 1e-12, 0);
  // Ignored targets add 0 and are not counted by the mean.
  Tensor ti = from_vector(std::vector<int64_t>{2, -100}, {2});
  CHECK(nn::NLLLoss()(logp, ti).item<double>() == Approx(-r0[2]));
  expect_close(F::nll_loss(logp, ti, Reduction::none), {-r0[2], 0}, 1e-12, 0);
  Tensor t7 = from_vector(std::vector<int64_t>{2, 7}, {2});
  auto skip7 = nn::NLLLossOptions().ignore_index(7);
  CHECK(F::nll_loss(logp, t7, skip7).item<double>() == Approx(-r0[2]));
  CHECK(std::isnan(F::nll_loss(logp, from_vector(std::vector<int64_t>{-100, -100}, {2}))
                       .item<double>()));
  // [B, T, C] against [B, T], i32 targets.
  Tensor t3 = from_vector(std::vector<int64_t>{2, 0}, {1, 2}, kInt32);
  CHECK(F::nll_loss(logp.reshape({1, 2, 3}), t3).item<double>() == Approx(-(r0[2] + r1[0]) / 2));
}

TEST_CASE("cross_entropy: label smoothing by PyTorch's formula, fused and composed paths agree",
          "[nn][loss]") {
  // torch.nn.functional.cross_entropy(tensor([[1., 2., 3.]]), tensor([0]), label_smoothing=0.1)
  // = 0.9 * 2.4076060 + 0.1 / 3 * 4.2228180 = 2.3076060.
  Tensor one = f64({1, 2, 3}, {1, 3});
  Tensor t0 = from_vector(std::vector<int64_t>{0}, {1});
  auto smooth = nn::CrossEntropyLossOptions().label_smoothing(0.1);
  CHECK(F::cross_entropy(one, t0, smooth).item<double>() == Approx(2.3076060).epsilon(1e-7));

  Tensor logits = f64({1, 2, 3, 1, 0, -1, 0.5, 0.5, -2}, {3, 3});
  Tensor t = from_vector(std::vector<int64_t>{0, 2, -100}, {3});
  std::vector<double> rows[2] = {log_softmax_row({1, 2, 3}), log_softmax_row({1, 0, -1})};
  int64_t ys[2] = {0, 2};
  for (double s : {0.0, 0.1, 0.3}) {
    std::vector<double> want = {0, 0, 0};
    for (int i = 0; i < 2; ++i) {
      double all = 0;
      for (double v : rows[i]) all -= v;
      want[i] = (1 - s) * -rows[i][ys[i]] + s / 3 * all;
    }
    INFO("label_smoothing " << s);
    auto o = nn::CrossEntropyLossOptions().label_smoothing(s);
    expect_close(F::cross_entropy(logits, t, o.reduction(Reduction::none)), want, 1e-12, 1e-12);
    CHECK(F::cross_entropy(logits, t, o.reduction(Reduction::sum)).item<double>() ==
          Approx(want[0] + want[1]));
    CHECK(nn::CrossEntropyLoss(o.reduction(Reduction::mean))(logits, t).item<double>() ==
          Approx((want[0] + want[1]) / 2));
  }
  // The fused kernel (mean, no smoothing) matches nll_loss(log_softmax).
  CHECK(F::cross_entropy(logits, t, nn::CrossEntropyLossOptions()).item<double>() ==
        Approx(F::nll_loss(log_softmax(logits, -1), t).item<double>()));
  CHECK_THROWS_WITH(F::cross_entropy(logits, t, nn::CrossEntropyLossOptions().label_smoothing(1.5)),
                    Catch::Contains("cross_entropy: label_smoothing must be in [0, 1], got 1.5"));
}

TEST_CASE("loss gradients match finite differences in f64", "[nn][loss][grad]") {
  Generator g(71);
  for (Reduction r : kAll) {
    INFO("reduction " << nn::reduction_name(r));
    Tensor x = leaf({3, 4}, g), y = leaf({3, 4}, g);
    check_grad("mse_loss", [&](const std::vector<Tensor>& in) { return F::mse_loss(in[0], in[1], r); }, {x, y});
    check_grad("l1_loss", [&](const std::vector<Tensor>& in) { return F::l1_loss(in[0], in[1], r); }, {x, y});

    // An exact 0 among the logits: the where() form must give sigmoid(0) - y there.
    Tensor z = f64({0.0, 1.5, -2.0, 0.3, -0.7, 4.0}, {2, 3}).requires_grad_();
    Tensor p = uniform({2, 3}, 0, 1, kFloat64, &g).requires_grad_();
    Tensor pw = uniform({3}, 0.5, 2, kFloat64, &g);
    check_grad("bce_with_logits", [&](const std::vector<Tensor>& in) {
      return F::binary_cross_entropy_with_logits(in[0], in[1], r);
    }, {z, p});
    check_grad("bce_with_logits pos_weight", [&](const std::vector<Tensor>& in) {
      return F::binary_cross_entropy_with_logits(in[0], in[1],
                                                 nn::BCEWithLogitsLossOptions(r).pos_weight(pw));
    }, {z, p});

    Tensor logits = leaf({4, 5}, g, true, -2, 2);
    Tensor t = from_vector(std::vector<int64_t>{4, 0, -100, 2}, {4});
    check_grad("nll_loss", [&](const std::vector<Tensor>& in) { return F::nll_loss(in[0], t, r); }, {logits});
    for (double s : {0.0, 0.2}) {
      INFO("label_smoothing " << s);
      auto o = nn::CrossEntropyLossOptions(r).label_smoothing(s);
      check_grad("cross_entropy", [&](const std::vector<Tensor>& in) { return F::cross_entropy(in[0], t, o); }, {logits});
      Tensor l3 = leaf({2, 2, 5}, g, false, -2, 2);
      Tensor t3 = from_vector(std::vector<int64_t>{1, -100, 3, 0}, {2, 2});
      check_grad("cross_entropy [B, T, C]", [&](const std::vector<Tensor>& in) { return F::cross_entropy(in[0], t3, o); }, {l3});
    }
  }
  // BCE at the exact 0: d/dx = sigmoid(0) - y = 0.5 - y.
  Tensor z0 = zeros({1}, kFloat64).requires_grad_();
  F::binary_cross_entropy_with_logits(z0, f64({0.25}, {1}), Reduction::sum).backward();
  CHECK(z0.grad().item<double>() == Approx(0.25));
}

TEST_CASE("losses refuse mismatched shapes, dtypes and targets with clear messages",
          "[nn][loss]") {
  Tensor a = zeros({2, 3}), b = zeros({3});
  CHECK_THROWS_WITH(F::mse_loss(a, b), Catch::Contains("mse_loss: input [2, 3] f32 cpu and target [3] f32 cpu must have the same shape"));
  CHECK_THROWS_WITH(F::l1_loss(a, zeros({2, 3}, kFloat64)), Catch::Contains("l1_loss: input [2, 3] f32 cpu and target [2, 3] f64 cpu"));
  CHECK_THROWS_WITH(F::mse_loss(zeros({2}, kInt64), zeros({2}, kInt64)), Catch::Contains("mse_loss: input [2] i64 cpu must be floating point"));
  CHECK_THROWS_WITH(F::binary_cross_entropy_with_logits(a, zeros({2, 3}), nn::BCEWithLogitsLossOptions().pos_weight(zeros({4}))),
                    Catch::Contains("binary_cross_entropy_with_logits: pos_weight [4] f32 cpu does not broadcast against input [2, 3] f32 cpu"));
  CHECK_THROWS_WITH(F::nll_loss(a, from_vector(std::vector<int64_t>{0, 1, 2}, {3})),
                    Catch::Contains("nll_loss: target [3] i64 cpu must have shape [2] to match input [2, 3] f32 cpu"));
  CHECK_THROWS_WITH(F::nll_loss(a, zeros({2})), Catch::Contains("nll_loss: target [2] f32 cpu must hold integer class indices"));
  CHECK_THROWS_WITH(F::nll_loss(a, from_vector(std::vector<int64_t>{0, 3}, {2})),
                    Catch::Contains("nll_loss: target 3 at flat position 1 is out of range for 3 classes"));
  CHECK_THROWS_WITH(F::cross_entropy(a, from_vector(std::vector<int64_t>{0, 5}, {2}), Reduction::sum),
                    Catch::Contains("cross_entropy: target 5"));
  CHECK_THROWS_WITH(nn::CrossEntropyLoss()(zeros({2, 3}), zeros({2, 3})), Catch::Contains("cross_entropy"));
}

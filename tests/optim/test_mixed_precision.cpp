// Mixed precision end to end: the fused optimizers against an unfused reference over many steps,
// a bf16 model that trains, and f16 training that survives an overflowing gradient.
#include "testing.h"

#include <cmath>

#include "fathom/autograd/autograd.h"
#include "fathom/nn/linear.h"
#include "fathom/nn/activation.h"
#include "fathom/nn/sequential.h"
#include "fathom/optim/clip.h"
#include "fathom/optim/grad_scaler.h"
#include "fathom/optim/optimizer.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

// The unfused reference: PyTorch's single-tensor (foreach=False) AdamW/Adam/SGD written out
// element by element in f32, scalars computed in f64 as Python does, with the gradient scaled
// by the clip coefficient as torch.nn.utils.clip_grad_norm_ followed by step() would do it.
struct Reference {
  std::vector<std::vector<float>> w, m, v;
  void adam(const std::vector<std::vector<double>>& g, double scale, int64_t t, double lr,
            double wd, bool decoupled) {
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const float step_size = float(lr / (1 - std::pow(0.9, double(t))));
    const float bc2_sqrt = float(std::sqrt(1 - std::pow(0.999, double(t))));
    for (size_t p = 0; p < w.size(); ++p)
      for (size_t i = 0; i < w[p].size(); ++i) {
        float gi = float(g[p][i]) * float(scale);
        if (decoupled) w[p][i] *= float(1 - lr * wd);
        else gi += float(wd) * w[p][i];
        m[p][i] = b1 * m[p][i] + (1 - b1) * gi;
        v[p][i] = b2 * v[p][i] + (1 - b2) * gi * gi;
        float denom = std::sqrt(v[p][i]) / bc2_sqrt + eps;
        w[p][i] -= step_size * m[p][i] / denom;
      }
  }
  void sgd(const std::vector<std::vector<double>>& g, double scale, int64_t t, double lr,
           double mom, double wd, bool nesterov) {
    for (size_t p = 0; p < w.size(); ++p)
      for (size_t i = 0; i < w[p].size(); ++i) {
        float gi = float(g[p][i]) * float(scale) + float(wd) * w[p][i];
        m[p][i] = t == 1 ? gi : float(mom) * m[p][i] + gi;
        w[p][i] -= float(lr) * (nesterov ? gi + float(mom) * m[p][i] : m[p][i]);
      }
  }
};

}  // namespace

TEST_CASE("fused AdamW, Adam and SGD with clipping equal the unfused reference over 100 steps", "[optim]") {
  const std::vector<Shape> shapes = {{7}, {33, 65}, {100003}};
  for (int algo = 0; algo < 4; ++algo) {  // AdamW, Adam (L2), SGD momentum, SGD nesterov
    INFO("algorithm " << algo);
    Generator gen(uint64_t(40 + algo));
    optim::NamedParams params;
    std::vector<Tensor> grads;
    Reference ref;
    for (size_t p = 0; p < shapes.size(); ++p) {
      Tensor w = normal(shapes[p], 0.0, 1.0, kFloat32, &gen);
      params.push_back({"p" + std::to_string(p), w});
      grads.push_back(zeros(shapes[p]));
      auto wv = to_vector(w);
      ref.w.push_back(std::vector<float>(wv.begin(), wv.end()));
      ref.m.push_back(std::vector<float>(size_t(w.numel())));
      ref.v.push_back(std::vector<float>(size_t(w.numel())));
    }
    std::unique_ptr<optim::Optimizer> opt;
    if (algo == 0) opt = std::make_unique<optim::AdamW>(params, optim::AdamWOptions(1e-2).weight_decay(0.1));
    if (algo == 1) opt = std::make_unique<optim::Adam>(params, optim::AdamOptions(1e-2).weight_decay(0.1));
    if (algo >= 2)
      opt = std::make_unique<optim::SGD>(
          params, optim::SGDOptions(1e-2).momentum(0.9).weight_decay(1e-3).nesterov(algo == 3));
    for (size_t p = 0; p < params.size(); ++p) opt->set_grad_source(params[p].first, grads[p]);
    optim::GradScaler clipper(optim::GradScalerOptions().enabled(false));
    const double max_norm = 150.0;  // the norm of these gradients is about 320: most steps clip
    int clipped = 0;
    for (int64_t t = 1; t <= 100; ++t) {
      std::vector<std::vector<double>> gv;
      double sq = 0;
      for (Tensor& g : grads) {
        ops::copy_(g, normal(g.shape(), 0.1, 1.0, kFloat32, &gen));
        gv.push_back(to_vector(g));
        for (double x : gv.back()) sq += x * x;
      }
      double coef = std::min(1.0, max_norm / (std::sqrt(sq) + 1e-6));
      clipped += coef < 1.0;
      REQUIRE(clipper.step(*opt, max_norm));
      if (algo < 2) ref.adam(gv, coef, t, 1e-2, 0.1, algo == 0);
      else ref.sgd(gv, coef, t, 1e-2, 0.9, 1e-3, algo == 3);
    }
    CHECK(clipped > 50);
    for (size_t p = 0; p < params.size(); ++p)
      expect_close(params[p].second, std::vector<double>(ref.w[p].begin(), ref.w[p].end()), 1e-6,
                   1e-7, params[p].first);
  }
}

namespace {

// Four Gaussian blobs in 16 dimensions: linearly separable, so a small MLP reaches ~100%.
std::pair<Tensor, Tensor> blobs(int64_t n, Generator& gen) {
  Tensor centers = normal({4, 16}, 0.0, 3.0, kFloat32, &gen);
  std::vector<double> labels;
  for (int64_t i = 0; i < n; ++i) labels.push_back(double(i % 4));
  Tensor y = ops::to(from_vector(labels, {n}), kInt64);
  Tensor x = ops::binary(BinaryOp::add, ops::index_select(centers, 0, y), normal({n, 16}, 0.0, 1.0, kFloat32, &gen));
  return {x, y};
}

std::shared_ptr<nn::Sequential> mlp(DType dt, Generator& gen) {
  auto m = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(nn::LinearOptions(16, 64), &gen), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Linear>(nn::LinearOptions(64, 4), &gen)});
  m->to(dt);
  return m;
}

double accuracy(nn::Module& m, const Tensor& x, const Tensor& y, DType dt) {
  NoGradGuard ng;
  Tensor pred = m.forward(x.to(dt)).argmax(1);
  return ops::sum(ops::binary(BinaryOp::eq, pred, y)).item<double>() / double(y.numel());
}

}  // namespace

TEST_CASE("a bf16 MLP trains with f32 master weights", "[optim]") {
  Generator gen(7);
  auto [x, y] = blobs(512, gen);
  auto model = mlp(kBFloat16, gen);
  for (auto& [name, p] : model->named_parameters()) REQUIRE(p.dtype() == kBFloat16);
  optim::AdamW opt(model->named_parameters(), optim::AdamWOptions(1e-2));
  optim::GradScaler scaler(optim::GradScalerOptions().enabled(false));
  double first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    opt.zero_grad();
    Tensor loss = cross_entropy(model->forward(x.to(kBFloat16)).to(kFloat32), y);
    loss.backward();
    REQUIRE(scaler.step(opt));
    (step == 0 ? first : last) = loss.item<double>();
  }
  CHECK(last < 0.1 * first);
  CHECK(accuracy(*model, x, y, kBFloat16) > 0.97);
  auto st = opt.state_dict();
  REQUIRE(st.count("0.weight.master"));
  CHECK(st["0.weight.master"].dtype() == kFloat32);
}

TEST_CASE("f16 training with loss scaling survives an overflowing gradient", "[optim]") {
  Generator gen(8);
  auto [x, y] = blobs(512, gen);
  auto model = mlp(kFloat16, gen);
  optim::AdamW opt(model->named_parameters(), optim::AdamWOptions(1e-2));
  optim::GradScaler scaler;  // 2^16, as PyTorch
  double first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    opt.zero_grad();
    Tensor loss = cross_entropy(model->forward(x.to(kFloat16)).to(kFloat32), y);
    // Step 40 blows the scaled loss up far past f16's range (65504): its gradients overflow.
    double boost = step == 40 ? 1e8 : 1.0;
    (boost == 1.0 ? scaler.scale(loss) : loss * (scaler.get_scale() * boost)).backward();
    auto before = to_vector(model->named_parameters()[0].second);
    auto state_before = opt.state_dict();
    double scale_before = scaler.get_scale();
    bool stepped = scaler.step(opt);
    if (step == 40) {
      CHECK_FALSE(stepped);
      CHECK(scaler.get_scale() == scale_before / 2);
      CHECK(to_vector(model->named_parameters()[0].second) == before);
      auto state_after = opt.state_dict();
      CHECK(to_vector(state_after["0.weight.exp_avg"]) == to_vector(state_before["0.weight.exp_avg"]));
      CHECK(state_after["0.weight.step"].item<int64_t>() == state_before["0.weight.step"].item<int64_t>());
    }
    (step == 0 ? first : last) = loss.item<double>();
  }
  CHECK(scaler.skipped_steps() >= 1);
  CHECK(last < 0.1 * first);
  CHECK(accuracy(*model, x, y, kFloat16) > 0.97);
}

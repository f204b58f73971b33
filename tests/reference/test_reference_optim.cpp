// Fathom's optimizers, gradient clipping, loss scaler and lr schedules against PyTorch's own
// classes (torch.optim.AdamW/SGD, clip_grad_norm_, torch.amp.GradScaler, lr_scheduler), step by
// step; the values are in tests/reference/data/ (scripts/torch_reference.py). The optimizer
// cases ran in f64 in PyTorch; Fathom runs them in f32 (its optimizer state is f32).
#include "reference_file.h"

using namespace fathom;
using fathom::reference::File;
using fathom::reference::expect_near;

namespace {

// A Linear(4, 3) + MSE model trained 10 steps with clipping, checked after every step against
// the variant `prefix` of the case file. clip_in_step: fold the clip coefficient into
// Optimizer::step (what GradScaler does) instead of clip_grad_norm_ on the gradients.
void run_optimizer(const File& ref, const std::string& prefix, optim::Optimizer& opt,
                   nn::Linear& lin, bool clip_in_step) {
  Tensor x = ref.tensor("x", DType::f32), target = ref.tensor("target", DType::f32);
  double max_norm = ref.scalar("max_norm");
  std::vector<double> losses, norms;
  for (int64_t step = 0; step < 10; ++step) {
    INFO(prefix << "step " << step);
    opt.zero_grad();
    Tensor loss = nn::functional::mse_loss(lin.forward(x), target);
    loss.backward();
    losses.push_back(loss.item<double>());
    if (clip_in_step) {
      double norm = optim::grad_norm(opt.gradients());
      norms.push_back(norm);
      opt.step(optim::clip_coefficient(norm, max_norm));
    } else {
      norms.push_back(optim::clip_grad_norm_(opt.gradients(), max_norm));
      opt.step();
    }
    // Each step's f32 update rounds at ~1e-7 of the weights (|w| ~ 1) and ten of them add up;
    // AdamW's m / sqrt(v) is well conditioned here (gradients are far above eps).
    expect_near(to_vector(lin.weight), ref.row(prefix + "weight", step), 1e-5, 2e-6, prefix + "weight");
    expect_near(to_vector(lin.bias), ref.row(prefix + "bias", step), 1e-5, 2e-6, prefix + "bias");
  }
  // The loss and norm are one f32 reduction each over values that already carry the weights'
  // rounding.
  expect_near(losses, ref.values(prefix + "loss"), 1e-5, 0, prefix + "loss");
  expect_near(norms, ref.values(prefix + "grad_norm"), 1e-5, 0, prefix + "grad_norm");
}

nn::Linear tiny_model(const File& ref) {
  nn::Linear lin(4, 3);
  lin.load_state_dict({{"weight", ref.tensor("weight0", DType::f32)}, {"bias", ref.tensor("bias0", DType::f32)}});
  return lin;
}

}  // namespace

TEST_CASE("PyTorch reference: 10 AdamW steps with global-norm clipping", "[reference]") {
  File ref("adamw");
  nn::Linear lin = tiny_model(ref);
  optim::AdamW opt(lin.named_parameters(),
                   optim::AdamWOptions(0.05).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  run_optimizer(ref, "", opt, lin, /*clip_in_step=*/true);
}

TEST_CASE("PyTorch reference: 10 SGD-momentum steps (dampening, nesterov) with clipping",
          "[reference]") {
  File ref("sgd");
  {
    nn::Linear lin = tiny_model(ref);
    optim::SGD opt(lin.named_parameters(),
                   optim::SGDOptions(0.1).momentum(0.9).dampening(0.1).weight_decay(0.01));
    run_optimizer(ref, "momentum.", opt, lin, /*clip_in_step=*/false);
  }
  {
    nn::Linear lin = tiny_model(ref);
    optim::SGD opt(lin.named_parameters(),
                   optim::SGDOptions(0.1).momentum(0.8).weight_decay(0.01).nesterov(true));
    run_optimizer(ref, "nesterov.", opt, lin, /*clip_in_step=*/true);
  }
}

TEST_CASE("PyTorch reference: GradScaler scales and skip decisions with an injected inf and nan",
          "[reference]") {
  File ref("grad_scaler");
  Tensor w = ref.tensor("w", DType::f32);
  w.requires_grad_(true);
  optim::SGD opt({{"w", w}}, optim::SGDOptions(ref.scalar("lr")).momentum(ref.scalar("momentum")));
  optim::GradScaler scaler(optim::GradScalerOptions()
                               .init_scale(ref.scalar("init_scale"))
                               .growth_factor(ref.scalar("growth_factor"))
                               .backoff_factor(ref.scalar("backoff_factor"))
                               .growth_interval(int64_t(ref.scalar("growth_interval"))));
  Tensor grads = ref.tensor("grads", DType::f32);  // [steps, 5], unscaled
  const std::vector<double>& skipped = ref.values("skipped");
  for (int64_t step = 0; step < int64_t(skipped.size()); ++step) {
    INFO("step " << step);
    CHECK(scaler.get_scale() == ref.values("scale_before")[size_t(step)]);
    // As in the generator: loss = sum(w * g_t), so backward of the scaled loss leaves g_t times
    // the scale in w.grad (inf and nan included).
    opt.zero_grad();
    scaler.scale(sum(w * grads.select(0, step))).backward();
    bool stepped = scaler.step(opt, ref.scalar("max_norm"));
    CHECK(stepped == (skipped[size_t(step)] == 0));
    CHECK(scaler.get_scale() == ref.values("scale_after")[size_t(step)]);
    // One f32 SGD-momentum update per step on weights ~1: a few ulps each.
    expect_near(to_vector(w), ref.row("w_after", step), 1e-6, 1e-6, "w");
  }
}

TEST_CASE("PyTorch reference: cosine, warmup, step and one-cycle schedules", "[reference]") {
  File ref("schedules");
  double base = ref.scalar("base_lr");
  Tensor w = zeros({1});
  auto lrs = [&](auto make, int64_t steps) {
    optim::SGD opt({{"w", w}}, optim::SGDOptions(base));
    auto sched = make(opt);
    std::vector<double> out{opt.param_groups()[0].lr()};
    for (int64_t s = 0; s < steps; ++s) {
      sched.step();
      out.push_back(opt.param_groups()[0].lr());
    }
    return out;
  };
  auto expect_lrs = [&](const std::vector<double>& got, const std::string& name) {
    // Closed forms in f64 against PyTorch's recursive (chainable) updates: a few ulps apart.
    expect_near(got, ref.values(name), 1e-12, 1e-18, name);
  };
  // CosineLR = SequentialLR(LinearLR warmup, CosineAnnealingLR) up to total_steps; after it,
  // CosineLR holds min_lr where CosineAnnealingLR would rise again (not compared).
  expect_lrs(lrs([](optim::Optimizer& o) { return optim::CosineLR(o, 5, 20, 1e-4); }, 20), "cosine.lr");
  expect_lrs(lrs([](optim::Optimizer& o) { return optim::CosineLR(o, 0, 12, 0.0); }, 12),
             "cosine_nowarmup.lr");
  // Fathom's ConstantLR(opt, warmup) is torch's LinearLR(1/warmup, 1, warmup - 1).
  expect_lrs(lrs([](optim::Optimizer& o) { return optim::ConstantLR(o, 4); }, 10), "warmup.lr");
  expect_lrs(lrs([](optim::Optimizer& o) { return optim::StepLR(o, 3, 0.5); }, 10), "step.lr");
  // OneCycleLR without momentum cycling (Fathom does not cycle momentum): steps 0..total.
  expect_lrs(lrs([](optim::Optimizer& o) { return optim::OneCycleLR(o, 1e-2, 20, 0.3, 25.0, 1e4); }, 20),
             "onecycle.lr");
}

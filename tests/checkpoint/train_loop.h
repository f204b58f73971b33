#pragma once
// A small but complete training loop for the resume tests: DDP (optionally 2:4 compressed),
// AdamW with f32 master weights for half-precision parameters, a GradScaler (dynamic for f16),
// CosineLR with warmup, a DataLoader that goes mid-epoch and into the next one, and two
// dropouts: one drawing from a per-rank generator, one from the default generator. Building a
// Loop is what a restarted process does: the same constructors with the same seeds.
#include "testing.h"

#include <cmath>
#include <cstring>

#include "fathom/checkpoint/train_state.h"
#include "fathom/comm/comm.h"
#include "fathom/comm/compressor.h"
#include "fathom/parallel/ddp.h"

namespace fathom::testing {

struct LoopConfig {
  DType dtype = DType::f32;           // of the model's parameters
  std::string compress = "none";      // comm::make_compressor spec
  int64_t inf_step = -1;              // this step's gradients get an inf (the scaler skips it)
  double dropout = 0.25;
};

// Registers fc2 before fc1 but runs fc1 first, so DDP's bucket rebuild changes the layout.
class ResumeNet : public nn::Module {
 public:
  ResumeNet(Generator* init, Generator* drop_gen, double p) : Module("ResumeNet") {
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(nn::LinearOptions(24, 5), init));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(nn::LinearOptions(12, 24), init));
    drop1 = register_module("drop1", std::make_shared<nn::Dropout>(p, drop_gen));
    drop2 = register_module("drop2", std::make_shared<nn::Dropout>(p));  // the default generator
  }
  Tensor forward(const Tensor& x) override {
    return fc2->forward(drop2->forward(drop1->forward(relu(fc1->forward(x)))));
  }
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::Dropout> drop1, drop2;
};

// 96 samples, global batch 16: 6 batches an epoch, so a 10-step run saved after step 1, 4 or 5
// is mid-epoch and its second half crosses into the next epoch.
inline std::shared_ptr<data::TensorDataset> resume_dataset() {
  Generator g(77);
  Tensor x = randn({96, 12}, kFloat32, &g);
  Tensor y = ops::to(uniform({96}, 0, 5, kFloat32, &g), kInt64);
  return std::make_shared<data::TensorDataset>(x, y);
}

struct Loop {
  Loop(const LoopConfig& c, std::shared_ptr<comm::ProcessGroup> group, int64_t total_steps = 10)
      : cfg(c), pg(std::move(group)), init_gen(11), drop_gen(5, uint64_t(pg->rank())) {
    manual_seed(3);  // a fresh process's default generator, seeded as the script seeds it
    model = std::make_shared<ResumeNet>(&init_gen, &drop_gen, cfg.dropout);
    model->to(cfg.dtype);
    // Buckets of several parameters at offsets that are not all multiples of 4 (2:4 groups):
    // at first [fc1.bias] [fc1.weight fc2.bias] [fc2.weight], after the rebuild
    // [fc2.* fc1.bias] [fc1.weight], so the layout changes which values the mask keeps.
    constexpr double kFloat = 4.0 / 1048576.0;
    auto o = parallel::DDPOptions().first_bucket_cap_mb(157 * kFloat).bucket_cap_mb(340 * kFloat)
                 .compressor(comm::make_compressor(cfg.compress));
    ddp = std::make_unique<parallel::DistributedDataParallel>(model, pg, o);
    opt = std::make_unique<optim::AdamW>(model->named_parameters(), optim::AdamWOptions(0.02).weight_decay(0.01));
    ddp->attach(*opt);
    sched = std::make_unique<optim::CosineLR>(*opt, /*warmup_steps=*/3, total_steps, /*min_lr=*/0.002);
    scaler = std::make_unique<optim::GradScaler>(optim::GradScalerOptions()
                                                     .enabled(cfg.dtype == DType::f16)
                                                     .init_scale(1024)
                                                     .growth_interval(3));
    loader = std::make_unique<data::DataLoader>(
        resume_dataset(), data::DataLoaderOptions(16).seed(9).rank(pg->rank()).world(pg->size()));
    ts.model = model.get();
    ts.optimizer = opt.get();
    ts.scaler = scaler.get();
    ts.scheduler = sched.get();
    ts.loader = loader.get();
    ts.generators["dropout"] = &drop_gen;
    ts.extras.push_back(checkpoint::per_rank_provider("ddp", *ddp));
  }

  // One training step; returns this rank's loss.
  float step(int64_t s) {
    data::Batch b = loader->next();
    opt->zero_grad();
    Tensor loss = cross_entropy(ddp->forward(b.data.to(cfg.dtype)).to(DType::f32), b.target);
    scaler->scale(loss).backward();
    if (s == cfg.inf_step) {
      // On every rank, so all of them skip (a real overflow reaches all through the all-reduce).
      Tensor g = opt->gradients()[0];
      ops::fill_(ops::narrow(ops::view(g, {g.numel()}), 0, 0, 1), INFINITY);
    }
    scaler->step(*opt);
    sched->step();
    return loss.item<float>();
  }

  LoopConfig cfg;
  std::shared_ptr<comm::ProcessGroup> pg;
  Generator init_gen, drop_gen;
  std::shared_ptr<ResumeNet> model;
  std::unique_ptr<parallel::DistributedDataParallel> ddp;
  std::unique_ptr<optim::AdamW> opt;
  std::unique_ptr<optim::CosineLR> sched;
  std::unique_ptr<optim::GradScaler> scaler;
  std::unique_ptr<data::DataLoader> loader;
  checkpoint::TrainState ts;
};

// A snapshot that owns its tensors (on the CPU), as a checkpoint on disk would.
inline nn::StateDict snapshot(const nn::StateDict& d) {
  nn::StateDict out;
  for (const auto& [k, t] : d) out[k] = ops::contiguous(ops::clone(ops::to(t, Device::cpu())));
  return out;
}
inline checkpoint::RankState snapshot(const checkpoint::RankState& s) {
  return {snapshot(s.replicated), snapshot(s.per_rank)};
}

// Keys of `a` and `b` that differ in presence, dtype, shape or any byte.
inline std::vector<std::string> bitwise_differences(const nn::StateDict& a, const nn::StateDict& b) {
  std::vector<std::string> out;
  for (const auto& [k, t] : a) {
    auto it = b.find(k);
    if (it == b.end()) {
      out.push_back(k + " (only in the first)");
      continue;
    }
    Tensor x = ops::contiguous(ops::to(t, Device::cpu())), y = ops::contiguous(ops::to(it->second, Device::cpu()));
    if (x.dtype() != y.dtype() || x.shape() != y.shape() ||
        std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) != 0)
      out.push_back(k);
  }
  for (const auto& [k, t] : b)
    if (!a.count(k)) out.push_back(k + " (only in the second)");
  return out;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace fathom::testing

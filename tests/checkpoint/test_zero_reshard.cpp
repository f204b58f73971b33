// A DistributedOptimizer's state is per rank (its shard): checkpointed by 2 ranks through the
// Checkpointer and resumed on 1 and on 4 ranks with restore_resharded, each new rank's segments
// cut from the saved ones. The resumed run then trains on and ends where the uninterrupted
// 2-rank run does (f32, to 1e-5: other world sizes add the gradients in another order), and its
// moments are, element for element, the saved ones. ZeRO-1 and ZeRO-2.
#include "ckpt_testing.h"
#include "train_loop.h"

#include "fathom/parallel/distributed_optimizer.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

constexpr int64_t kSaveAt = 5, kEnd = 8;

std::pair<Tensor, Tensor> zero_batch(int64_t s) {
  Generator g(500 + uint64_t(s));
  Tensor x = randn({16, 12}, kFloat32, &g);
  Tensor y = ops::to(uniform({16}, 0, 5, kFloat32, &g), kInt64);
  return {x, y};
}

struct ZeroLoop {
  ZeroLoop(std::shared_ptr<comm::ProcessGroup> group, int stage) : pg(std::move(group)), init(21) {
    model = std::make_shared<nn::Sequential>(nn::Linear(nn::LinearOptions(12, 24), &init), nn::ReLU(),
                                             nn::Linear(nn::LinearOptions(24, 5), &init));
    ddp = std::make_unique<parallel::DistributedDataParallel>(
        model, pg, parallel::DDPOptions().bucket_cap_mb(0.0004).first_bucket_cap_mb(0.0004));
    opt = std::make_unique<parallel::DistributedOptimizer<optim::AdamW>>(
        *ddp, optim::AdamWOptions(0.02).weight_decay(0.01), parallel::ZeroOptions().stage(stage));
    sched = std::make_unique<optim::CosineLR>(*opt, /*warmup_steps=*/2, kEnd);
    ts.model = model.get();
    ts.optimizer = opt.get();
    ts.scaler = &scaler;
    ts.scheduler = sched.get();
    ts.extras.push_back(checkpoint::per_rank_provider("ddp", *ddp));
  }
  void step(int64_t s) {
    auto [x, y] = zero_batch(s);
    int64_t n = 16 / pg->size();
    opt->zero_grad();
    Tensor loss = cross_entropy(ddp->forward(ops::contiguous(ops::narrow(x, 0, pg->rank() * n, n))),
                                ops::contiguous(ops::narrow(y, 0, pg->rank() * n, n)));
    loss.backward();
    REQUIRE(scaler.step(*opt, /*max_norm=*/0.5));
    sched->step();
  }

  std::shared_ptr<comm::ProcessGroup> pg;
  Generator init;
  std::shared_ptr<nn::Sequential> model;
  std::unique_ptr<parallel::DistributedDataParallel> ddp;
  std::unique_ptr<parallel::DistributedOptimizer<optim::AdamW>> opt;
  std::unique_ptr<optim::CosineLR> sched;
  optim::GradScaler scaler{optim::GradScalerOptions().enabled(false)};
  checkpoint::TrainState ts;
};

// The whole of `field` for every parameter, put together from the saved ranks' segments.
std::map<std::string, std::vector<double>> assemble(checkpoint::Checkpointer& ck, const checkpoint::Loaded& l,
                                                    const std::string& field) {
  std::map<std::string, std::vector<double>> out;
  const std::string range = "optim.shard.range.";
  for (int r = 0; r < l.saved_world_size; ++r) {
    nn::StateDict d = ck.load_rank_state(l, r);
    for (const auto& [k, t] : d) {
      if (k.rfind(range, 0) != 0) continue;
      std::string name = k.substr(range.size());
      std::vector<double> se = to_vector(t), v = to_vector(d.at("optim." + name + "." + field));
      auto& full = out[name];
      if (full.size() < size_t(se[0] + se[1])) full.resize(size_t(se[0] + se[1]));
      for (size_t i = 0; i < v.size(); ++i) full[size_t(se[0]) + i] = v[i];
    }
  }
  return out;
}

void resume_on(const std::shared_ptr<comm::ProcessGroup>& group, int stage, const std::string& dir,
               const nn::StateDict& uninterrupted) {
  INFO("ZeRO-" << stage << " resumed on " << group->size() << " rank(s), this is rank " << group->rank());
  checkpoint::Checkpointer ck(dir, *group, checkpoint::CheckpointerOptions().async(false).verbose(false));
  auto loaded = ck.load_latest();
  REQUIRE(loaded);
  REQUIRE(loaded->saved_world_size == 2);
  ZeroLoop l(group, stage);
  checkpoint::restore_resharded(l.ts, loaded->replicated, 2,
                                [&](int r) { return ck.load_rank_state(*loaded, r); });
  // Each of this rank's segments holds the saved moments of its elements.
  auto state = l.opt->state_dict();
  for (const char* field : {"exp_avg", "exp_avg_sq"}) {
    auto full = assemble(ck, *loaded, field);
    for (const auto& seg : l.opt->shards().segments()) {
      INFO(seg.name << "." << field);
      const auto& f = full.at(seg.name);
      std::vector<double> want(f.begin() + seg.start, f.begin() + seg.start + seg.length);
      expect_close(state.at(seg.name + "." + field), want, 0, 0);
    }
  }
  CHECK(l.opt->step_count() == kSaveAt);
  for (int64_t s = kSaveAt; s < kEnd; ++s) l.step(s);
  auto now = l.model->state_dict();
  for (const auto& [k, t] : uninterrupted) {
    INFO(k);
    expect_close(now.at(k), t, 1e-5, 1e-7, k);
  }
}

}  // namespace

TEST_CASE("A ZeRO-sharded state saved by 2 ranks resumes on 1 and on 4 ranks", "[ranks]") {
  auto world = comm::init().world;
  REQUIRE(world->size() % 2 == 0);
  auto pair = world->split(world->rank() / 2, world->rank() % 2, "pair");
  auto alone = world->split(world->rank(), 0, "alone");
  for (int stage : {1, 2}) {
    SharedDir root(*world);
    // Each pair runs the same job; pair p saves into its own directory.
    std::string mine = root / ("pair" + std::to_string(world->rank() / 2));
    nn::StateDict uninterrupted;
    {
      ZeroLoop l(pair, stage);
      for (int64_t s = 0; s < kSaveAt; ++s) l.step(s);
      checkpoint::Checkpointer ck(mine, *pair, checkpoint::CheckpointerOptions().async(false).verbose(false));
      ck.save(kSaveAt, checkpoint::collect(l.ts));
      ck.wait();
      for (int64_t s = kSaveAt; s < kEnd; ++s) l.step(s);
      uninterrupted = snapshot(l.model->state_dict());
    }
    world->barrier()->wait();
    resume_on(alone, stage, mine, uninterrupted);
    if (world->size() == 4) resume_on(world, stage, root / "pair0", uninterrupted);
    world->barrier()->wait();
  }
}

TEST_CASE("A ZeRO-sharded state lands per rank and resumes exactly on the same ranks", "[ranks]") {
  auto world = comm::init().world;
  ZeroLoop a(world, 2);
  for (int64_t s = 0; s < 3; ++s) a.step(s);
  checkpoint::RankState saved = snapshot(checkpoint::collect(a.ts));
  for (const auto& [k, t] : saved.replicated) CHECK(k.rfind("optim.", 0) != 0);
  CHECK(saved.per_rank.count("optim.shard.world") == 1);
  for (int64_t s = 3; s < 6; ++s) a.step(s);
  ZeroLoop b(world, 2);
  checkpoint::restore(b.ts, saved.replicated, saved.per_rank);
  for (int64_t s = 3; s < 6; ++s) b.step(s);
  CHECK(bitwise_differences(snapshot(a.model->state_dict()), snapshot(b.model->state_dict())).empty());
}

// Exact resume, Megatron style, in memory: a run trained N steps without a break against one
// that trains N/2, collects its RankState, is rebuilt from fresh parts (what a restarted process
// constructs: same constructors, same seeds), restores, and trains the rest. The second half's
// losses and the final state of every part (parameters, optimizer moments and master weights,
// scaler, schedule, loader, generators, DDP layout and 2:4 residuals) must agree bit for bit.
// Runs under mpirun with 2 and 4 ranks ([ranks]); every rank checks its own.
#include "train_loop.h"

#include <functional>

using namespace fathom;
using namespace fathom::testing;

namespace {

constexpr int64_t kSteps = 10;

struct Run {
  std::vector<float> losses;
  checkpoint::RankState final_state;
};

Run uninterrupted(const LoopConfig& c) {
  Loop l(c, comm::init().world, kSteps);
  Run r;
  for (int64_t s = 0; s < kSteps; ++s) r.losses.push_back(l.step(s));
  r.final_state = snapshot(checkpoint::collect(l.ts));
  return r;
}

// Leaves a part out of the restore: edits the saved state and the TrainState restored into
// (the fresh Loop keeps every part; the left-out one just stays as constructed).
using LeaveOut = std::function<void(checkpoint::RankState&, checkpoint::TrainState&)>;

Run resumed(const LoopConfig& c, int64_t save_at, const LeaveOut& leave_out = {}) {
  Run r;
  checkpoint::RankState saved;
  {
    Loop first(c, comm::init().world, kSteps);
    for (int64_t s = 0; s < save_at; ++s) r.losses.push_back(first.step(s));
    saved = snapshot(checkpoint::collect(first.ts));
    CHECK(saved.replicated.at("loader.batch").item<int64_t>() != 0);  // saved mid-epoch
  }  // the first process ends here
  Loop again(c, comm::init().world, kSteps);
  checkpoint::TrainState restored = again.ts;
  if (leave_out) leave_out(saved, restored);
  checkpoint::restore(restored, saved.replicated, saved.per_rank);
  for (int64_t s = save_at; s < kSteps; ++s) r.losses.push_back(again.step(s));
  r.final_state = snapshot(checkpoint::collect(again.ts));
  return r;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

void expect_exact_resume(const LoopConfig& c, int64_t save_at) {
  INFO("dtype " << dtype_name(c.dtype) << ", compression " << c.compress << ", saved after step "
       << save_at << ", rank " << comm::init().rank << " of " << comm::init().world_size);
  Run a = uninterrupted(c), b = resumed(c, save_at);
  INFO("losses " << ::Catch::Detail::stringify(a.losses) << " vs " << ::Catch::Detail::stringify(b.losses));
  CHECK(same_bits(a.losses, b.losses));
  auto rep = bitwise_differences(a.final_state.replicated, b.final_state.replicated);
  auto mine = bitwise_differences(a.final_state.per_rank, b.final_state.per_rank);
  INFO("replicated keys that differ: " << joined(rep));
  CHECK(rep.empty());
  INFO("per-rank keys that differ: " << joined(mine));
  CHECK(mine.empty());
  // The state compared is the whole loop's, not a part of it.
  for (const char* k : {"model.fc1.weight", "optim.fc1.weight.exp_avg", "scaler.scale", "sched.step",
                        "loader.batch"})
    CHECK(a.final_state.replicated.count(k));
  for (const char* k : {"rng.default.offset", "rng.dropout.offset", "ddp.order", "ddp.step"})
    CHECK(a.final_state.per_rank.count(k));
  if (c.compress != "none") CHECK(a.final_state.per_rank.count("ddp.residual.fc1.weight"));
  if (is_half(c.dtype)) CHECK(a.final_state.replicated.count("optim.fc1.weight.master"));
  if (c.inf_step >= 0) CHECK(a.final_state.replicated.at("scaler.skipped").item<double>() >= 1);
  CHECK(a.final_state.replicated.at("loader.epoch").item<int64_t>() == 1);  // crossed into epoch 1
}

void erase_prefix(nn::StateDict& d, const std::string& prefix) {
  for (auto it = d.begin(); it != d.end();) it = it->first.rfind(prefix, 0) == 0 ? d.erase(it) : std::next(it);
}

}  // namespace

TEST_CASE("Resume under DDP without compression is bitwise the uninterrupted run", "[ranks]") {
  expect_exact_resume({}, 5);
}

TEST_CASE("Resume under DDP with 2:4 compression (f32 wire) is bitwise the uninterrupted run", "[ranks]") {
  LoopConfig c;
  c.compress = "24";
  expect_exact_resume(c, 5);
  // Saved after the first step: the buckets are not rebuilt yet, the order seen is in the state.
  expect_exact_resume(c, 1);
}

TEST_CASE("Resume under DDP with 2:4 compression (bf16 wire) is bitwise the uninterrupted run", "[ranks]") {
  LoopConfig c;
  c.compress = "24-bf16";
  expect_exact_resume(c, 5);
}

TEST_CASE("Resume with bf16 parameters (f32 master weights) is bitwise the uninterrupted run", "[ranks]") {
  LoopConfig c;
  c.dtype = DType::bf16;
  expect_exact_resume(c, 5);
  c.compress = "24";
  expect_exact_resume(c, 4);
}

TEST_CASE("Resume with f16 parameters and a dynamic loss scaler that skipped a step is bitwise", "[ranks]") {
  LoopConfig c;
  c.dtype = DType::f16;
  c.inf_step = 2;  // before the save: scale 1024 -> 512, tracker reset; it grows again after it
  expect_exact_resume(c, 5);
  c.inf_step = 7;  // after the save
  c.compress = "24";
  expect_exact_resume(c, 5);
}

// Each part's state matters: a resume that leaves any one of them at its fresh value ends
// somewhere else than the uninterrupted run (so the exact-resume cases above would catch it).
TEST_CASE("A resume that leaves out any one part of the state does not match", "[ranks]") {
  LoopConfig c;
  c.dtype = DType::f16;
  c.compress = "24";
  c.inf_step = 2;
  Run a = uninterrupted(c);
  auto drop_part = [](const char* prefix, auto&& forget) -> LeaveOut {
    return [prefix, forget](checkpoint::RankState& s, checkpoint::TrainState& ts) {
      erase_prefix(s.replicated, prefix);
      erase_prefix(s.per_rank, prefix);
      forget(ts);
    };
  };
  std::vector<std::pair<std::string, LeaveOut>> cases = {
      {"model", drop_part("model.", [](auto& ts) { ts.model = nullptr; })},
      {"optimizer", drop_part("optim.", [](auto& ts) { ts.optimizer = nullptr; })},
      {"scaler", drop_part("scaler.", [](auto& ts) { ts.scaler = nullptr; })},
      {"scheduler", drop_part("sched.", [](auto& ts) { ts.scheduler = nullptr; })},
      {"loader", drop_part("loader.", [](auto& ts) { ts.loader = nullptr; })},
      {"default generator", drop_part("rng.default.", [](auto& ts) { ts.generators.erase("default"); })},
      {"dropout generator", drop_part("rng.dropout.", [](auto& ts) { ts.generators.erase("dropout"); })},
      {"ddp", drop_part("ddp.", [](auto& ts) { ts.extras.clear(); })},
      {"ddp residuals (zeroed)", [](checkpoint::RankState& s, checkpoint::TrainState&) {
         for (auto& [k, t] : s.per_rank)
           if (k.rfind("ddp.residual.", 0) == 0) ops::fill_(t, 0);
       }},
      {"ddp mask phase (reset)", [](checkpoint::RankState& s, checkpoint::TrainState&) {
         s.per_rank["ddp.compressor.step"] = from_vector(std::vector<int64_t>{0}, {});
       }},
  };
  for (const auto& [what, leave_out] : cases) {
    INFO("left out: " << what);
    Run b = resumed(c, 5, leave_out);
    CHECK(!(bitwise_differences(a.final_state.replicated, b.final_state.replicated).empty() &&
            bitwise_differences(a.final_state.per_rank, b.final_state.per_rank).empty()));
    if (what.rfind("ddp ", 0) == 0) {
      // The residuals and the mask phase change the parameters the run ends with, not only
      // the compressor's own state.
      nn::StateDict pa, pb;
      for (auto& [k, t] : a.final_state.replicated) if (k.rfind("model.", 0) == 0) pa[k] = t;
      for (auto& [k, t] : b.final_state.replicated) if (k.rfind("model.", 0) == 0) pb[k] = t;
      CHECK(!bitwise_differences(pa, pb).empty());
    }
  }
}

TEST_CASE("DDP's state refuses another compression setting, a model change or a mid-accumulation save", "[ranks]") {
  auto pg = comm::init().world;
  LoopConfig plain, compressed;
  compressed.compress = "24";
  Loop a(compressed, pg), b(plain, pg);
  a.step(0);
  a.step(1);
  nn::StateDict with_residuals = a.ddp->state_dict();
  CHECK_THROWS_WITH(b.ddp->load_state_dict(with_residuals),
                    Catch::Contains("saved with gradient compression") && Catch::Contains("this DDP has none"));
  CHECK_THROWS_WITH(a.ddp->load_state_dict(b.ddp->state_dict()),
                    Catch::Contains("saved without gradient compression"));
  nn::StateDict bad = with_residuals;
  bad["order"] = from_vector(std::vector<int64_t>{0, 0, 1, 2}, {4});
  bad["residual.fc1.bias"] = zeros({3});
  bad.erase("residual.fc2.bias");
  bad["extra"] = zeros({1});
  CHECK_THROWS_WITH(a.ddp->load_state_dict(bad),
                    Catch::Contains("'order' is not a permutation") &&
                        Catch::Contains("'residual.fc1.bias' is [3] f32 cpu, expected [24] f32") &&
                        Catch::Contains("missing keys (1): 'residual.fc2.bias'") &&
                        Catch::Contains("unexpected keys (1): 'extra'"));
  bad = with_residuals;
  bad["params"] = from_vector(std::vector<int64_t>{12345}, {});
  CHECK_THROWS_WITH(a.ddp->load_state_dict(bad), Catch::Contains("saved for other parameters"));
  // A failed load changed nothing: the layout and the residuals are what they were.
  CHECK(bitwise_differences(a.ddp->state_dict(), with_residuals).empty());
  {
    auto guard = a.ddp->no_sync();
    data::Batch batch = a.loader->next();
    cross_entropy(a.ddp->forward(batch.data), batch.target).backward();
    CHECK_THROWS_WITH(a.ddp->state_dict(), Catch::Contains("accumulated under no_sync()"));
  }
}

TEST_CASE("restore of a whole loop checks every part before it changes any", "[ranks]") {
  auto pg = comm::init().world;
  LoopConfig compressed;
  compressed.compress = "24";
  Loop a(compressed, pg), b(LoopConfig{}, pg);
  for (int64_t s = 0; s < 3; ++s) a.step(s);
  checkpoint::RankState s = snapshot(checkpoint::collect(a.ts));
  checkpoint::RankState before = snapshot(checkpoint::collect(b.ts));
  // b has no compressor, and the state has a part b lacks and lacks one b has.
  s.replicated["ema.fc1.weight"] = zeros({2});
  erase_prefix(s.replicated, "sched.");
  s.per_rank["rng.default.offset"] = zeros({1});
  CHECK_THROWS_WITH(checkpoint::restore(b.ts, s.replicated, s.per_rank),
                    Catch::Contains("nothing was changed") &&
                        Catch::Contains("the replicated state has no 'sched.' keys") &&
                        Catch::Contains("unexpected keys in the replicated state (this TrainState has no 'ema'): 'ema.fc1.weight'") &&
                        Catch::Contains("'rng.default.offset' is [1] f32 cpu, expected one i64") &&
                        Catch::Contains("ddp: DistributedDataParallel::load_state_dict") &&
                        Catch::Contains("saved with gradient compression"));
  CHECK(bitwise_differences(snapshot(checkpoint::collect(b.ts)).replicated, before.replicated).empty());
  CHECK(bitwise_differences(snapshot(checkpoint::collect(b.ts)).per_rank, before.per_rank).empty());
}

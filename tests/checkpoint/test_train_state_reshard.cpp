// A state saved by 2 ranks resumed on 1 and on 4 (checkpoint::restore_resharded): the
// replicated state comes back bit for bit, each generator keeps this rank's seed and stream and
// moves past every saved rank's offset, each 2:4 residual is the mean of the saved ranks' (so the
// mean residual over ranks, what error feedback owes the averaged gradient, is unchanged), and
// training goes on with the ranks in agreement. The saved run is world ranks {0,1} (and {2,3}
// under 4 ranks, the same run again), so every rank holds both saved ranks' states.
#include "train_loop.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

constexpr int64_t kSaveAt = 5;

// Every rank of `pg` gets every rank's `d` (the same keys, shapes and dtypes on all).
std::vector<nn::StateDict> allgather_dicts(comm::ProcessGroup& pg, const nn::StateDict& d) {
  std::vector<nn::StateDict> out(size_t(pg.size()));
  for (const auto& [k, t] : d) {
    Tensor in = ops::contiguous(ops::reshape(t, {t.numel()}));
    Tensor all = empty({t.numel() * pg.size()}, in.options());
    pg.allgather(all, in)->wait();
    for (int r = 0; r < pg.size(); ++r)
      out[size_t(r)][k] = ops::reshape(ops::clone(ops::narrow(all, 0, r * t.numel(), t.numel())), t.shape());
  }
  return out;
}

struct Saved {
  checkpoint::RankState mine;          // this world rank's saved rank's
  std::vector<nn::StateDict> per_rank;  // both saved ranks'
  std::vector<std::vector<std::string>> layout;
};

Saved save_on_two(const LoopConfig& c) {
  auto world = comm::init().world;
  REQUIRE(world->size() % 2 == 0);
  auto pair = world->split(world->rank() / 2, world->rank() % 2, "pair");
  REQUIRE(pair->size() == 2);
  Loop l(c, pair);
  for (int64_t s = 0; s < kSaveAt; ++s) l.step(s);
  Saved out;
  out.mine = snapshot(checkpoint::collect(l.ts));
  out.per_rank = allgather_dicts(*pair, out.mine.per_rank);
  out.layout = l.ddp->bucket_layout();
  return out;
}

int64_t i64_of(const Tensor& t) { return t.item<int64_t>(); }

// Restores the saved state into a fresh Loop on `group`, checks what restore_resharded
// promises, trains 3 more steps and checks the ranks still agree.
void resume_on(const std::shared_ptr<comm::ProcessGroup>& group, const LoopConfig& c, const Saved& saved) {
  INFO("resumed on " << group->size() << " rank(s), this is rank " << group->rank());
  Loop l(c, group);
  PhiloxState fresh_dropout = l.drop_gen.state(), fresh_default = default_generator().state();
  checkpoint::restore_resharded(l.ts, saved.mine.replicated, 2, [&](int r) { return saved.per_rank.at(size_t(r)); });
  checkpoint::RankState now = snapshot(checkpoint::collect(l.ts));
  CHECK(bitwise_differences(now.replicated, saved.mine.replicated).empty());

  auto max_offset = [&](const std::string& name) {
    return std::max(i64_of(saved.per_rank[0].at("rng." + name + ".offset")),
                    i64_of(saved.per_rank[1].at("rng." + name + ".offset")));
  };
  CHECK(l.drop_gen.state().seed == fresh_dropout.seed);
  CHECK(l.drop_gen.state().stream == uint64_t(group->rank()));  // this rank's own stream
  CHECK(int64_t(l.drop_gen.state().offset) == max_offset("dropout"));
  CHECK(default_generator().state().seed == fresh_default.seed);
  CHECK(int64_t(default_generator().state().offset) == max_offset("default"));

  CHECK(l.ddp->bucket_layout() == saved.layout);
  CHECK(i64_of(now.per_rank.at("ddp.compressor.step")) == i64_of(saved.per_rank[0].at("ddp.compressor.step")));
  int residuals = 0;
  for (const auto& [k, t] : now.per_rank) {
    if (k.rfind("ddp.residual.", 0) != 0) continue;
    ++residuals;
    INFO(k);
    std::vector<double> r0 = to_vector(saved.per_rank[0].at(k)), r1 = to_vector(saved.per_rank[1].at(k));
    std::vector<double> mean;
    for (size_t i = 0; i < r0.size(); ++i) mean.push_back((float(r0[i]) + float(r1[i])) / 2.0f);
    expect_close(t, mean, 1e-7, 0, k);
    // The residuals are not all zero, so the check says something.
    double norm = 0;
    for (double v : mean) norm += std::fabs(v);
    CHECK(norm > 0);
  }
  CHECK(residuals == 4);

  for (int64_t s = kSaveAt; s < kSaveAt + 3; ++s) CHECK(std::isfinite(l.step(s)));
  // DDP kept the ranks together: every rank holds rank 0's parameters.
  for (auto& [name, p] : l.model->named_parameters()) {
    Tensor mine = ops::contiguous(ops::to(p, DType::f32));
    Tensor root = ops::clone(mine);
    group->broadcast(root, 0)->wait();
    INFO(name);
    CHECK(to_vector(mine) == to_vector(root));
  }
}

}  // namespace

TEST_CASE("A state saved by 2 ranks resumes on 1 rank", "[ranks]") {
  LoopConfig c;
  c.compress = "24";
  Saved saved = save_on_two(c);
  auto world = comm::init().world;
  auto alone = world->split(world->rank(), 0, "alone");
  resume_on(alone, c, saved);
}

TEST_CASE("A state saved by 2 ranks resumes on 4 ranks", "[ranks][np4]") {
  auto world = comm::init().world;
  REQUIRE(world->size() == 4);
  LoopConfig c;
  c.compress = "24";
  Saved saved = save_on_two(c);
  resume_on(world, c, saved);
}

TEST_CASE("restore_resharded names a saved rank that lacks a generator and an extra that cannot reshard", "[ranks]") {
  LoopConfig c;
  Saved saved = save_on_two(c);
  auto world = comm::init().world;
  auto alone = world->split(world->rank(), 0, "alone");
  Loop l(c, alone);
  Generator extra_gen(1);
  checkpoint::TrainState ts = l.ts;
  ts.generators["augment"] = &extra_gen;
  auto read = [&](int r) { return saved.per_rank.at(size_t(r)); };
  CHECK_THROWS_WITH(checkpoint::restore_resharded(ts, saved.mine.replicated, 2, read),
                    Catch::Contains("saved rank 0 has no 'rng.augment.offset'"));
  ts = l.ts;
  ts.extras[0].reshard = nullptr;
  CHECK_THROWS_WITH(checkpoint::restore_resharded(ts, saved.mine.replicated, 2, read),
                    Catch::Contains("extra state 'ddp' cannot be resumed on another world size"));
}

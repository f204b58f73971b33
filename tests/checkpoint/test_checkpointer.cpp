// The Checkpointer's round trips, retention and latest pointer, on 1, 2 and 4 ranks
// (tests/checkpoint/tests.cmake runs the [checkpointer] cases under mpirun).
#include "ckpt_testing.h"
#include "fathom/checkpoint/format.h"
#include "fathom/checkpoint/io.h"

using namespace fathom;
using namespace fathom::testing;
using checkpoint::Checkpointer;
using checkpoint::CheckpointerOptions;

namespace {

std::vector<std::string> step_dirs(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  out.erase(std::remove_if(out.begin(), out.end(),
                           [](const std::string& n) { return n.rfind("step_", 0) != 0; }),
            out.end());
  return out;
}

}  // namespace

TEST_CASE("checkpointer round-trips a rank state bitwise, sync and async", "[checkpointer][ranks]") {
  const bool async = GENERATE(false, true);
  INFO("async " << async);
  SharedDir dir;
  const int rank = world().rank(), n = world().size();
  {
    Checkpointer ckpt(dir.path, world(), CheckpointerOptions().async(async));
    CHECK_FALSE(ckpt.load_latest().has_value());  // an empty directory: a fresh start
    for (int64_t step : {10, 20}) ckpt.save(step, make_state(step, rank));
    ckpt.wait();
    CHECK(ckpt.last_save_blocking_seconds() >= 0);
    auto l = ckpt.load_latest();
    REQUIRE(l);
    CHECK(l->step == 20);
    CHECK(l->path == dir / "step_00000020");
    CHECK(l->saved_world_size == n);
    CHECK(l->saved_mesh.dp == n);
    CHECK(l->skipped.empty());
    checkpoint::RankState want = make_state(20, rank);
    expect_same(l->replicated, want.replicated);
    expect_same(l->per_rank, want.per_rank);
    // An older one by its path.
    checkpoint::Loaded old = ckpt.load(dir / "step_00000010");
    CHECK(old.step == 10);
    expect_same(old.per_rank, make_state(10, rank).per_rank);
  }
  sync_ranks();
  // Each rank wrote its own file; the replicated tensors are spread over the ranks.
  auto m = checkpoint::internal::read_manifest(dir / "step_00000020");
  CHECK(m.world_size() == n);
  std::set<int> writers;
  for (auto& e : m.tensors()) {
    if (e.kind() == checkpoint::pb::REPLICATED) writers.insert(e.rank());
    CHECK(e.offset() % checkpoint::internal::kAlign == 0);
  }
  CHECK(int(writers.size()) == n);
  for (int r = 0; r < n; ++r) CHECK(fs::exists(dir / ("step_00000020/rank_" + std::to_string(r) + ".bin")));
  CHECK(read_text(dir / "latest") == "step_00000020\n");
}

TEST_CASE("checkpointer snapshot: async save is unaffected by later changes", "[checkpointer][ranks]") {
  SharedDir dir;
  const int rank = world().rank();
  Checkpointer ckpt(dir.path, world(), CheckpointerOptions().async(true));
  checkpoint::RankState s = make_state(3, rank);
  checkpoint::RankState want = make_state(3, rank);
  ckpt.save(3, s);
  // The training loop goes on at once: overwrite everything in place.
  for (auto* d : {&s.replicated, &s.per_rank})
    for (auto& [name, t] : *d) ops::fill_(t, 1);
  ckpt.wait();
  auto l = ckpt.load_latest();
  REQUIRE(l);
  expect_same(l->replicated, want.replicated);
  expect_same(l->per_rank, want.per_rank);
}

TEST_CASE("checkpointer keeps the last K checkpoints and updates latest", "[checkpointer][ranks]") {
  SharedDir dir;
  const int rank = world().rank();
  {
    Checkpointer ckpt(dir.path, world(), CheckpointerOptions().keep(2));
    for (int64_t step = 1; step <= 5; ++step) {
      ckpt.save(step, make_state(step, rank));
      ckpt.wait();
      sync_ranks();
      CHECK(read_text(dir / "latest") == checkpoint::internal::step_dir_name(step) + "\n");
    }
  }
  sync_ranks();
  CHECK(step_dirs(dir.path) == std::vector<std::string>{"step_00000004", "step_00000005"});
  // keep(0) keeps everything; saving a step again replaces it.
  SharedDir dir2;
  Checkpointer all(dir2.path, world(), CheckpointerOptions().keep(0).async(false));
  for (int64_t step : {1, 2, 3, 4}) all.save(step, make_state(step, rank));
  all.save(4, make_state(44, rank));
  sync_ranks();
  CHECK(step_dirs(dir2.path).size() == 4);
  auto l = all.load_latest();
  REQUIRE(l);
  CHECK(l->step == 4);
  expect_same(l->per_rank, make_state(44, rank).per_rank);
  // Only complete checkpoints and `latest` remain: no temporary directory of any save.
  sync_ranks();
  for (auto& e : fs::directory_iterator(dir2.path))
    CHECK(e.path().filename().string().rfind(".tmp.", 0) != 0);
}

TEST_CASE("checkpointer: empty and undefined states, bad arguments", "[checkpointer][ranks]") {
  SharedDir dir;
  Checkpointer ckpt(dir.path, world(), CheckpointerOptions().async(false));
  ckpt.save(0, {});  // nothing at all is a valid state
  auto l = ckpt.load_latest();
  REQUIRE(l);
  CHECK(l->step == 0);
  CHECK(l->replicated.empty());
  CHECK(l->per_rank.empty());

  checkpoint::RankState bad;
  bad.replicated["w"] = Tensor();
  CHECK_THROWS_WITH(ckpt.save(1, bad), Catch::Contains("replicated tensor \"w\" is undefined"));
  CHECK_THROWS_WITH(ckpt.save(-1, {}), Catch::Contains("step -1 is negative"));
  checkpoint::RankState ctl;
  ctl.per_rank["a\nb"] = zeros({1});
  CHECK_THROWS_WITH(ckpt.save(1, ctl), Catch::Contains("control character"));
  // After refused saves the checkpointer still works.
  ckpt.save(2, make_state(2, world().rank()));
  CHECK(ckpt.load_latest()->step == 2);
  CHECK_THROWS_WITH(Checkpointer(dir.path, world(), CheckpointerOptions().keep(-1)),
                    Catch::Contains("keep(-1) must be >= 0"));
  CHECK_THROWS_WITH(ckpt.load_rank_state(*l, world().size()), Catch::Contains("is not in [0, "));
}

TEST_CASE("checkpointer: a rank with different replicated tensors fails every rank", "[checkpointer][ranks]") {
  if (world().size() < 2) return;  // a disagreement needs two ranks
  SharedDir dir;
  Checkpointer ckpt(dir.path, world(), CheckpointerOptions().async(true));
  checkpoint::RankState s = make_state(1, world().rank());
  if (world().rank() == 1) s.replicated["big"] = zeros({3}, DType::f32);
  CHECK_THROWS_WITH(ckpt.save(1, s), Catch::Contains("do not save the same thing") &&
                                         Catch::Contains("rank 1 0x"));
  // A step that differs between ranks too.
  CHECK_THROWS_WITH(ckpt.save(world().rank() == 0 ? 5 : 6, make_state(5, world().rank())),
                    Catch::Contains("step: rank 0 5, rank 1 6"));
  CHECK_FALSE(ckpt.load_latest().has_value());
  // An error on one rank (here: an undefined tensor) is every rank's error.
  checkpoint::RankState one = make_state(7, world().rank());
  if (world().rank() == 1) one.per_rank["x"] = Tensor();
  CHECK_THROWS_WITH(ckpt.save(7, one), Catch::Contains("rank 1: per_rank tensor \"x\" is undefined"));
}

TEST_CASE("checkpointer: a different world size loads replicated state and reads any rank's own",
          "[checkpointer][ranks]") {
  SharedDir dir;
  const int n = world().size();
  {
    Checkpointer ckpt(dir.path, world());
    ckpt.save(8, make_state(8, world().rank()));
    ckpt.wait();
  }
  // Rank 0 alone, as a job of one process would.
  auto solo = world().split(world().rank() == 0 ? 0 : -1, 0, "solo");
  if (solo) {
    Checkpointer one(dir.path, *solo);
    auto l = one.load_latest();
    REQUIRE(l);
    CHECK(l->saved_world_size == n);
    expect_same(l->replicated, make_state(8, 0).replicated);
    if (n == 1) {
      expect_same(l->per_rank, make_state(8, 0).per_rank);
    } else {
      CHECK(l->per_rank.empty());
    }
    for (int r = 0; r < n; ++r) expect_same(one.load_rank_state(*l, r), make_state(8, r).per_rank);
  }
  sync_ranks();
}

TEST_CASE("checkpoint format: names and frames", "[checkpoint]") {
  using namespace checkpoint::internal;
  int64_t step = -1;
  CHECK(step_dir_name(120) == "step_00000120");
  CHECK(step_dir_name(1234567890123) == "step_1234567890123");
  CHECK(parse_step_dir_name("step_00000120", &step));
  CHECK(step == 120);
  CHECK(parse_step_dir_name("step_1234567890123", &step));
  for (const char* bad : {"step_120", "step_000000120", "step_", "step_0000012a", "xstep_00000001",
                          "step_99999999999999999999", "step_-0000001"})
    CHECK_FALSE(parse_step_dir_name(bad, &step));
  std::string f = frame(FrameKind::manifest, "payload");
  CHECK(unframe(FrameKind::manifest, f, "t") == "payload");
  CHECK_THROWS_WITH(unframe(FrameKind::done, f, "t"), Catch::Contains("not a Fathom rank-done record"));
  // XXH3-64 of a known input (xxHash's reference value for the empty input).
  CHECK(xxh3("", 0) == 0x2d06800538d394c2ull);
  Xxh3 h;
  h.update("ab", 2);
  h.update("c", 1);
  CHECK(h.digest() == xxh3("abc", 3));
}

TEST_CASE("checkpointer snapshots CUDA tensors to host and loads them back", "[cuda]") {
  SharedDir dir;
  const int rank = world().rank();
  checkpoint::RankState host = make_state(4, rank), dev;
  for (auto& [name, t] : host.replicated) dev.replicated[name] = ops::to(t, Device::cuda());
  for (auto& [name, t] : host.per_rank) dev.per_rank[name] = ops::to(t, Device::cuda());
  dev.replicated["cuda.view"] = ops::to(pattern({6, 4}, DType::bf16, 9), Device::cuda()).transpose(0, 1);
  host.replicated["cuda.view"] = pattern({6, 4}, DType::bf16, 9).transpose(0, 1);
  for (bool async : {false, true}) {
    Checkpointer ckpt(dir.path, world(), CheckpointerOptions().async(async));
    ckpt.save(async ? 2 : 1, dev);
    for (auto& [name, t] : dev.replicated) ops::fill_(t, 0);  // the snapshot is already taken
    ckpt.wait();
    auto l = ckpt.load_latest();
    REQUIRE(l);
    expect_same(l->replicated, host.replicated);
    expect_same(l->per_rank, host.per_rank);
    for (auto& [name, t] : host.replicated) dev.replicated[name] = ops::to(t, Device::cuda());
    dev.replicated["cuda.view"] = ops::to(pattern({6, 4}, DType::bf16, 9), Device::cuda()).transpose(0, 1);
  }
}

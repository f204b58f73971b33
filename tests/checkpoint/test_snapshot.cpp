// An async save defers the copy of large CPU tensors to its own thread: save() returns before
// the copy, and a writer of the saved state (Optimizer::step) waits for it, so the checkpoint
// holds the values of save() time, bitwise. A test hook delays the copy
// (FATHOM_CHECKPOINT_TEST_SNAPSHOT_DELAY_MS) so that without the wait the step would win the
// race every time.
#include <chrono>

#include "ckpt_testing.h"
#include "fathom/checkpoint/io.h"
#include "fathom/core/snapshot.h"
#include "fathom/optim/optimizer.h"

using namespace fathom;
using namespace fathom::testing;
using checkpoint::Checkpointer;
using checkpoint::CheckpointerOptions;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct DelayedSnapshots {
  explicit DelayedSnapshots(int ms) { ::setenv("FATHOM_CHECKPOINT_TEST_SNAPSHOT_DELAY_MS", std::to_string(ms).c_str(), 1); }
  ~DelayedSnapshots() { ::unsetenv("FATHOM_CHECKPOINT_TEST_SNAPSHOT_DELAY_MS"); }
};

}  // namespace

TEST_CASE("async save: the optimizer step waits for the deferred snapshot, which holds save()'s values",
          "[checkpointer][ranks]") {
  SharedDir dir;
  const int64_t n = int64_t(checkpoint::internal::kDeferMinBytes / 4) * 2;  // deferred: 2x the cut
  Tensor w = pattern({n}, DType::f32, 3);
  Tensor small = pattern({16}, DType::f32, 5);  // under the cut: copied before save returns
  Tensor before = ops::clone(w), small_before = ops::clone(small);
  optim::SGD opt({{"w", w}, {"small", small}}, optim::SGDOptions(0.5));
  opt.set_grad_source("w", full({n}, 1.0));
  opt.set_grad_source("small", full({16}, 1.0));

  checkpoint::RankState s;
  s.replicated["w"] = w;
  s.replicated["small"] = small;
  const int delay_ms = 300;
  {
    DelayedSnapshots delay(delay_ms);
    Checkpointer ckpt(dir.path, world(), CheckpointerOptions().async(true));
    auto t0 = std::chrono::steady_clock::now();
    ckpt.save(1, s);
    const double call = seconds_since(t0);
    CHECK(call < 0.8 * delay_ms * 1e-3);  // returned before the copy (it sleeps first)
    opt.step();  // waits for the copy of w on the rank that writes w
    const double until_step = seconds_since(t0);
    CHECK_FALSE(bitwise_equal(w, before));  // the step happened (after the copy)
    ckpt.wait();
    // Replicated tensors are spread over the ranks: only w's writer defers a copy.
    std::vector<int> owner = checkpoint::internal::assign_replicated(s.replicated, world().size());
    const bool writes_w = owner[1] == world().rank();  // map order: "small", "w"
    INFO("rank " << world().rank() << " writes w: " << writes_w);
    if (writes_w) {
      CHECK(until_step >= 0.9 * delay_ms * 1e-3);
      // The blocking figure counts the step's wait, not only the call.
      CHECK(ckpt.last_save_blocking_seconds() >= 0.8 * delay_ms * 1e-3);
    } else {
      CHECK(until_step < 0.8 * delay_ms * 1e-3);
    }
    auto l = ckpt.load_latest();
    REQUIRE(l);
    CHECK(bitwise_equal(l->replicated.at("w"), before));
    CHECK(bitwise_equal(l->replicated.at("small"), small_before));
  }
}

TEST_CASE("async save: nothing waits when no writer comes before the copy ends", "[checkpointer][ranks]") {
  SharedDir dir;
  const int64_t n = int64_t(checkpoint::internal::kDeferMinBytes / 4) * 2;
  checkpoint::RankState s;
  s.replicated["w"] = pattern({n}, DType::f32, 7);
  Checkpointer ckpt(dir.path, world(), CheckpointerOptions().async(true));
  const double waited0 = snapshot_wait_seconds();
  ckpt.save(1, s);
  ckpt.wait();         // the copy is done once the save is
  await_snapshots();   // returns at once
  CHECK(snapshot_wait_seconds() == waited0);
  auto l = ckpt.load_latest();
  REQUIRE(l);
  CHECK(bitwise_equal(l->replicated.at("w"), s.replicated.at("w")));
}

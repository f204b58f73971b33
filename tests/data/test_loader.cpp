#include "data/data_testing.h"

#include <atomic>
#include <chrono>
#include <numeric>
#include <thread>

#include "fathom/core/threads.h"
#include "fathom/data/idx.h"
#include "fathom/data/loader.h"

using namespace fathom;
using fathom::testing::numbered;

namespace {

std::vector<int64_t> targets(const data::Batch& b) {
  std::vector<int64_t> out;
  for (double t : to_vector(b.target)) out.push_back(int64_t(t));
  return out;
}

std::vector<std::vector<int64_t>> take(data::DataLoader& l, int n) {
  std::vector<std::vector<int64_t>> out;
  for (int i = 0; i < n; ++i) out.push_back(targets(l.next()));
  return out;
}

// Examples via get() only (the default, stacking get_batch); throws on one index or sleeps.
class Scripted : public data::Dataset {
 public:
  Scripted(int64_t n, int64_t bad = -1, int sleep_ms = 0) : n_(n), bad_(bad), sleep_ms_(sleep_ms) {}
  int64_t size() const override { return n_; }
  data::Example get(int64_t i) const override {
    FATHOM_CHECK(i != bad_, "Scripted: sample ", i, " is corrupt");
    if (sleep_ms_) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    ++gets;
    return {from_vector(std::vector<double>{double(i), -double(i)}, {2}),
            from_vector(std::vector<int64_t>{i}, {})};
  }
  mutable std::atomic<int64_t> gets{0};

 private:
  int64_t n_, bad_;
  int sleep_ms_;
};

}  // namespace

TEST_CASE("DataLoader: epochs, order, shards and drop_last match the sampler", "[data]") {
  auto ds = numbered(103);
  for (int64_t prefetch : {0, 2}) {
    data::DataLoader l(ds, data::DataLoaderOptions(10).seed(7).prefetch(prefetch));
    CHECK(l.batches_per_epoch() == 10);
    CHECK(l.local_batch() == 10);
    data::DistributedSampler s(103, 10, 0, 1, true, 7);
    int n = 0;
    for (auto& batch : l) {
      CHECK(batch.data.shape() == Shape{10, 3});
      CHECK(targets(batch) == s.next());
      ++n;
    }
    CHECK(n == 10);
    CHECK(l.position() == data::LoaderPosition{1, 0});
    // The next epoch is a different order; next() rolls over epochs like the sampler.
    auto e1 = take(l, 12);
    for (auto& b : e1) CHECK(b == s.next());
    CHECK(l.position() == data::LoaderPosition{2, 2});
  }
  // Same seed, same order; different seed, different order; shuffle(false) is 0..n-1.
  data::DataLoader a(ds, data::DataLoaderOptions(10).seed(7)), b(ds, data::DataLoaderOptions(10).seed(7));
  data::DataLoader c(ds, data::DataLoaderOptions(10).seed(8));
  data::DataLoader plain(ds, data::DataLoaderOptions(10).shuffle(false));
  auto ta = take(a, 3);
  CHECK(ta == take(b, 3));
  CHECK(ta != take(c, 3));
  CHECK(take(plain, 1)[0] == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  // drop_last off: 11 batches, the last holding the 3 left over.
  data::DataLoader keep(ds, data::DataLoaderOptions(10).seed(7).drop_last(false));
  CHECK(keep.batches_per_epoch() == 11);
  std::vector<int64_t> seen;
  int64_t last = -1;
  for (auto& batch : keep) {
    auto t = targets(batch);
    last = int64_t(t.size());
    seen.insert(seen.end(), t.begin(), t.end());
  }
  CHECK(last == 3);
  std::sort(seen.begin(), seen.end());
  std::vector<int64_t> all(103);
  std::iota(all.begin(), all.end(), 0);
  CHECK(seen == all);
}

TEST_CASE("DataLoader: every rank's shards together are the world-1 batch", "[data]") {
  auto ds = numbered(103);
  for (bool drop_last : {true, false}) {
    data::DataLoader one(ds, data::DataLoaderOptions(12).seed(3).drop_last(drop_last).prefetch(0));
    auto want = take(one, 2 * int(one.batches_per_epoch()));
    for (int world : {2, 3, 4}) {
      std::vector<std::unique_ptr<data::DataLoader>> ranks;
      for (int r = 0; r < world; ++r)
        ranks.push_back(std::make_unique<data::DataLoader>(
            ds, data::DataLoaderOptions(12).seed(3).drop_last(drop_last).rank(r).world(world)));
      CHECK(ranks[0]->local_batch() == 12 / world);
      for (auto& w : want) {
        std::vector<int64_t> got;
        for (auto& l : ranks) {
          auto t = targets(l->next());
          got.insert(got.end(), t.begin(), t.end());
        }
        CHECK(got == w);
      }
    }
  }
  CHECK_THROWS_WITH(data::DataLoader(ds, data::DataLoaderOptions(10).world(3)),
                    Catch::Contains("divide by the world size 3"));
  CHECK_THROWS_WITH(data::DataLoader(ds, data::DataLoaderOptions(10).prefetch(-1)),
                    Catch::Contains("prefetch must be 0"));
  CHECK_THROWS_WITH(data::DataLoader(nullptr, data::DataLoaderOptions(10)), Catch::Contains("dataset is null"));
}

TEST_CASE("DataLoader: prefetch changes nothing, resume equals the uninterrupted stream", "[data]") {
  auto ds = numbered(103);
  auto opts = data::DataLoaderOptions(10).seed(11).drop_last(false);
  data::DataLoader sync(ds, data::DataLoaderOptions(opts).prefetch(0));
  auto want = take(sync, 30);
  int threads_before = get_num_threads();
  for (int64_t prefetch : {1, 2, 5}) {
    data::DataLoader l(ds, data::DataLoaderOptions(opts).prefetch(prefetch));
    CHECK(take(l, 30) == want);
  }
  // The worker runs its gathers on its own thread without changing the process's setting.
  CHECK(get_num_threads() == threads_before);
  for (int64_t prefetch : {0, 2}) {
    // Stop mid-epoch (batch 4 of epoch 1), save, and resume in a fresh loader.
    data::LoaderPosition saved;
    std::vector<std::vector<int64_t>> got;
    {
      data::DataLoader l(ds, data::DataLoaderOptions(opts).prefetch(prefetch));
      got = take(l, 15);
      saved = l.position();
    }  // destroyed with batches loaded ahead
    CHECK(saved == data::LoaderPosition{1, 4});
    data::DataLoader r(ds, data::DataLoaderOptions(opts).prefetch(prefetch));
    r.set_position(saved);
    int n = 0;
    for (auto& batch : r) {  // the rest of epoch 1
      got.push_back(targets(batch));
      ++n;
    }
    CHECK(n == 7);
    auto more = take(r, 8);
    got.insert(got.end(), more.begin(), more.end());
    CHECK(got == want);
    // Jumping back restarts the worker there.
    r.set_position({0, 3});
    CHECK(take(r, 2) == std::vector<std::vector<int64_t>>{want[3], want[4]});
    r.set_epoch(2);
    CHECK(take(r, 1)[0] == want[22]);
    CHECK_THROWS_WITH(r.set_position({0, 11}), Catch::Contains("outside an epoch of 11 batches"));
  }
}

TEST_CASE("DataLoader: a loading error reaches the consumer with its message", "[data]") {
  // Unshuffled with batches of 10, sample 42 is in batch 4.
  auto ds = std::make_shared<Scripted>(100, 42);
  for (int64_t prefetch : {0, 2}) {
    data::DataLoader l(ds, data::DataLoaderOptions(10).shuffle(false).prefetch(prefetch));
    auto ok = take(l, 4);
    CHECK(ok[3][0] == 30);
    CHECK_THROWS_WITH(l.next(), Catch::Contains("Scripted: sample 42 is corrupt"));
    CHECK(l.position() == data::LoaderPosition{0, 4});
    CHECK_THROWS_WITH(l.next(), Catch::Contains("sample 42 is corrupt"));  // a retry fails alike
    l.set_position({0, 5});
    CHECK(take(l, 1)[0][0] == 50);
  }
  // Through range-for too.
  data::DataLoader l(ds, data::DataLoaderOptions(10).shuffle(false));
  auto loop = [&] {
    for (auto& b : l) (void)b;
  };
  CHECK_THROWS_WITH(loop(), Catch::Contains("sample 42 is corrupt"));
}

TEST_CASE("DataLoader: destroying or restarting mid-epoch returns promptly", "[data]") {
  // 25 ms a sample, 4 samples a batch: a worker that ignored the stop would load 8 batches
  // ahead (800 ms); a prompt one finishes at most the batch in flight (100 ms).
  auto ds = std::make_shared<Scripted>(400, -1, 25);
  double destroy_s;
  {
    auto l = std::make_unique<data::DataLoader>(ds, data::DataLoaderOptions(4).prefetch(8));
    take(*l, 1);
    auto t0 = std::chrono::steady_clock::now();
    l.reset();
    destroy_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  CHECK(destroy_s < 0.5);
  CHECK(ds->gets.load() < 4 * 8);
  {
    data::DataLoader l(ds, data::DataLoaderOptions(4).prefetch(8));
    take(l, 1);
    for (int i = 0; i < 5; ++i) l.set_position({0, i});
    CHECK(take(l, 1)[0].size() == 4);
  }
  // The worker loads ahead while the consumer is busy, but never more than prefetch batches.
  {
    auto slow = std::make_shared<Scripted>(400, -1, 5);
    data::DataLoader l(slow, data::DataLoaderOptions(4).prefetch(2));
    take(l, 1);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (slow->gets.load() < 3 * 4 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(slow->gets.load() == 3 * 4);
  }
  // A loader that never loaded starts no thread and is destroyed at once.
  { data::DataLoader idle(ds, data::DataLoaderOptions(4)); }
}

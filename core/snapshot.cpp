#include "fathom/core/snapshot.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace fathom {
namespace {

// pending_count counts pending snapshots; the copier's release (in end) pairs with the acquire
// in await_snapshots, so a writer that saw 0 sees every read the copier made as finished.
std::atomic<int> pending_count{0};
std::mutex mu;
std::condition_variable cv;
std::atomic<int64_t> waited_ns{0};

}  // namespace

void await_snapshots() {
  if (pending_count.load(std::memory_order_acquire) == 0) return;
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [] { return pending_count.load(std::memory_order_acquire) == 0; });
  }
  waited_ns.fetch_add(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count(),
      std::memory_order_relaxed);
}

double snapshot_wait_seconds() { return 1e-9 * double(waited_ns.load(std::memory_order_relaxed)); }

SnapshotPending SnapshotPending::begin() {
  pending_count.fetch_add(1, std::memory_order_relaxed);
  SnapshotPending p;
  p.active_ = true;
  return p;
}

SnapshotPending& SnapshotPending::operator=(SnapshotPending&& o) noexcept {
  if (this != &o) {
    end();
    active_ = o.active_;
    o.active_ = false;
  }
  return *this;
}

void SnapshotPending::end() {
  if (!active_) return;
  active_ = false;
  {
    // Under the lock, so a waiter between its predicate check and its sleep cannot miss it.
    std::lock_guard<std::mutex> lock(mu);
    pending_count.fetch_sub(1, std::memory_order_release);
  }
  cv.notify_all();
}

}  // namespace fathom

#pragma once
// Background snapshots of live training state. An asynchronous checkpoint copies the model and
// optimizer tensors to host memory on its own thread while the next step's forward and backward
// run; whatever writes such state in place must first wait for that copy to end:
//
//   await_snapshots();   // Optimizer::step, a compressor's residual update, load_state_dict
//   ... write parameters / optimizer state / residuals in place ...
//
// await_snapshots() is one acquire load when no snapshot is being taken. The rule
// (docs/checkpoint.md): code that changes saved tensors in place between Checkpointer::save and
// the next optimizer step calls await_snapshots() first; Fathom's own writers do.
#include <cstdint>

namespace fathom {

// Blocks while any background snapshot is still copying; returns at once otherwise.
void await_snapshots();
// Seconds await_snapshots() has blocked callers so far, over the whole process.
double snapshot_wait_seconds();

// Held while a snapshot copies; begun on the thread that owns the state (before it may write
// again), ended on the copying thread. Movable, ends once (explicitly or when destroyed).
class SnapshotPending {
 public:
  SnapshotPending() = default;
  static SnapshotPending begin();
  SnapshotPending(SnapshotPending&& o) noexcept : active_(o.active_) { o.active_ = false; }
  SnapshotPending& operator=(SnapshotPending&& o) noexcept;
  SnapshotPending(const SnapshotPending&) = delete;
  SnapshotPending& operator=(const SnapshotPending&) = delete;
  ~SnapshotPending() { end(); }
  void end();
  bool active() const { return active_; }

 private:
  bool active_ = false;
};

}  // namespace fathom

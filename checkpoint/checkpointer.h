#pragma once
// Checkpointer: sharded, atomic, checksummed, optionally asynchronous saves of every rank's
// RankState, and a resume that trusts nothing it reads (docs/checkpoint.md).
//
//   checkpoint::Checkpointer ckpt("runs/gpt", *info.world);   // async, keeps the last 3
//   if (auto l = ckpt.load_latest()) restore(*l);              // newest valid on every rank
//   for (...) { ...; if (step % 100 == 0) ckpt.save(step, collect()); }
//   ckpt.wait();                                               // before exit: rethrows errors
//
// On disk, one directory per step: DIR/step_00000120/{manifest.pb, rank_<r>.bin}. Each rank
// writes its per_rank tensors and a share of the replicated ones (spread over the ranks by
// size, so each rank copies and writes about 1/N of them); DIR/latest names the newest.
//
// How a save completes, and why no collective runs in the background. save() runs its
// collectives (two small allgathers: agreement on the step and the replicated tensors' names,
// dtypes and shapes, and on errors) on the caller's thread, then snapshots and hands the file
// work to a background thread that does only file I/O. Completion goes through the shared
// filesystem, not the process group: each rank writes rank_<r>.bin into DIR/.tmp.step_<N>.<pid>,
// fsyncs it, then atomically creates rank_<r>.done (its tensors' offsets and XXH3-64 sums);
// rank 0's background thread waits for every done file (or a rank_<r>.failed, or a timeout),
// writes and fsyncs manifest.pb, renames the directory to step_<N>, fsyncs DIR and replaces
// DIR/latest. A directory named step_<N> therefore always holds a complete, durable
// checkpoint; an interrupted save leaves only a .tmp.* directory, which is never read and is
// removed by the next successful save (or by rank 0's constructor). kill -9 at any point of a
// save leaves the previous checkpoint loadable (tests/checkpoint/crash_save.sh).
//
// Requirements: DIR is on a filesystem shared by all ranks of the group (a local path for one
// node); one job (one Checkpointer per rank) uses a DIR at a time. Replicated tensors must be
// equal on every rank (only their names, dtypes and shapes are checked; one copy is written).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fathom/checkpoint/state.h"
#include "fathom/comm/process_group.h"
#include "fathom/core/options.h"
#include "fathom/core/storage.h"

namespace fathom::checkpoint {

// The parallel layout a checkpoint was saved under (dp * pp * tp = world size). For now the
// checkpointer records dp = world size, pp = tp = 1.
struct MeshLayout {
  int dp = 1, pp = 1, tp = 1;
};

class CheckpointerOptions {
  // Complete checkpoints kept: after a save completes, older step directories beyond the
  // `keep` newest valid ones are removed. 0 keeps all.
  FATHOM_ARG(int, keep) = 3;
  // save() returns after the snapshot to host memory; the writing goes on in the background.
  // The snapshot buffer (as big as this rank's share) is kept and reused from save to save.
  FATHOM_ARG(bool, async) = true;
  // Seconds rank 0 waits for the other ranks' files before it fails the save; 0: the group's
  // timeout (FATHOM_COMM_TIMEOUT, 600 s by default).
  FATHOM_ARG(double, timeout) = 0;
  // Rank 0 prints to stderr which checkpoint load_latest() took and why it skipped others.
  FATHOM_ARG(bool, verbose) = true;
};

struct Loaded {
  int64_t step = 0;
  std::string path;  // DIR/step_<N>
  int saved_world_size = 1;
  MeshLayout saved_mesh;
  nn::StateDict replicated;  // CPU tensors
  // This rank's own (CPU tensors) when saved_world_size equals the group's size, else empty:
  // the caller decides what another world size means (load_rank_state reads any saved rank's).
  nn::StateDict per_rank;
  // Newer checkpoints load_latest() passed over, newest first, each "<step dir>: <why>".
  std::vector<std::string> skipped;
};

class Checkpointer {
 public:
  // Collective calls are marked; every rank of `group` must make them in the same order.
  // Not collective. Rank 0 creates `dir` and removes stale .tmp.* entries of killed saves.
  Checkpointer(std::string dir, comm::ProcessGroup& group, CheckpointerOptions options = {});
  // Waits for a pending save (no collectives); an error is printed to stderr, not thrown.
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Collective. Saves `state` as step `step` (>= 0; saving a step again replaces it). First
  // waits for the previous save: if that one failed on any rank, every rank throws its error
  // here and nothing new is saved. Then the ranks agree (same step, same replicated names,
  // dtypes and shapes, or all throw), and the file work starts: in the background when async,
  // else before save returns, which then means the checkpoint is complete on every rank.
  // Async, the state is snapshotted to host memory: small, strided and CUDA tensors (into
  // page-locked memory when a GPU is present, core/pinned.h) before save returns, large CPU tensors
  // (kDeferMinBytes and up) on the save's thread while the caller trains on. Whoever writes
  // saved tensors in place calls await_snapshots() first (core/snapshot.h); Fathom's writers
  // (Optimizer::step, load_state_dict, a compressor's residuals, restore) do, so a training
  // loop waits only if its next optimizer step comes before the copy is done.
  void save(int64_t step, const RankState& state);
  // Collective. Waits for the pending save (if any) and throws, on every rank, the error of any
  // rank whose part failed. After it returns the last save is complete and visible to all.
  void wait();
  // Seconds the last save() kept training waiting: the call itself (agreement, the copy of
  // small and CUDA tensors) plus the time writers of the state have since waited for its
  // deferred snapshot (await_snapshots, e.g. in the next Optimizer::step). Final once the
  // snapshot is taken: after the next step, wait() or the next save.
  double last_save_blocking_seconds() const;

  // Collective. The newest checkpoint in `dir` that every rank can read and verify; older ones
  // are tried in turn when a newer one is bad on any rank (each listed in `skipped`, and on
  // rank 0's stderr). nullopt when `dir` holds no step directory at all; an Error listing
  // every reason when it holds some but none is valid (a silent fresh start could overwrite
  // them).
  std::optional<Loaded> load_latest();
  // Collective. The checkpoint in directory `path` (e.g. loaded.path), verified on every rank;
  // if any rank fails, all throw an Error naming the directory, file and tensor.
  Loaded load(const std::string& path);
  // Not collective. The per_rank tensors saved by `saved_rank` of `loaded`'s checkpoint, read
  // and verified again (for a resume with another world size).
  nn::StateDict load_rank_state(const Loaded& loaded, int saved_rank);

  const std::string& dir() const { return dir_; }

 private:
  std::string join_pending();
  Loaded load_local(const std::string& path);

  std::string dir_;
  comm::ProcessGroup& group_;
  CheckpointerOptions options_;
  std::thread worker_;
  bool pending_ = false;
  int64_t pending_step_ = -1;
  std::string pending_error_;  // set by the worker, read after join
  std::shared_ptr<Storage> arena_;  // the async snapshot, reused
  double last_blocking_ = 0;   // the last save() call
  double waited_at_save_ = 0;  // snapshot_wait_seconds() when it began
};

}  // namespace fathom::checkpoint

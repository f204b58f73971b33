#pragma once
// The checkpointer's file work (internal): this rank's part of a save (writer.cpp) and the
// checked reading of a checkpoint (reader.cpp). No collectives here: checkpointer.cpp does
// all the agreeing between ranks, on the caller's thread.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fathom/checkpoint/format.h"
#include "fathom/checkpoint/state.h"
#include "fathom/core/snapshot.h"
#include "fathom/core/storage.h"
#include "fathom/core/tensor.h"

namespace fathom::checkpoint::internal {

// A test hook (FATHOM_CHECKPOINT_TEST_KILL=<point>, optionally FATHOM_CHECKPOINT_TEST_KILL_RANK
// =<r>): the process sends itself SIGKILL at that point of a save, as kill -9 would.
//   data      half of rank_<r>.bin written, nothing fsynced
//   done      rank_<r>.done written (rank 0: before it waits for the others)
//   manifest  manifest.pb written and fsynced, the directory not yet renamed
//   rename    step_<N> renamed into place, `latest` not yet updated
enum class KillPoint { none, data, done, manifest, rename };
KillPoint kill_point_from_env(int rank);

// One tensor of this rank's file, host memory, contiguous.
struct SaveItem {
  std::string name;
  pb::Kind kind = pb::KIND_UNSPECIFIED;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t offset = 0;  // in rank_<r>.bin, a multiple of kAlign
  uint64_t nbytes = 0;
  const void* data = nullptr;
  Tensor hold;  // keeps `data` (or `source`) alive when it is not in the arena
  // A deferred snapshot copy: `source` (live CPU memory) goes to `data` (the arena) on the
  // save's own thread, in copy_deferred, while the caller trains on.
  const void* source = nullptr;
};

struct SaveJob {
  std::string dir;      // the checkpoint root
  std::string tmp_dir;  // dir/.tmp.step_<N>.<pid of rank 0>
  int64_t step = 0;
  int rank = 0, world = 1;
  pb::Mesh mesh;
  int keep = 0;         // complete checkpoints to keep (0: all)
  double timeout = 600; // seconds rank 0 waits for the other ranks' done files
  std::vector<SaveItem> items;  // in file order
  uint64_t file_size = 0;
  std::shared_ptr<Storage> arena;  // the snapshot (async saves)
  SnapshotPending pending;       // held while deferred items are still to be copied
  int snapshot_delay_ms = 0;       // test hook: copy_deferred sleeps this long first
  KillPoint kill = KillPoint::none;
};

// Which rank writes each replicated tensor (in the map's order): largest first onto the least
// loaded rank, so the bytes spread evenly. The same on every rank for the same names, dtypes
// and shapes.
std::vector<int> assign_replicated(const nn::StateDict& replicated, int world);
// An XXH3 of the replicated tensors' names, dtypes and shapes: equal on all ranks or the
// ranks disagree about the state (and about assign_replicated's answer).
uint64_t replicated_fingerprint(const nn::StateDict& replicated);

// Lays out this rank's file (its per_rank tensors, then the replicated ones assigned to it)
// and, when `snapshot`, gives every tensor its place in host memory (the arena, reused when
// `*arena` is big enough): small, CUDA and strided tensors are copied there at once; large CPU
// contiguous ones are deferred to copy_deferred under job.pending, so the caller may train on
// and only writers of that state (await_snapshots) wait. Without `snapshot`, CPU contiguous
// tensors are written from where they are (the caller waits for the whole save).
void plan_save(SaveJob& job, const RankState& s, bool snapshot, std::shared_ptr<Storage>* arena);
// The deferred copies into the arena, then job.pending ends. On the save's thread, before
// run_save_job; a no-op when nothing was deferred.
void copy_deferred(SaveJob& job);
// Tensors at least this big (bytes) are copied by copy_deferred; smaller ones at once (their
// copy costs less than handing them over).
inline constexpr uint64_t kDeferMinBytes = uint64_t(1) << 20;

// This rank's part of a save: rank_<r>.bin (XXH3 of each tensor on the way), fsync, then
// rank_<r>.done. Rank 0 then waits for every rank's done file, writes manifest.pb, renames the
// directory to step_<N>, updates `latest` and removes old checkpoints. On failure a rank
// leaves rank_<r>.failed (so that rank 0 stops waiting) and throws.
void run_save_job(const SaveJob& job);
// Best effort, never throws: rank_<r>.failed with `message`.
void report_failure(const std::string& tmp_dir, int rank, const std::string& message);

// Step directories of `dir` (canonical names only), newest first; none when it does not exist.
std::vector<int64_t> list_steps(const std::string& dir);
// Removes stale .tmp.* entries of `dir` (saves that never completed); warnings only.
void remove_stale_tmp(const std::string& dir);

// manifest.pb of `step_dir`, checked in full (format.h). When the directory's name is a
// canonical step name, the manifest's step must match it.
pb::Manifest read_manifest(const std::string& step_dir);
// The tensors of `m` of `kind` (PER_RANK: those of `rank` only), read from `step_dir` into CPU
// tensors after checking each file's size against the manifest, each checksum and, for bool,
// that every byte is 0 or 1. Errors name the directory, the file and the tensor.
nn::StateDict read_tensors(const std::string& step_dir, const pb::Manifest& m, pb::Kind kind,
                           int rank);

}  // namespace fathom::checkpoint::internal

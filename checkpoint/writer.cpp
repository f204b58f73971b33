// This rank's part of a save: the plan and snapshot (on the caller's thread), then the file
// work (on the background thread for async saves). See io.h.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <numeric>
#include <thread>

#include "fathom/checkpoint/file_io.h"
#include "fathom/checkpoint/io.h"
#include "fathom/checkpoint/stream_writer.h"
#include "fathom/core/ops/shape.h"
#include "fathom/core/pinned.h"

namespace fathom::checkpoint::internal {

namespace {

// Hashing and the copy into the write buffers go piece by piece, a piece well inside L2.
constexpr size_t kPiece = size_t(256) << 10;

uint64_t align_up(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

void maybe_kill(KillPoint at, KillPoint point) {
  if (at == point && at != KillPoint::none) ::kill(::getpid(), SIGKILL);
}

// A contiguous host tensor over `bytes` of the arena, for copies that need a Tensor (CUDA
// sources, strided views).
Tensor arena_view(const std::shared_ptr<Storage>& arena, uint64_t offset, const SaveItem& it) {
  auto impl = std::make_shared<TensorImpl>();
  char* p = static_cast<char*>(arena->data()) + offset;
  impl->storage = std::make_shared<Storage>(p, size_t(it.nbytes), Device::cpu(),
                                            [keep = arena](void*) {});
  impl->shape = it.shape;
  impl->strides = contiguous_strides(it.shape);
  impl->dtype = it.dtype;
  return Tensor(impl);
}

pb::FileEntry file_entry(int rank, uint64_t size) {
  pb::FileEntry f;
  f.set_name(rank_file_name(rank));
  f.set_size(size);
  return f;
}

}  // namespace

KillPoint kill_point_from_env(int rank) {
  const char* at = std::getenv("FATHOM_CHECKPOINT_TEST_KILL");
  if (!at || !*at) return KillPoint::none;
  const char* only = std::getenv("FATHOM_CHECKPOINT_TEST_KILL_RANK");
  if (only && *only && std::atoi(only) != rank) return KillPoint::none;
  const std::string s = at;
  if (s == "data") return KillPoint::data;
  if (s == "done") return KillPoint::done;
  if (s == "manifest") return KillPoint::manifest;
  if (s == "rename") return KillPoint::rename;
  detail::fail("FATHOM_CHECKPOINT_TEST_KILL='", s,
               "' must be one of data, done, manifest, rename (a test hook)");
}

std::vector<int> assign_replicated(const nn::StateDict& replicated, int world) {
  std::vector<const Tensor*> ts;
  std::vector<std::string_view> names;
  for (auto& [name, t] : replicated) {
    names.push_back(name);
    ts.push_back(&t);
  }
  std::vector<size_t> order(ts.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return ts[a]->nbytes() > ts[b]->nbytes(); });
  std::vector<uint64_t> load(size_t(world), 0);
  std::vector<int> owner(ts.size(), 0);
  for (size_t i : order) {
    size_t r = size_t(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = int(r);
    load[r] += align_up(ts[i]->nbytes());
  }
  return owner;
}

uint64_t replicated_fingerprint(const nn::StateDict& replicated) {
  Xxh3 h;
  for (auto& [name, t] : replicated) {
    uint64_t n = name.size(), d = uint64_t(t.dtype()), nd = t.shape().size();
    h.update(&n, 8);
    h.update(name.data(), name.size());
    h.update(&d, 8);
    h.update(&nd, 8);
    h.update(t.shape().data(), t.shape().size() * sizeof(int64_t));
  }
  return h.digest();
}

void plan_save(SaveJob& job, const RankState& s, bool snapshot, std::shared_ptr<Storage>* arena) {
  const std::vector<int> owner = assign_replicated(s.replicated, job.world);
  job.items.clear();
  uint64_t offset = 0;
  auto add = [&](const std::string& name, const Tensor& t, pb::Kind kind) {
    SaveItem it;
    it.name = name;
    it.kind = kind;
    it.dtype = t.dtype();
    it.shape = t.shape();
    it.nbytes = t.nbytes();
    it.offset = offset;
    offset = align_up(offset + it.nbytes);
    job.items.push_back(std::move(it));
  };
  for (auto& [name, t] : s.per_rank) add(name, t, pb::PER_RANK);
  size_t i = 0;
  for (auto& [name, t] : s.replicated)
    if (owner[i++] == job.rank) add(name, t, pb::REPLICATED);
  job.file_size = job.items.empty() ? 0 : job.items.back().offset + job.items.back().nbytes;

  auto source = [&](const SaveItem& it) -> const Tensor& {
    return it.kind == pb::PER_RANK ? s.per_rank.at(it.name) : s.replicated.at(it.name);
  };
  if (!snapshot) {
    for (SaveItem& it : job.items) {
      const Tensor& t = source(it);
      it.hold = t.is_cuda() || !t.is_contiguous() ? ops::contiguous(ops::to(t, Device::cpu())) : t;
      it.data = it.hold.data_ptr();
    }
    return;
  }
  // The arena is reused from save to save: fresh pages cost a page fault each (~2 us per
  // 4 KB here), which would be most of the snapshot's time. With a GPU it is page-locked, so a
  // CUDA tensor's copy is one DMA at the bus's speed.
  if (!*arena || (*arena)->nbytes() < job.file_size) {
    arena->reset();
    *arena = allocate_pinned(size_t(job.file_size));
  }
  job.arena = *arena;
  char* base = static_cast<char*>(job.arena->data());
  bool deferred = false;
  for (SaveItem& it : job.items) {
    const Tensor& t = source(it);
    it.data = base + it.offset;
    if (it.nbytes == 0) continue;
    if (!t.is_cuda() && t.is_contiguous() && it.nbytes >= kDeferMinBytes) {
      it.source = t.data_ptr();
      it.hold = t;
      deferred = true;
    } else if (!t.is_cuda() && t.is_contiguous()) {
      std::memcpy(base + it.offset, t.data_ptr(), size_t(it.nbytes));
    } else {
      ops::copy_(arena_view(job.arena, it.offset, it), t);  // CUDA: synchronous, like cudaMemcpy
    }
  }
  if (deferred) {
    job.pending = SnapshotPending::begin();
    const char* delay = std::getenv("FATHOM_CHECKPOINT_TEST_SNAPSHOT_DELAY_MS");
    job.snapshot_delay_ms = delay && *delay ? std::atoi(delay) : 0;
  }
}

void copy_deferred(SaveJob& job) {
  if (!job.pending.active()) return;
  if (job.snapshot_delay_ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(job.snapshot_delay_ms));
  for (SaveItem& it : job.items) {
    if (!it.source) continue;
    // One thread: the caller's forward and backward have the other cores meanwhile.
    std::memcpy(const_cast<void*>(it.data), it.source, size_t(it.nbytes));
    it.source = nullptr;
    it.hold = Tensor();  // the live tensor is no longer needed
  }
  job.pending.end();
}

void report_failure(const std::string& tmp_dir, int rank, const std::string& message) {
  try {
    write_file_atomically(tmp_dir + "/" + failed_file_name(rank), message, "checkpoint");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] checkpoint: cannot tell rank 0 that this rank failed: %s\n",
                 rank, e.what());
  }
}

namespace {

// rank_<r>.bin: the items in order with zero padding between them, each hashed as it is written.
std::vector<pb::TensorEntry> write_rank_file(const SaveJob& job) {
  const std::string path = job.tmp_dir + "/" + rank_file_name(job.rank);
  const std::string where = "checkpoint: writing '" + path + "'";
  StreamWriter out(path, where);
  std::vector<pb::TensorEntry> entries;
  bool killed_half = false;
  for (const SaveItem& it : job.items) {
    out.append_zeros(size_t(it.offset - out.size()));
    const char* p = static_cast<const char*>(it.data);
    // Hashed piece by piece just before the piece is copied for the write, so the copy reads
    // it from cache.
    Xxh3 hash;
    for (uint64_t at = 0; at < it.nbytes; at += kPiece) {
      size_t n = size_t(std::min<uint64_t>(kPiece, it.nbytes - at));
      hash.update(p + at, n);
      out.append(p + at, n);
      if (!killed_half && it.offset + at + n >= job.file_size / 2) {
        killed_half = true;
        maybe_kill(job.kill, KillPoint::data);
      }
    }
    const uint64_t digest = hash.digest();
    pb::TensorEntry e;
    e.set_name(it.name);
    e.set_kind(it.kind);
    e.set_rank(job.rank);
    e.set_dtype(to_pb(it.dtype));
    for (int64_t d : it.shape) e.add_shape(d);
    e.set_file(rank_file_name(job.rank));
    e.set_offset(it.offset);
    e.set_length(it.nbytes);
    e.set_xxh3(digest);
    entries.push_back(std::move(e));
  }
  maybe_kill(job.kill, KillPoint::data);  // a rank with nothing to write dies here
  out.finish();
  return entries;
}

// Rank 0: every other rank's done record, once all are there. A rank_<q>.failed ends the wait
// with that rank's error; so does the timeout (a dead rank, or a directory not shared).
std::vector<pb::RankDone> collect_done(const SaveJob& job) {
  std::vector<pb::RankDone> done(size_t(job.world));
  std::vector<bool> have(size_t(job.world), false);
  have[0] = true;
  int missing = job.world - 1;
  const auto start = std::chrono::steady_clock::now();
  auto pause = std::chrono::microseconds(200);
  while (missing > 0) {
    for (int q = 1; q < job.world; ++q) {
      if (have[size_t(q)]) continue;
      const std::string failed = job.tmp_dir + "/" + failed_file_name(q);
      if (exists(failed)) {
        std::string msg = read_small_file(failed, 1 << 20, "checkpoint: '" + failed + "'");
        detail::fail("checkpoint: rank ", q, " could not write its part of step ", job.step,
                     ": ", msg);
      }
      const std::string path = job.tmp_dir + "/" + done_file_name(q);
      if (!exists(path)) continue;
      const std::string where = "checkpoint: '" + path + "'";
      std::string bytes = read_small_file(path, kMaxManifestBytes, where);
      std::string_view payload = unframe(FrameKind::done, bytes, where);
      pb::RankDone& d = done[size_t(q)];
      FATHOM_CHECK(d.ParseFromArray(payload.data(), int(payload.size())), where,
                   ": not a valid RankDone message");
      FATHOM_CHECK(d.rank() == q && d.step() == job.step, where, ": it is rank ", d.rank(),
                   "'s record of step ", d.step(), ", expected rank ", q, "'s of step ", job.step);
      have[size_t(q)] = true;
      --missing;
    }
    if (missing == 0) break;
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > job.timeout) {
      std::string who;
      for (int q = 1; q < job.world; ++q)
        if (!have[size_t(q)]) who += (who.empty() ? "" : ", ") + std::to_string(q);
      detail::fail("checkpoint: step ", job.step, ": ranks [", who, "] did not finish writing ",
                   "their part within ", job.timeout, " s (no rank_<r>.done in '", job.tmp_dir, "'): did a rank die, or do the ranks not share ",
                   "the directory '", job.dir, "'?");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(20000));
  }
  return done;
}

// Keeps the `keep` newest checkpoints whose manifest is valid (and anything newer); removes
// the older step directories.
void apply_retention(const SaveJob& job) {
  if (job.keep <= 0) return;
  int valid = 0;
  for (int64_t step : list_steps(job.dir)) {
    const std::string path = job.dir + "/" + step_dir_name(step);
    if (valid >= job.keep && step != job.step) {  // never the one just written
      std::string why;
      if (!remove_tree(path, &why))
        std::fprintf(stderr, "checkpoint: warning: cannot remove old checkpoint '%s': %s\n",
                     path.c_str(), why.c_str());
      continue;
    }
    try {
      read_manifest(path);
      ++valid;
    } catch (const Error&) {
      // Not counted: a broken newer checkpoint must not push out a good older one.
    }
  }
}

void complete_checkpoint(const SaveJob& job, std::vector<pb::TensorEntry> own) {
  std::vector<pb::RankDone> done = collect_done(job);
  pb::Manifest m;
  m.set_format_version(kFormatVersion);
  m.set_step(job.step);
  m.set_world_size(job.world);
  *m.mutable_mesh() = job.mesh;
  std::vector<pb::TensorEntry> all = std::move(own);
  for (int q = 0; q < job.world; ++q) {
    const uint64_t size = q == 0 ? job.file_size : done[size_t(q)].file().size();
    *m.add_files() = file_entry(q, size);
    if (q > 0)
      for (auto& e : *done[size_t(q)].mutable_tensors()) all.push_back(std::move(e));
  }
  std::sort(all.begin(), all.end(), [](const pb::TensorEntry& a, const pb::TensorEntry& b) {
    if (a.kind() != b.kind()) return a.kind() < b.kind();
    if (a.rank() != b.rank()) return a.rank() < b.rank();
    return a.name() < b.name();
  });
  for (auto& e : all) *m.add_tensors() = std::move(e);
  m.set_unix_time(int64_t(std::time(nullptr)));
  const std::string where = "checkpoint: step " + std::to_string(job.step) + " in '" + job.tmp_dir + "'";
  validate_manifest(m, where);  // what the reader will check, checked before it is final
  // Every file must be there with the size its rank reported (also proves the sharing).
  for (int q = 0; q < job.world; ++q) {
    uint64_t size = 0;
    open_regular(job.tmp_dir + "/" + rank_file_name(q), &size, where + ": " + rank_file_name(q));
    FATHOM_CHECK(size == m.files(q).size(), where, ": ", rank_file_name(q), " is ", size,
                 " bytes, but rank ", q, " reported ", m.files(q).size());
  }

  std::string payload;
  FATHOM_CHECK(m.SerializeToString(&payload), where, ": cannot serialize the manifest");
  const std::string bytes = frame(FrameKind::manifest, payload);
  const std::string mpath = job.tmp_dir + "/" + kManifestName;
  Fd fd = create_file(mpath, where);
  write_all(fd.get(), bytes.data(), bytes.size(), where);
  fsync_fd(fd.get(), where);
  fd.close(where);
  for (int q = 1; q < job.world; ++q) ::unlink((job.tmp_dir + "/" + done_file_name(q)).c_str());
  fsync_dir(job.tmp_dir, where);
  maybe_kill(job.kill, KillPoint::manifest);

  const std::string final_dir = job.dir + "/" + step_dir_name(job.step);
  replace_dir(job.tmp_dir, final_dir, where);
  fsync_dir(job.dir, where);
  maybe_kill(job.kill, KillPoint::rename);
  write_file_atomically(job.dir + "/" + kLatestName, step_dir_name(job.step) + "\n", where);
  apply_retention(job);
  remove_stale_tmp(job.dir);
}

}  // namespace

void run_save_job(const SaveJob& job) {
  try {
    std::vector<pb::TensorEntry> entries = write_rank_file(job);
    if (job.rank == 0) {
      maybe_kill(job.kill, KillPoint::done);
      complete_checkpoint(job, std::move(entries));
      return;
    }
    pb::RankDone d;
    d.set_step(job.step);
    d.set_rank(job.rank);
    *d.mutable_file() = file_entry(job.rank, job.file_size);
    for (auto& e : entries) *d.add_tensors() = std::move(e);
    std::string payload;
    FATHOM_CHECK(d.SerializeToString(&payload), "checkpoint: cannot serialize rank ", job.rank,
                 "'s done record");
    write_file_atomically(job.tmp_dir + "/" + done_file_name(job.rank),
                          frame(FrameKind::done, payload), "checkpoint: step " +
                          std::to_string(job.step));
    maybe_kill(job.kill, KillPoint::done);
  } catch (const std::exception& e) {
    if (job.rank != 0) report_failure(job.tmp_dir, job.rank, e.what());
    throw;
  }
}

std::vector<int64_t> list_steps(const std::string& dir) {
  std::vector<int64_t> steps;
  for (const std::string& name : list_dir(dir, "checkpoint")) {
    int64_t step = 0;
    if (parse_step_dir_name(name, &step)) steps.push_back(step);
  }
  std::sort(steps.rbegin(), steps.rend());
  return steps;
}

void remove_stale_tmp(const std::string& dir) {
  std::vector<std::string> names;
  try {
    names = list_dir(dir, "checkpoint");
  } catch (const Error& e) {
    std::fprintf(stderr, "checkpoint: warning: %s\n", e.what());
    return;
  }
  for (const std::string& name : names) {
    if (name.rfind(kTmpPrefix, 0) != 0) continue;
    std::string why;
    if (!remove_tree(dir + "/" + name, &why))
      std::fprintf(stderr, "checkpoint: warning: cannot remove stale '%s/%s': %s\n", dir.c_str(),
                   name.c_str(), why.c_str());
  }
}

}  // namespace fathom::checkpoint::internal

// Checkpoint save and load throughput against the disk, measured in the same run on the same
// bytes (docs/checkpoint.md):
//   plain_write  each rank writes its share of the bytes to one file, sequentially, + fsync
//   plain_write_direct  the same with O_DIRECT from one aligned buffer (the page cache
//                bypassed, as the checkpointer's own writes are; docs/checkpoint.md)
//   save_sync    Checkpointer::save, sync: write + XXH3 + fsync + manifest + rename, all ranks
//   save_async   how long an async save blocks a training loop, and until wait(): save(), then
//                one "training step" (GEMMs, about --step-ms on a quiet machine; no writes), then
//                await_snapshots() as the next Optimizer::step does; blocking is the save() call
//                plus that wait. step_vs_idle: that step's time over the same step with no save
//                running (what the background copy costs the step on shared cores).
//                block_no_step: the same blocking when the optimizer step comes right after
//                save(), with no step between to hide the copy: the worst case.
//   plain_read   each rank reads every plain_write_direct file into fresh memory (what a load
//                must read). Those files, like the checkpoint's, were written around the page
//                cache: a file written through it may still be cached, in the guest or (on a VM)
//                in the host, however it is evicted, and reads back several times faster than
//                the disk (docs/checkpoint.md).
//   load         Checkpointer::load_latest: every rank reads and verifies the replicated state
//   xxh3         XXH3-64 over the state in memory
// Reads start cold: the files' pages are dropped from the page cache (posix_fadvise) first.
// GB/s = bytes / seconds, bytes = the whole state (plain_read, load: what one rank reads).
// The sides alternate rep by rep (the machine may be shared) and the median is reported; the
// loaded state is checked bitwise ("wrong" counts tensors that differ).
//   bench_checkpoint [--mb 512] [--tensors 32] [--reps 3] [--step-ms 100] [--dir DIR]
//   (alone or under mpirun)
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fathom.h>

#include "fathom/checkpoint/file_io.h"
#include "fathom/checkpoint/format.h"

using namespace fathom;
namespace ci = fathom::checkpoint::internal;
namespace fs = std::filesystem;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Before each timed write: flushes what earlier steps left for the kernel to finish later (dirty
// pages, ext4's journal commit with the discards of freed blocks), which would otherwise land in
// whichever write comes next and be charged to it. Measured here: a save right after the plain
// write paid 0.3 to 0.8 s of the plain write's truncation, and the plain write likewise.
void settle() { ::sync(); }

// Drops a file's clean pages from the page cache, so the next read comes from the disk.
void evict(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

void evict_tree(const std::string& dir) {
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) evict(e.path().string());
}

void plain_write(const std::string& path, const char* data, size_t n) {
  ci::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  FATHOM_CHECK(fd.get() >= 0, "bench: cannot create ", path);
  const size_t chunk = size_t(8) << 20;
  for (size_t at = 0; at < n; at += chunk) ci::write_all(fd.get(), data + at, std::min(chunk, n - at), path);
  ci::fsync_fd(fd.get(), path);
  fd.close(path);
}

void plain_write_direct(const std::string& path, const char* aligned, size_t n) {
  constexpr size_t kBlock = 4096;
  ci::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644));
  FATHOM_CHECK(fd.get() >= 0, "bench: cannot create ", path, " with O_DIRECT");
  const size_t chunk = size_t(8) << 20, padded = (n + kBlock - 1) / kBlock * kBlock;
  for (size_t at = 0; at < padded; at += chunk) ci::write_all(fd.get(), aligned + at, std::min(chunk, padded - at), path);
  FATHOM_CHECK(::ftruncate(fd.get(), off_t(n)) == 0, "bench: ftruncate ", path);
  ci::fsync_fd(fd.get(), path);
  fd.close(path);
}

size_t plain_read(const std::string& path) {
  uint64_t size = 0;
  ci::Fd fd = ci::open_regular(path, &size, path);
  Tensor buf = empty({int64_t(size)}, DType::u8);  // fresh memory, as a load allocates
  const size_t chunk = size_t(8) << 20;
  char* p = static_cast<char*>(buf.data_ptr());
  for (size_t at = 0; at < size; at += chunk)
    ci::read_at(fd.get(), p + at, std::min<size_t>(chunk, size - at), at, path);
  return size_t(size);
}

// A stand-in for a training step's forward and backward: GEMMs that read their inputs and
// write only their own outputs. Calibrated once (untimed) to about `ms` milliseconds.
struct StepWork {
  Tensor a = uniform({256, 256}, -1, 1), b = uniform({256, 256}, -1, 1);
  int gemms = 1;
  void run() const {
    for (int i = 0; i < gemms; ++i) (void)ops::matmul(a, b);
  }
  void calibrate(double ms) {
    gemms = 8;
    run();  // warm: the first GEMMs (thread pool start, page faults) took twice as long
    double t0 = now();
    run();
    double per = (now() - t0) / gemms;
    gemms = std::max(1, int(ms * 1e-3 / per));
  }
};

}  // namespace

int main(int argc, char** argv) {
  int64_t mb = 512, tensors = 32;
  int reps = 3;
  double step_ms = 100;
  std::string dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--mb") mb = std::atoll(argv[i + 1]);
    else if (a == "--tensors") tensors = std::atoll(argv[i + 1]);
    else if (a == "--reps") reps = std::atoi(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else if (a == "--step-ms") step_ms = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "bench_checkpoint: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  comm::ProcessGroup& world = *comm::init().world;
  const int rank = world.rank(), n = world.size();
  if (dir.empty()) dir = (fs::temp_directory_path() / "fathom_bench_ckpt").string();
  if (rank == 0) {
    fs::remove_all(dir);
    fs::create_directories(dir + "/plain");
  }
  world.barrier()->wait();

  // The state: `tensors` f32 tensors of `mb` MB in all, replicated (data parallel), and a small
  // per-rank part.
  checkpoint::RankState s;
  const int64_t per = (mb << 20) / 4 / tensors;
  for (int64_t i = 0; i < tensors; ++i)
    s.replicated["layer" + std::to_string(i)] = uniform({per}, -1, 1);
  s.per_rank["rng"] = full({16}, double(rank), DType::i64);
  const size_t bytes = size_t(per * 4 * tensors);
  // The plain baseline writes the same bytes, this rank's 1/n share of them.
  Tensor flat = empty({int64_t(bytes)}, DType::u8);
  {
    size_t at = 0;
    for (auto& [name, t] : s.replicated) {
      std::memcpy(static_cast<char*>(flat.data_ptr()) + at, t.data_ptr(), t.nbytes());
      at += t.nbytes();
    }
  }
  const size_t share = bytes / size_t(n), begin = share * size_t(rank);
  const size_t mine = rank == n - 1 ? bytes - begin : share;
  auto plain_path = [&](int r) { return dir + "/plain/rank_" + std::to_string(r) + ".bin"; };
  // The O_DIRECT baseline's source: the same share, in block-aligned memory padded with zeros.
  const size_t padded = (mine + 4095) / 4096 * 4096;
  std::unique_ptr<char, decltype(&std::free)> aligned(
      static_cast<char*>(std::aligned_alloc(4096, padded)), &std::free);
  FATHOM_CHECK(aligned, "bench: cannot allocate ", padded, " bytes");
  std::memset(aligned.get() + mine, 0, padded - mine);
  std::memcpy(aligned.get(), static_cast<const char*>(flat.data_ptr()) + begin, mine);
  auto direct_path = [&](int r) { return dir + "/plain/direct_" + std::to_string(r) + ".bin"; };

  checkpoint::Checkpointer sync_ckpt(dir + "/sync", world, checkpoint::CheckpointerOptions().async(false).keep(1));
  checkpoint::Checkpointer async_ckpt(dir + "/async", world, checkpoint::CheckpointerOptions().async(true).keep(1));
  // Untimed warm-up: files, the async snapshot buffer's pages.
  async_ckpt.save(0, s);
  async_ckpt.wait();

  StepWork work;
  work.calibrate(step_ms);
  std::vector<double> t_plain_w, t_plain_wd, t_sync, t_block, t_async, t_plain_r, t_load, t_hash, t_step,
      t_step_idle, t_block_now;
  int wrong = 0;
  for (int r = 0; r < reps; ++r) {
    settle();
    world.barrier()->wait();
    double t0 = now();
    plain_write(plain_path(rank), static_cast<const char*>(flat.data_ptr()) + begin, mine);
    world.barrier()->wait();
    t_plain_w.push_back(now() - t0);

    settle();
    world.barrier()->wait();
    t0 = now();
    plain_write_direct(direct_path(rank), aligned.get(), mine);
    world.barrier()->wait();
    t_plain_wd.push_back(now() - t0);

    settle();
    world.barrier()->wait();
    t0 = now();
    sync_ckpt.save(r + 1, s);
    world.barrier()->wait();
    t_sync.push_back(now() - t0);

    settle();
    world.barrier()->wait();
    t0 = now();
    work.run();
    t_step_idle.push_back(now() - t0);
    world.barrier()->wait();
    t0 = now();
    async_ckpt.save(r + 1, s);
    double t1 = now();
    work.run();
    t_step.push_back(now() - t1);
    await_snapshots();  // what the next Optimizer::step does first
    t_block.push_back(async_ckpt.last_save_blocking_seconds());
    async_ckpt.wait();
    t_async.push_back(now() - t0 - t_step.back());
    // The worst case: the next optimizer step comes at once, so it waits for the whole copy.
    settle();
    world.barrier()->wait();
    async_ckpt.save(reps + r + 1, s);
    await_snapshots();
    t_block_now.push_back(async_ckpt.last_save_blocking_seconds());
    async_ckpt.wait();

    for (int q = 0; q < n; ++q) evict(direct_path(q));
    evict_tree(dir + "/sync");
    world.barrier()->wait();
    t0 = now();
    for (int q = 0; q < n; ++q) plain_read(direct_path(q));
    world.barrier()->wait();
    t_plain_r.push_back(now() - t0);

    world.barrier()->wait();
    t0 = now();
    auto l = sync_ckpt.load_latest();
    world.barrier()->wait();
    t_load.push_back(now() - t0);
    for (auto& [name, t] : s.replicated)
      wrong += !l || std::memcmp(l->replicated.at(name).data_ptr(), t.data_ptr(), t.nbytes()) != 0;

    t0 = now();
    volatile uint64_t h = ci::xxh3(flat.data_ptr(), bytes);
    (void)h;
    t_hash.push_back(now() - t0);
  }

  if (rank == 0) {
    const double gb = double(bytes) / 1e9;
    const double pw = median(t_plain_w), pwd = median(t_plain_wd), sw = median(t_sync), blk = median(t_block),
                 as = median(t_async), pr = median(t_plain_r), ld = median(t_load),
                 hs = median(t_hash);
    auto line = [&](const char* op, double t, const char* extra) {
      std::printf("{\"bench\":\"checkpoint\",\"op\":\"%s\",\"bytes\":%zu,\"world\":%d,\"tensors\":%lld,"
                  "\"time_s\":%.4f,\"gbs\":%.3f%s,\"wrong\":%d}\n",
                  op, bytes, n, static_cast<long long>(tensors), t, gb / t, extra, wrong);
    };
    char buf[320];
    line("plain_write", pw, "");
    line("plain_write_direct", pwd, "");
    std::snprintf(buf, sizeof buf, ",\"ratio_vs_plain\":%.3f,\"ratio_vs_plain_direct\":%.3f",
                  pw / sw, pwd / sw);
    line("save_sync", sw, buf);
    const double now_blk = median(t_block_now);
    std::snprintf(buf, sizeof buf, ",\"block_s\":%.4f,\"block_vs_sync\":%.4f,\"step_s\":%.4f,"
                  "\"step_vs_idle\":%.3f,\"block_no_step_s\":%.4f,\"block_no_step_vs_sync\":%.4f",
                  blk, blk / sw, median(t_step), median(t_step) / median(t_step_idle), now_blk,
                  now_blk / sw);
    line("save_async", as, buf);
    line("plain_read", pr, "");
    std::snprintf(buf, sizeof buf, ",\"ratio_vs_plain\":%.3f", pr / ld);
    line("load", ld, buf);
    line("xxh3", hs, "");
    std::fprintf(stderr, "bench_checkpoint: %zu MB in %lld tensors, %d rank%s, dir %s, median of %d\n",
                 bytes >> 20, static_cast<long long>(tensors), n, n == 1 ? "" : "s", dir.c_str(), reps);
  }
  world.barrier()->wait();
  if (rank == 0) fs::remove_all(dir);
  return wrong == 0 ? 0 : 1;
}

#include "fathom/comm/mpi_agreement.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fathom/comm/mpi_util.h"

namespace fathom::comm::internal {

// One rank's fields for one check. Its own cache lines: a rank spinning on a peer's stamp
// never slows down the peer's writes to another slot.
struct alignas(128) ShmAgreement::Slot {
  std::atomic<int64_t> stamp;  // the check number whose fields these are (0: none yet)
  std::atomic<int64_t> fields[kKeyFields];
};
static_assert(std::atomic<int64_t>::is_always_lock_free, "shared-memory atomics must be lock-free");

namespace {
bool shm_check_enabled() {
  const char* v = std::getenv("FATHOM_COMM_SHM_CHECK");
  return !(v && std::string(v) == "0");
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

std::unique_ptr<ShmAgreement> ShmAgreement::open(MPI_Comm comm, int rank, int size) {
  if (size < 2) return nullptr;  // groups of one skip the check
  // Every member on this node? Each rank's answer is the same: its node holds all or not.
  MPI_Comm node = MPI_COMM_NULL;
  int node_size = 0;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) == MPI_SUCCESS &&
      node != MPI_COMM_NULL) {
    MPI_Comm_size(node, &node_size);
    MPI_Comm_free(&node);
  }
  int ok = node_size == size && shm_check_enabled();
  // Rank 0 names and creates the segment; the name is unique per process and group.
  static std::atomic<int> counter{0};
  char name[64] = {};
  size_t bytes = sizeof(Slot) * 2 * size_t(size);
  int fd = -1;
  if (rank == 0 && ok) {
    std::snprintf(name, sizeof name, "/fathom-check-%d-%d", int(::getpid()), counter++);
    fd = ::shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    ok = fd >= 0 && ::ftruncate(fd, off_t(bytes)) == 0;
  }
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm);
  if (ok) MPI_Bcast(name, sizeof name, MPI_CHAR, 0, comm);
  void* base = MAP_FAILED;
  if (ok) {
    if (rank != 0) fd = ::shm_open(name, O_RDWR, 0600);
    if (fd >= 0) base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ok = base != MAP_FAILED;
  }
  if (fd >= 0) ::close(fd);
  // Everybody mapped it (or somebody could not): the name is no longer needed either way.
  int all = ok;
  if (name[0]) MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, comm);
  if (rank == 0 && name[0]) ::shm_unlink(name);
  if (!all) {
    if (base != MAP_FAILED) ::munmap(base, bytes);
    return nullptr;
  }
  // ftruncate zero-filled it: every stamp is 0, "no check yet".
  return std::unique_ptr<ShmAgreement>(new ShmAgreement(base, bytes, rank, size));
}

ShmAgreement::ShmAgreement(void* base, size_t bytes, int rank, int size)
    : base_(base), bytes_(bytes), rank_(rank), size_(size) {}

ShmAgreement::~ShmAgreement() { ::munmap(base_, bytes_); }

ShmAgreement::Slot& ShmAgreement::slot(int rank, int64_t check) const {
  return static_cast<Slot*>(base_)[size_t(rank) * 2 + size_t(check & 1)];
}

bool ShmAgreement::agree(const int64_t* fields, const std::function<void()>& idle) {
  int64_t k = ++checks_;
  Slot& mine = slot(rank_, k);
  for (int i = 0; i < kKeyFields; ++i) mine.fields[i].store(fields[i], std::memory_order_relaxed);
  mine.stamp.store(k, std::memory_order_release);
  bool same = true;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    Slot& theirs = slot(r, k);
    // A peer that is running arrives within microseconds: spin briefly, then back off (yield,
    // then sleeps growing to 1 ms) so a long wait does not hold a core on a shared machine.
    for (int spin = 0, round = 0; theirs.stamp.load(std::memory_order_acquire) != k; ++spin) {
      if (spin < 2000) {
        cpu_relax();
        continue;
      }
      if (idle) idle();
      backoff(round++);
    }
    for (int i = 0; i < kKeyFields; ++i)
      same = same && theirs.fields[i].load(std::memory_order_relaxed) == fields[i];
  }
  return same;
}

}  // namespace fathom::comm::internal

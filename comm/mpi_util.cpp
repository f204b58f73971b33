#include "fathom/comm/mpi_util.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

namespace fathom::comm::internal {

void mpi_fail(int rc, const std::string& what, const char* file, int line) {
  char msg[MPI_MAX_ERROR_STRING + 1] = {};
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) std::snprintf(msg, sizeof msg, "unknown");
  int cls = 0;
  MPI_Error_class(rc, &cls);
  fathom::detail::fail(what, ": MPI error ", rc, " (class ", cls, "): ", msg, " [", file, ":", line,
                       "]");
}

namespace {
std::atomic<bool> g_multiple{true};
std::mutex g_mpi_mutex;
}  // namespace

void set_thread_level(int provided) { g_multiple = provided >= MPI_THREAD_MULTIPLE; }
bool thread_multiple() { return g_multiple.load(std::memory_order_relaxed); }

MpiLock::MpiLock() : held_(!thread_multiple()) {
  if (held_) g_mpi_mutex.lock();
}
MpiLock::~MpiLock() {
  if (held_) g_mpi_mutex.unlock();
}

void backoff(int round) {
  if (round < 64) {
    std::this_thread::yield();
    return;
  }
  int us = std::min(1000, 10 << std::min(6, (round - 64) / 16));
  std::this_thread::sleep_for(std::chrono::microseconds(us));
}

namespace {
CommThreadNice g_nice;  // set by comm::init before any group's thread starts
}  // namespace

void set_comm_thread_nice(CommThreadNice n) { g_nice = n; }

void raise_comm_thread_priority() {
  const CommThreadNice& n = g_nice;
  if (!n.apply) return;
  // On Linux a thread id names that one thread: only the comm thread changes.
  if (setpriority(PRIO_PROCESS, id_t(syscall(SYS_gettid)), n.nice) == 0 || !n.explicit_value) return;
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    std::fprintf(stderr,
                 "DeepComm: cannot set the comm thread's nice to %d (FATHOM_COMM_THREAD_NICE): "
                 "%s; it keeps the process's priority\n",
                 n.nice, std::strerror(errno));
}

// ---- Half types: MPI has none, so reductions widen to f32 per element and round once. ----
namespace {
MPI_Datatype g_bf16 = MPI_DATATYPE_NULL, g_f16 = MPI_DATATYPE_NULL;
MPI_Op g_half_sum = MPI_OP_NULL, g_half_max = MPI_OP_NULL, g_half_min = MPI_OP_NULL;

template <class H, class F>
void reduce_half(void* in, void* inout, int n, F f) {
  const H* a = static_cast<const H*>(in);
  H* b = static_cast<H*>(inout);
  for (int i = 0; i < n; ++i) b[i] = H(f(float(a[i]), float(b[i])));
}

template <class F>
void reduce_either(void* in, void* inout, int* len, MPI_Datatype* dt, F f) {
  if (*dt == g_bf16)
    reduce_half<bf16>(in, inout, *len, f);
  else
    reduce_half<f16>(in, inout, *len, f);
}

// NaN wins in max and min, as in PyTorch.
inline float nan_max(float a, float b) { return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b); }
inline float nan_min(float a, float b) { return std::isnan(a) || std::isnan(b) ? NAN : std::min(a, b); }

void half_sum(void* in, void* inout, int* len, MPI_Datatype* dt) {
  reduce_either(in, inout, len, dt, [](float a, float b) { return a + b; });
}
void half_max(void* in, void* inout, int* len, MPI_Datatype* dt) {
  reduce_either(in, inout, len, dt, nan_max);
}
void half_min(void* in, void* inout, int* len, MPI_Datatype* dt) {
  reduce_either(in, inout, len, dt, nan_min);
}
}  // namespace

void create_mpi_types() {
  if (g_bf16 != MPI_DATATYPE_NULL) return;
  FATHOM_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &g_bf16), "comm init: bf16 type");
  FATHOM_MPI_CHECK(MPI_Type_commit(&g_bf16), "comm init: bf16 type");
  FATHOM_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &g_f16), "comm init: f16 type");
  FATHOM_MPI_CHECK(MPI_Type_commit(&g_f16), "comm init: f16 type");
  FATHOM_MPI_CHECK(MPI_Type_set_name(g_bf16, "fathom_bf16"), "comm init: bf16 type");
  FATHOM_MPI_CHECK(MPI_Type_set_name(g_f16, "fathom_f16"), "comm init: f16 type");
  // commute = 1: MPI may reorder the reduction, as it does for its own float sums.
  FATHOM_MPI_CHECK(MPI_Op_create(half_sum, 1, &g_half_sum), "comm init: half sum op");
  FATHOM_MPI_CHECK(MPI_Op_create(half_max, 1, &g_half_max), "comm init: half max op");
  FATHOM_MPI_CHECK(MPI_Op_create(half_min, 1, &g_half_min), "comm init: half min op");
}

void free_mpi_types() {
  if (g_bf16 == MPI_DATATYPE_NULL) return;
  MPI_Op_free(&g_half_sum);
  MPI_Op_free(&g_half_max);
  MPI_Op_free(&g_half_min);
  MPI_Type_free(&g_bf16);
  MPI_Type_free(&g_f16);
  g_bf16 = g_f16 = MPI_DATATYPE_NULL;
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: case DType::boolean: return MPI_UINT8_T;
    case DType::bf16: return g_bf16;
    case DType::f16: return g_f16;
  }
  fathom::detail::fail("comm: unsupported dtype ", int(t));
}

MPI_Op mpi_op(ReduceOp op, DType t) {
  if (is_half(t)) {
    switch (op) {
      case ReduceOp::sum: case ReduceOp::avg: return g_half_sum;
      case ReduceOp::max: return g_half_max;
      case ReduceOp::min: return g_half_min;
    }
  }
  if (t == DType::boolean) return op == ReduceOp::min ? MPI_MIN : MPI_MAX;
  switch (op) {
    case ReduceOp::sum: case ReduceOp::avg: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  return MPI_SUM;
}

}  // namespace fathom::comm::internal

// The NCCL backend for CUDA tensors (compiled only when FATHOM_WITH_CUDA).
//
// Stream ordering: each group has its own communication stream (non-blocking, so it never
// syncs implicitly with the legacy default stream). A call records an event on the compute
// stream and makes the comm stream wait on it, so the collective reads the tensor only after
// the kernels that produced it; the collective then records a `done` event, and Work::wait()
// makes the compute stream wait on that, so later kernels see the result. The host never
// blocks, and compute overlaps communication in between.
//
// Non-blocking communicators (ncclConfig_t.blocking = 0): a call may return ncclInProgress,
// and the communicator is polled with ncclCommGetAsyncError, never past the group's timeout,
// so even init and split cannot hang silently. The watchdog polls events and async errors.
#include "fathom/comm/nccl/nccl_backend.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>

#include "fathom/comm/comm.h"
#include "fathom/comm/mpi_backend.h"
#include "fathom/comm/mpi_util.h"
#include "fathom/comm/watchdog.h"
#include "fathom/core/cuda/runtime.h"

namespace fathom::comm::internal {
namespace {

[[noreturn]] void nccl_fail(ncclResult_t r, ncclComm_t comm, const std::string& what,
                            const char* file, int line) {
  const char* last = ncclGetLastError(comm);
  fathom::detail::fail(what, ": NCCL error ", int(r), ": ", ncclGetErrorString(r),
                       last && *last ? std::string(" (") + last + ")" : std::string(), " [",
                       file, ":", line, "]");
}
#define COMM_NCCL_CHECK(call, comm, what)                                          \
  do {                                                                               \
    ncclResult_t fathom_nccl_rc_ = (call);                                           \
    if (fathom_nccl_rc_ != ncclSuccess && fathom_nccl_rc_ != ncclInProgress)         \
      nccl_fail(fathom_nccl_rc_, (comm), (what), __FILE__, __LINE__);                \
  } while (0)
// Like core's FATHOM_CUDA_CHECK, but the message names the call and the group.
#define COMM_CUDA_CHECK(call, what)                                                \
  do {                                                                               \
    cudaError_t fathom_cuda_rc_ = (call);                                            \
    if (fathom_cuda_rc_ != cudaSuccess)                                              \
      fathom::detail::fail((what), ": CUDA error: ", cudaGetErrorString(fathom_cuda_rc_), \
                           " [", __FILE__, ":", __LINE__, "]");                      \
  } while (0)

// The one place DeepComm names the compute stream (the core's, core/cuda/runtime.h).
// Collectives wait for this stream's work before reading a tensor, and Work::wait() makes it
// wait for the collective.
cudaStream_t compute_stream(int device) { return fathom::cuda::current_stream(device); }

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cudaGetDevice(&prev_);
    if (prev_ != device) cudaSetDevice(device);
  }
  ~DeviceGuard() { cudaSetDevice(prev_); }

 private:
  int prev_ = 0;
};

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: case DType::boolean: return ncclUint8;
  }
  return ncclUint8;
}

// bool is 0/1 bytes: sum and max are a logical or, min a logical and (as in PyTorch).
ncclRedOp_t nccl_op(ReduceOp op, DType t) {
  if (t == DType::boolean) return op == ReduceOp::min ? ncclMin : ncclMax;
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  return ncclSum;
}

// Set once when the communicator fails (then the job ends); read by any thread.
struct Failure {
  std::atomic<bool> set{false};
  std::string msg;  // written before `set`
  bool failed() const { return set.load(std::memory_order_acquire); }
  void fail(std::string m) {
    if (failed()) return;
    msg = std::move(m);
    set.store(true, std::memory_order_release);
  }
};

class NcclWork final : public Work {
 public:
  NcclWork(int device, std::shared_ptr<Failure> error) : device_(device), error_(error) {
    COMM_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "nccl work");
  }
  ~NcclWork() override { cudaEventDestroy(done_); }
  cudaEvent_t event() const { return done_; }

  void wait() override {
    rethrow_if_failed();
    DeviceGuard g(device_);
    COMM_CUDA_CHECK(cudaStreamWaitEvent(compute_stream(device_), done_, 0), "Work::wait");
  }
  bool is_completed() override {
    if (failed()) return true;
    return cudaEventQuery(done_) == cudaSuccess;
  }

 private:
  bool failed() const { return error_->failed(); }
  void rethrow_if_failed() const {
    if (failed()) throw Error(error_->msg);
  }
  cudaEvent_t done_ = nullptr;
  int device_;
  std::shared_ptr<Failure> error_;  // the backend's
};

class NcclBackend final : public Backend, public Poller {
 public:
  NcclBackend(std::shared_ptr<GroupState> st, std::shared_ptr<MpiBackend> mpi, int device,
              ncclComm_t comm)
      : st_(std::move(st)), mpi_(std::move(mpi)), device_(device), comm_(comm) {
    DeviceGuard g(device_);
    COMM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                      "NCCL backend for " + st_->where());
    COMM_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming),
                      "NCCL backend for " + st_->where());
  }
  ~NcclBackend() override { shutdown(); }

  // Polls until the communicator has finished its last non-blocking call, within the group's
  // timeout; past it the job fails like any other hang.
  void wait_ready(ncclComm_t comm, const std::string& what) {
    auto deadline = Clock::now() + std::chrono::duration<double>(st_->timeout_s.load());
    for (int round = 0;; ++round) {
      ncclResult_t state = ncclSuccess;
      COMM_NCCL_CHECK(ncclCommGetAsyncError(comm, &state), comm, what);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) nccl_fail(state, comm, what, __FILE__, __LINE__);
      if (Clock::now() > deadline)
        fail_job("DeepComm watchdog: " + what + " on " + st_->where() +
                 " did not complete within " + std::to_string(st_->timeout_s.load()) +
                 " s (NCCL communicator still in progress)");
      backoff(round);
    }
  }

  WorkPtr submit(Call c) override {
    auto what = [&] { return c.desc + " (seq " + std::to_string(c.seq) + ") on " + st_->where(); };
    // A call that fails here never reaches the stream: close its pending record, or the
    // watchdog would wait for it.
    struct Unissue {
      GroupState* st;
      uint64_t id;
      bool armed = true;
      ~Unissue() {
        if (armed) st->finished(id, false);
      }
    } unissue{st_.get(), c.id};
    const Tensor& t = c.in.defined() ? c.in : c.out;
    FATHOM_CHECK(t.device().index == device_, what(), ": the group's NCCL communicator is on cuda:",
                 device_, " but the tensor ", t.desc(), " is on another device");
    // Debug mode compares collectives through the MPI queue; NCCL send/recv are not checked.
    if (c.debug && !c.p2p) mpi_->check_call(c);
    std::lock_guard<std::mutex> lk(mu_);
    FATHOM_CHECK(comm_ != nullptr, what(), ": the group's NCCL communicator was shut down");
    FATHOM_CHECK(!error_->failed(), what(), ": the group's NCCL communicator failed earlier: ",
                 error_->msg);
    DeviceGuard g(device_);
    // Comm stream waits for the compute stream: the tensor is ready when NCCL reads it.
    COMM_CUDA_CHECK(cudaEventRecord(ready_, compute_stream(device_)), what());
    COMM_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0), what());
    auto work = std::make_shared<NcclWork>(device_, error_);
    st_->started(c.id);
    enqueue(c, what);
    COMM_CUDA_CHECK(cudaEventRecord(work->event(), stream_), what());
    unissue.armed = false;  // from here the watchdog's poll() completes it
    inflight_.push_back({c.id, work, std::move(c.out), std::move(c.in)});
    return work;
  }

  void enqueue(const Call& c, const std::function<std::string()>& what) {
    // Nothing to move (then every rank has nothing: the element counts agree across ranks).
    // Not handed to NCCL, whose pointer checks an empty tensor's null data may trip; the
    // call still gets its place on the stream through the done event.
    if (c.out.numel() == 0) return;
    void* out = c.out.data_ptr();
    const void* in = c.in.data_ptr();
    ncclDataType_t t = nccl_type(c.out.dtype());
    size_t n = size_t(c.out.numel());
    ncclResult_t r = ncclSuccess;
    switch (c.kind) {
      case OpKind::allreduce:
        r = ncclAllReduce(out, out, n, t, nccl_op(c.reduce, c.out.dtype()), comm_, stream_);
        break;
      case OpKind::broadcast: r = ncclBroadcast(out, out, n, t, c.peer, comm_, stream_); break;
      case OpKind::allgather:
        r = ncclAllGather(in, out, size_t(c.in.numel()), t, comm_, stream_);
        break;
      case OpKind::reduce_scatter:
        r = ncclReduceScatter(in, out, n, t, nccl_op(c.reduce, c.out.dtype()), comm_, stream_);
        break;
      // NCCL has no tags: sends and recvs between a pair match in issue order.
      case OpKind::send: r = ncclSend(out, n, t, c.peer, comm_, stream_); break;
      case OpKind::recv: r = ncclRecv(out, n, t, c.peer, comm_, stream_); break;
      default: fathom::detail::fail(what(), ": not an NCCL call");
    }
    COMM_NCCL_CHECK(r, comm_, what());
    if (r == ncclInProgress) wait_ready(comm_, what());
  }

  // Watchdog thread: completes finished work in stream order; reports async errors.
  std::string poll() override {
    std::lock_guard<std::mutex> lk(mu_);
    if (!comm_) return "";
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(comm_, &state);
    if (state != ncclSuccess && state != ncclInProgress) {
      const char* last = ncclGetLastError(comm_);
      error_->fail("DeepComm: NCCL communicator of " + st_->where() + " failed: " +
                   ncclGetErrorString(state) +
                   (last && *last ? std::string(" (") + last + ")" : ""));
      return error_->msg;
    }
    while (!inflight_.empty()) {
      cudaError_t q = cudaEventQuery(inflight_.front().work->event());
      if (q == cudaErrorNotReady) break;
      if (q != cudaSuccess) {
        error_->fail("DeepComm: CUDA error in NCCL work on " + st_->where() + ": " +
                     cudaGetErrorString(q));
        return error_->msg;
      }
      st_->finished(inflight_.front().id, true);
      inflight_.pop_front();  // releases the tensors: their memory may be reused now
    }
    return "";
  }

  void abort() override {
    // No mutex: the job is ending, and a thread inside submit() may hold it while stuck.
    if (comm_) ncclCommAbort(comm_);
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!comm_) return;
    }
    // Drain: the watchdog bounds how long in-flight work may take.
    for (int round = 0;; ++round) {
      poll();
      std::lock_guard<std::mutex> lk(mu_);
      if (inflight_.empty() || error_->failed()) break;
      backoff(round);
    }
    std::lock_guard<std::mutex> lk(mu_);
    DeviceGuard g(device_);
    if (!error_->failed()) {
      ncclResult_t r = ncclCommFinalize(comm_);
      if (r == ncclSuccess || r == ncclInProgress) wait_ready(comm_, "NCCL finalize");
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
    comm_ = nullptr;
    inflight_.clear();
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
  }

  ncclComm_t comm() const { return comm_; }
  int device() const { return device_; }
  const std::shared_ptr<GroupState>& state() const { return st_; }

 private:
  struct Inflight {
    uint64_t id;
    std::shared_ptr<NcclWork> work;
    Tensor out, in;  // kept alive until the collective is done
  };
  std::shared_ptr<GroupState> st_;
  std::shared_ptr<MpiBackend> mpi_;
  int device_;
  ncclComm_t comm_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  std::mutex mu_;
  std::deque<Inflight> inflight_;
  std::shared_ptr<Failure> error_ = std::make_shared<Failure>();
};

ncclConfig_t nonblocking_config(const std::string& name) {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  config.commName = name.c_str();  // NCCL copies it during init
  return config;
}

}  // namespace

std::shared_ptr<Backend> make_nccl_backend(std::shared_ptr<GroupState> st,
                                           std::shared_ptr<MpiBackend> mpi, Device device) {
  ncclUniqueId id{};
  ncclComm_t comm = nullptr;
  // The id travels over MPI through the group's queue, so NCCL init keeps its place in the
  // call order on every rank.
  mpi->run_collective(OpKind::internal, 0, [&](int64_t) {
    if (st->rank == 0) COMM_NCCL_CHECK(ncclGetUniqueId(&id), nullptr, "ncclGetUniqueId");
    mpi_run([&] { return "NCCL unique id broadcast on " + st->where(); },
            [&] { return MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, st->comm); },
            [&](MPI_Request* r) { return MPI_Ibcast(&id, sizeof id, MPI_BYTE, 0, st->comm, r); });
  });
  DeviceGuard g(device.index);
  ncclConfig_t config = nonblocking_config(st->name);
  std::string what = "NCCL communicator init for " + st->where() + " on " + device.str();
  COMM_NCCL_CHECK(ncclCommInitRankConfig(&comm, st->size, id, st->rank, &config), comm, what);
  auto b = std::make_shared<NcclBackend>(st, std::move(mpi), device.index, comm);
  b->wait_ready(comm, what);
  st->set_poller(b);
  return b;
}

std::shared_ptr<Backend> split_nccl_backend(Backend& parent, int color, int key,
                                            std::shared_ptr<GroupState> child,
                                            std::shared_ptr<MpiBackend> child_mpi) {
  auto& p = static_cast<NcclBackend&>(parent);
  DeviceGuard g(p.device());
  std::string name = child ? child->name : p.state()->name + "/none";
  ncclConfig_t config = nonblocking_config(name);
  ncclComm_t comm = nullptr;
  std::string what = "ncclCommSplit of " + p.state()->where();
  COMM_NCCL_CHECK(
      ncclCommSplit(p.comm(), color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &comm, &config),
      p.comm(), what);
  p.wait_ready(p.comm(), what);
  if (!comm) return nullptr;
  p.wait_ready(comm, what);
  if (!child) {  // cannot happen: MPI and NCCL split by the same color
    ncclCommDestroy(comm);
    return nullptr;
  }
  auto b = std::make_shared<NcclBackend>(child, std::move(child_mpi), p.device(), comm);
  child->set_poller(b);
  return b;
}

}  // namespace fathom::comm::internal

// The NCCL backend for CUDA tensors (compiled only when FATHOM_WITH_CUDA).
//
// Stream ordering: each group has its own communication stream (non-blocking, so it never
// syncs implicitly with the legacy default stream). A call records a `ready` event on the
// compute stream when it is issued, and the comm stream waits on it, so the collective reads
// the tensor only after the kernels that produced it; the collective then records a `done`
// event, and Work::wait() makes the compute stream wait on that, so later kernels see the
// result. The host never waits for the GPU, and compute overlaps communication in between.
//
// Agreement, always: every call is first checked on the host, by the group's MPI comm thread
// in call order (mpi_backend.cpp, the same code as for CPU tensors): a collective goes through
// the agreement check, a send posts its header and a recv waits for the sender's. Only then
// does the comm thread enqueue it on the NCCL stream, so a call that disagrees never reaches
// NCCL (no memory is written) and fails naming both calls. The stream is not serialized: the
// check waits for the peers' hosts to issue the call, not for any GPU work; Work::wait()
// returns once this call's check is done and its `done` event is enqueued.
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
#include "fathom/core/ops/factory.h"
#include "fathom/core/trace.h"

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
    COMM_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "nccl work");
    COMM_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "nccl work");
  }
  ~NcclWork() override {
    cudaEventDestroy(ready_);
    cudaEventDestroy(done_);
  }
  cudaEvent_t ready() const { return ready_; }
  cudaEvent_t event() const { return done_; }
  // The host step on the MPI comm thread (check, then enqueue); set once, right after submit.
  void set_host(WorkPtr host) { host_ = std::move(host); }
  // A recv that got a mismatched message: it was received into scratch memory, and this is
  // the error its wait() throws.
  void set_error(std::string msg) { own_error_ = std::move(msg); }

  void wait() override {
    host_->wait();  // rethrows a failed check; afterwards `done_` is enqueued
    rethrow_if_failed();
    DeviceGuard g(device_);
    COMM_CUDA_CHECK(cudaStreamWaitEvent(compute_stream(device_), done_, 0), "Work::wait");
  }
  bool is_completed() override {
    if (failed()) return true;
    if (!host_->is_completed()) return false;
    return cudaEventQuery(done_) == cudaSuccess;
  }

 private:
  bool failed() const { return error_->failed(); }
  void rethrow_if_failed() const {
    if (failed()) throw Error(error_->msg);
    if (!own_error_.empty()) throw Error(own_error_);
  }
  WorkPtr host_;
  std::string own_error_;  // written by the host step before host_ completes
  cudaEvent_t ready_ = nullptr;
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
    // A call that fails here is never queued: close its pending record, or the watchdog
    // would wait for it.
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
    std::shared_ptr<NcclWork> work;
    {
      std::lock_guard<std::mutex> lk(mu_);
      FATHOM_CHECK(comm_ != nullptr, what(), ": the group's NCCL communicator was shut down");
      FATHOM_CHECK(!error_->failed(), what(), ": the group's NCCL communicator failed earlier: ",
                   error_->msg);
      DeviceGuard g(device_);
      work = std::make_shared<NcclWork>(device_, error_);
      // Issued now: the collective reads the tensor after the kernels queued so far.
      COMM_CUDA_CHECK(cudaEventRecord(work->ready(), compute_stream(device_)), what());
    }
    // The host step (mpi_backend.cpp: nccl_host_step) runs on the MPI comm thread in call
    // order and calls back here to enqueue. The callback holds the tensors until then.
    auto call = std::make_shared<Call>(std::move(c));
    Call host;
    host.kind = call->kind;
    host.reduce = call->reduce;
    host.peer = call->peer;
    host.tag = call->tag;
    host.p2p = call->p2p;
    host.debug = call->debug;
    host.seq = call->seq;
    host.id = call->id;
    host.fp = call->fp;
    host.desc = call->desc;
    host.nccl_enqueue = [this, call, work](const Fingerprint* sender) {
      enqueue_checked(*call, work, sender);
    };
    WorkPtr h = mpi_->submit(std::move(host));
    unissue.armed = false;  // the MPI backend (then poll()) finishes the record from here
    work->set_host(h);
    {
      std::lock_guard<std::mutex> lk(mu_);
      last_host_ = h;
    }
    return work;
  }

  // The host step's callback, on the MPI comm thread (or a caller running it inline): the call
  // agreed across ranks (for a recv: `sender` is the sender's header, checked here).
  void enqueue_checked(Call& c, const std::shared_ptr<NcclWork>& work, const Fingerprint* sender) {
    auto what = [&] { return c.desc + " (seq " + std::to_string(c.seq) + ") on " + st_->where(); };
    Tensor into = c.out;
    if (sender) {
      std::string bad = p2p_mismatch(c, *sender, *st_);
      if (!bad.empty()) {
        // NCCL's sender completes only when something receives its message: take it into
        // scratch device memory, unless it is not coming over NCCL (a CPU send: then the
        // recv only fails).
        if (!sender->device || OpKind(sender->kind) != OpKind::send) throw Error(bad);
        into = empty({std::max<int64_t>(sender->numel, 0)}, {DType(sender->dtype), c.out.device()});
        work->set_error(bad);
      }
    }
    std::lock_guard<std::mutex> lk(mu_);
    FATHOM_CHECK(comm_ != nullptr, what(), ": the group's NCCL communicator was shut down");
    FATHOM_CHECK(!error_->failed(), what(), ": the group's NCCL communicator failed earlier: ",
                 error_->msg);
    DeviceGuard g(device_);
    COMM_CUDA_CHECK(cudaStreamWaitEvent(stream_, work->ready(), 0), what());
    Call run = c;
    run.out = into;
    if (c.kind == OpKind::recv) run.in = into;
    {
      // The collective as the GPU ran it, on the group's own row beside the compute stream's.
      trace::DeviceScope span("nccl", op_name(c.kind), Device::cuda(device_), stream_,
                              "nccl " + st_->name);
      enqueue(run, what);
    }
    COMM_CUDA_CHECK(cudaEventRecord(work->event(), stream_), what());
    inflight_.push_back({c.id, work, std::move(run.out), std::move(run.in)});
    c.out = Tensor();  // held by inflight_ from here
    c.in = Tensor();
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
    WorkPtr last;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!comm_) return;
      last = last_host_;
    }
    // Calls still in their host step are enqueued first (the queue is FIFO: the last one done
    // means all are); the watchdog bounds how long that takes.
    if (last) {
      try {
        last->wait();
      } catch (const std::exception&) {}  // that call's own error, already its caller's
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
  std::mutex mu_;
  std::deque<Inflight> inflight_;
  WorkPtr last_host_;  // the latest call's host step
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

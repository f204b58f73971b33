#pragma once
// DeepComm's ProcessGroup: collectives over a set of ranks, always asynchronous.
//
//   auto w = pg.allreduce(grad);      // returns at once; the collective runs in the background
//   ...                               // overlap compute here
//   w->wait();                        // rethrows the collective's error, if any
//
// CPU tensors go to the MPI backend (one communication thread per group, a FIFO queue), CUDA
// tensors to the NCCL backend (one communication stream per group, ordered after the compute
// stream by events). Every rank of a group must issue the group's collectives in the same
// order; a watchdog turns a hang into an error naming the collective, the group and the ranks
// that did not arrive (docs/comm.md). Calls may come from several threads, but then the
// program must order them itself, or ranks may see different orders.
//
// In place where PyTorch is in place: allreduce and broadcast overwrite their tensor;
// allgather writes into `out` ([size * n] for an input of n elements; `in` may be this
// rank's block of `out`, in place, as NCCL and MPI_IN_PLACE allow), reduce_scatter reads
// `in` ([size * n]) and writes this rank's reduced block into `out` ([n]). Tensors must be
// contiguous; they stay alive until the collective is done even if the caller drops them.
#include <array>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "fathom/core/tensor.h"

namespace fathom::comm {

enum class ReduceOp : uint8_t { sum, avg, max, min };
const char* reduce_name(ReduceOp op);

// Every kind of call a group makes, for counters, traces, the watchdog and debug checks.
enum class OpKind : uint8_t {
  allreduce, broadcast, allgather, reduce_scatter, send, recv, barrier, split, internal
};
inline constexpr int kNumOpKinds = 9;
const char* op_name(OpKind k);

// A handle to one call in flight.
class Work {
 public:
  virtual ~Work() = default;
  // CPU: blocks until the collective is done. CUDA: makes the current compute stream wait for
  // it (the host does not block), as PyTorch's NCCL work does. Rethrows its error as
  // fathom::Error; calling wait() again rethrows again.
  virtual void wait() = 0;
  // True once done or failed; never blocks.
  virtual bool is_completed() = 0;
};
using WorkPtr = std::shared_ptr<Work>;

// Waits for every handle in order (the first error is rethrown after all have finished).
void wait_all(const std::vector<WorkPtr>& works);

// Payload bytes this rank handed to each kind of call: the tensor for allreduce, broadcast and
// send; this rank's input for allgather and reduce_scatter; received bytes for recv are
// counted separately. These are what compression shrinks (wire bytes depend on MPI's and
// NCCL's algorithms: a ring allreduce moves about 2 (n-1)/n times the payload).
struct OpCounter {
  uint64_t calls = 0;
  uint64_t bytes = 0;
};
struct CommStats {
  std::array<OpCounter, kNumOpKinds> ops{};
  uint64_t bytes_received = 0;  // by recv
  const OpCounter& operator[](OpKind k) const { return ops[size_t(k)]; }
  uint64_t total_bytes() const;  // sent, summed over all kinds
};

namespace internal {
struct GroupState;
struct Call;
class Backend;
class MpiBackend;
}  // namespace internal

class ProcessGroup {
 public:
  ~ProcessGroup();  // drains this group's queue (bounded by the watchdog), frees its comms
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int size() const;
  const std::string& name() const;
  // The rank in the world group of this group's rank r, for messages and mesh bookkeeping.
  int world_rank(int r) const;

  WorkPtr allreduce(const Tensor& t, ReduceOp op = ReduceOp::sum);
  WorkPtr broadcast(const Tensor& t, int root);
  WorkPtr allgather(const Tensor& out, const Tensor& in);
  WorkPtr reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::sum);
  // Point to point, nonblocking on both sides (crossing sends do not deadlock on the CPU).
  // A tag in [0, 32000) tells apart messages between the same pair; NCCL has no tags and
  // matches CUDA sends and recvs in issue order.
  WorkPtr send(const Tensor& t, int dst, int tag = 0);
  WorkPtr recv(const Tensor& t, int src, int tag = 0);
  WorkPtr barrier();

  // Sub-groups. Collective over this group: every rank calls it, in the same place of the
  // call order. Ranks with equal color form a group ordered by (key, rank); color < 0 gets
  // nullptr. The ranks form: every rank passes the same list; listed ranks get a group
  // ordered as listed, the others nullptr. Returns once the group exists (blocks).
  std::shared_ptr<ProcessGroup> split(int color, int key, const std::string& name = "");
  std::shared_ptr<ProcessGroup> split(const std::vector<int>& ranks, const std::string& name = "");

  // How long one call may run before the watchdog fails the job (default FATHOM_COMM_TIMEOUT,
  // 600 s). Sub-groups inherit their parent's timeout.
  void set_timeout(double seconds);
  double timeout() const;

  CommStats stats() const;
  void reset_stats();

  // Used by init() and split(); not for users.
  explicit ProcessGroup(std::shared_ptr<internal::GroupState> state);
  const std::shared_ptr<internal::GroupState>& state() const { return state_; }
  // Drains and stops the backends and frees the communicators; later calls fail clearly.
  void shutdown();

 private:
  WorkPtr submit(internal::Call& c);
  internal::Backend& backend_for(const Tensor& t, const char* op);
  std::shared_ptr<ProcessGroup> make_child(int color, int key, uint64_t list_hash,
                                           const std::string& name);

  std::shared_ptr<internal::GroupState> state_;
  std::shared_ptr<internal::MpiBackend> mpi_;
  std::shared_ptr<internal::Backend> nccl_;  // created on the first CUDA tensor (collective)
};

}  // namespace fathom::comm

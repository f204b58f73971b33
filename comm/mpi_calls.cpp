// The MPI backend's calls themselves: each collective's MPI body, and the host step of a NCCL
// call. The queue, the comm thread and agreement checks are in mpi_backend.cpp.
#include <algorithm>
#include <climits>

#include "fathom/comm/mpi_backend.h"
#include "fathom/comm/mpi_agreement.h"
#include "fathom/comm/mpi_util.h"
#include "fathom/core/ops/elementwise.h"

namespace fathom::comm::internal {

void MpiBackend::nccl_host_step(Call& c, const std::function<void()>& idle) {
  // Headers of earlier sends that have gone out are freed.
  while (!headers_.empty()) {
    int done = 0;
    MpiLock lock;
    FATHOM_MPI_CHECK(MPI_Test(&headers_.front().req, &done, MPI_STATUS_IGNORE), call_context(c, *st_));
    if (!done) break;
    headers_.pop_front();
  }
  if (!c.p2p) {
    if (st_->size > 1) check_agreement(c, idle);
    if (c.debug) check_fingerprints(c);
    return c.nccl_enqueue(nullptr);
  }
  // Send/recv: the same header as on the CPU path, on the side communicator under the call's
  // tag. A send posts it and is enqueued at once; a recv waits for the sender's here, in call
  // order (NCCL matches a pair's sends and recvs in stream order, so later calls must not be
  // enqueued before it), and nccl_enqueue decides what to receive into.
  if (c.kind == OpKind::send) {
    Header h;
    h.fp = std::make_unique<Fingerprint>(c.fp);
    {
      MpiLock lock;
      FATHOM_MPI_CHECK(MPI_Isend(h.fp.get(), sizeof(Fingerprint), MPI_BYTE, c.peer, c.tag,
                                 st_->side, &h.req),
                       call_context(c, *st_));
    }
    headers_.push_back(std::move(h));
    return c.nccl_enqueue(nullptr);
  }
  Fingerprint theirs;
  MPI_Request req = MPI_REQUEST_NULL;
  {
    MpiLock lock;
    FATHOM_MPI_CHECK(MPI_Irecv(&theirs, sizeof(Fingerprint), MPI_BYTE, c.peer, c.tag, st_->side, &req),
                     call_context(c, *st_));
  }
  for (int round = 0;; ++round) {
    int done = 0;
    {
      MpiLock lock;
      FATHOM_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE), call_context(c, *st_));
    }
    if (done) break;
    if (idle) idle();
    backoff(round);
  }
  c.nccl_enqueue(&theirs);
}

void MpiBackend::execute(Call& c, const std::function<void()>& idle) {
  if (c.nccl_enqueue) return nccl_host_step(c, idle);
  if (st_->size > 1) check_agreement(c, idle);
  if (c.debug) check_fingerprints(c);  // adds the shapes
  if (c.body) return c.body();
  auto ctx = [&] { return call_context(c, *st_); };  // runs only on failure
  switch (c.kind) {
    case OpKind::allreduce: return allreduce(c);
    case OpKind::allgather: return allgather(c);
    case OpKind::reduce_scatter: return reduce_scatter(c);
    case OpKind::broadcast: {
      char* p = static_cast<char*>(c.out.data_ptr());
      int64_t count = c.out.numel();
      MPI_Datatype t = mpi_type(c.out.dtype());
      int64_t off = 0;
      do {  // at least once, like the other calls, even for an empty tensor
        int n = int(std::min(kMaxChunk, count - off));
        void* at = p + off * int64_t(itemsize(c.out.dtype()));
        mpi_run(
            ctx, [&] { return MPI_Bcast(at, n, t, c.peer, st_->comm); },
            [&](MPI_Request* r) { return MPI_Ibcast(at, n, t, c.peer, st_->comm, r); });
        off += kMaxChunk;
      } while (off < count);
      return;
    }
    case OpKind::barrier:
      return mpi_run(
          ctx, [&] { return MPI_Barrier(st_->comm); },
          [&](MPI_Request* r) { return MPI_Ibarrier(st_->comm, r); });
    default: fathom::detail::fail(call_context(c, *st_), ": not an MPI collective");
  }
}

// Divides by the group size after a sum: avg in the tensor's own dtype (halves compute in f32).
static void divide_by(const Tensor& t, int n) {
  if (n > 1 && t.numel()) ops::binary_out(BinaryOp::div, t, double(n), t);
}

void MpiBackend::allreduce(Call& c) {
  // In place, straight on the tensor's memory: no copies, whatever the dtype.
  char* p = static_cast<char*>(c.out.data_ptr());
  int64_t count = c.out.numel();
  MPI_Datatype t = mpi_type(c.out.dtype());
  MPI_Op op = mpi_op(c.reduce, c.out.dtype());
  int64_t off = 0;
  do {
    int n = int(std::min(kMaxChunk, count - off));
    void* at = p + off * int64_t(itemsize(c.out.dtype()));
    mpi_run(
        [&] { return call_context(c, *st_); },
        [&] { return MPI_Allreduce(MPI_IN_PLACE, at, n, t, op, st_->comm); },
        [&](MPI_Request* r) { return MPI_Iallreduce(MPI_IN_PLACE, at, n, t, op, st_->comm, r); });
    off += kMaxChunk;
  } while (off < count);
  if (c.reduce == ReduceOp::avg) divide_by(c.out, st_->size);
}

void MpiBackend::allgather(Call& c) {
  int n = int(c.in.numel());
  MPI_Datatype t = mpi_type(c.in.dtype());
  void* out = c.out.data_ptr();
  // In place: the input is this rank's block of the output (ProcessGroup::allgather checked).
  void* in = c.in.data_ptr() == static_cast<char*>(out) + int64_t(st_->rank) * n * int64_t(itemsize(c.in.dtype()))
                 ? MPI_IN_PLACE : c.in.data_ptr();
  mpi_run(
      [&] { return call_context(c, *st_); }, [&] { return MPI_Allgather(in, n, t, out, n, t, st_->comm); },
      [&](MPI_Request* r) { return MPI_Iallgather(in, n, t, out, n, t, st_->comm, r); });
}

void MpiBackend::reduce_scatter(Call& c) {
  int n = int(c.out.numel());
  MPI_Datatype t = mpi_type(c.in.dtype());
  MPI_Op op = mpi_op(c.reduce, c.in.dtype());
  void* in = c.in.data_ptr();
  void* out = c.out.data_ptr();
  mpi_run(
      [&] { return call_context(c, *st_); },
      [&] { return MPI_Reduce_scatter_block(in, out, n, t, op, st_->comm); },
      [&](MPI_Request* r) { return MPI_Ireduce_scatter_block(in, out, n, t, op, st_->comm, r); });
  if (c.reduce == ReduceOp::avg) divide_by(c.out, st_->size);
}

}  // namespace fathom::comm::internal

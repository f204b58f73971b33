// The front end: checks every call's arguments (errors name the call, the group and the
// tensors), numbers it, and hands it to the backend for the tensor's device.
#include "fathom/comm/process_group.h"

#include <climits>
#include <functional>

#include "fathom/comm/comm.h"
#include "fathom/comm/group_state.h"
#include "fathom/comm/mpi_agreement.h"
#include "fathom/comm/mpi_backend.h"
#include "fathom/comm/mpi_util.h"
#include "fathom/comm/nccl/nccl_backend.h"
#include "fathom/comm/watchdog.h"

namespace fathom::comm {

using internal::Call;

void wait_all(const std::vector<WorkPtr>& works) {
  std::exception_ptr first;
  for (const auto& w : works) {
    try {
      if (w) w->wait();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

ProcessGroup::ProcessGroup(std::shared_ptr<internal::GroupState> state)
    : state_(std::move(state)), mpi_(std::make_shared<internal::MpiBackend>(state_)) {
  state_->set_kicker(mpi_);
}

ProcessGroup::~ProcessGroup() { shutdown(); }

void ProcessGroup::shutdown() {
  if (nccl_) nccl_->shutdown();
  state_->set_poller(nullptr);  // the NCCL backend holds the state: break the cycle
  if (mpi_) mpi_->shutdown();
  state_->free_comms();
}

int ProcessGroup::rank() const { return state_->rank; }
int ProcessGroup::size() const { return state_->size; }
const std::string& ProcessGroup::name() const { return state_->name; }
int ProcessGroup::world_rank(int r) const {
  FATHOM_CHECK(r >= 0 && r < size(), "world_rank: rank ", r, " is not in ", state_->where());
  return state_->world_ranks[size_t(r)];
}

void ProcessGroup::set_timeout(double seconds) {
  FATHOM_CHECK(seconds > 0, "set_timeout on ", state_->where(), ": timeout must be > 0 s, got ",
               seconds);
  state_->timeout_s = seconds;
}
double ProcessGroup::timeout() const { return state_->timeout_s; }
CommStats ProcessGroup::stats() const { return state_->stats(); }
void ProcessGroup::reset_stats() { state_->reset_stats(); }

namespace {

void check_open(const internal::GroupState& st, const char* op) {
  FATHOM_CHECK(!st.closed, op, " on ", st.where(),
               ": the group was shut down (comm::finalize() ran or the group was destroyed)");
}

void check_tensor(const internal::GroupState& st, const char* op, const Tensor& t, const char* which) {
  FATHOM_CHECK(t.defined(), op, " on ", st.where(), ": ", which, " is an undefined tensor");
  FATHOM_CHECK(t.is_contiguous(), op, " on ", st.where(), ": ", which, " ", t.desc(),
               " is not contiguous; collectives work in place on the tensor's memory. Pass a "
               "contiguous tensor (ops::contiguous(t)) and copy the result back if needed");
}

void check_float_for_avg(const internal::GroupState& st, const char* op, ReduceOp r, const Tensor& t) {
  FATHOM_CHECK(r != ReduceOp::avg || is_floating(t.dtype()), op, " on ", st.where(),
               ": ReduceOp::avg needs a floating dtype, got ", t.desc(),
               "; use sum and divide, or cast to f32 first");
}

void check_peer(const internal::GroupState& st, const char* op, int peer, const char* what) {
  FATHOM_CHECK(peer >= 0 && peer < st.size, op, " on ", st.where(), ": ", what, " ", peer,
               " is not a rank of the group (0..", st.size - 1, ")");
}

void check_count(const internal::GroupState& st, const char* op, int64_t n) {
  FATHOM_CHECK(n <= INT_MAX, op, " on ", st.where(), ": ", n,
               " elements per rank exceed MPI's int count; split the tensor into pieces of at "
               "most ", INT_MAX, " elements");
}

// What this call looks like to the other ranks (compared in debug mode, shown by the watchdog).
internal::Fingerprint fingerprint(OpKind kind, const Tensor& t, ReduceOp r, int peer, int tag) {
  internal::Fingerprint f;
  f.kind = uint8_t(kind);
  f.reduce = uint8_t(r);
  f.peer = peer;
  f.tag = tag;
  if (t.defined()) {
    f.dtype = uint8_t(t.dtype());
    f.device = t.is_cuda() ? 1 : 0;
    f.numel = t.numel();
    f.ndim = uint8_t(std::min<int64_t>(t.dim(), 255));
    for (int64_t d = 0; d < std::min<int64_t>(t.dim(), 6); ++d) f.dims[d] = t.size(d);
  }
  return f;
}

Call make_call(OpKind kind, const Tensor& out, const Tensor& in, ReduceOp r, int peer, int tag) {
  Call c;
  c.kind = kind;
  c.reduce = r;
  c.out = out;
  c.in = in;
  c.peer = peer;
  c.tag = tag;
  c.p2p = kind == OpKind::send || kind == OpKind::recv;
  c.debug = debug_enabled();
  c.bytes = in.defined() ? in.nbytes() : 0;
  c.fp = fingerprint(kind, in, r, peer, tag);
  c.fp.debug = c.debug;
  if (kind == OpKind::barrier && internal::finalizing()) c.fp.extra = internal::kFinalBarrier;
  return c;
}

}  // namespace

internal::Backend& ProcessGroup::backend_for(const Tensor& t, const char* op) {
  if (!t.defined() || !t.is_cuda()) return *mpi_;
#if FATHOM_WITH_CUDA
  std::lock_guard<std::mutex> lk(state_->backend_mu);  // two threads' first CUDA calls
  if (!nccl_) nccl_ = internal::make_nccl_backend(state_, mpi_, t.device());
  return *nccl_;
#else
  fathom::detail::fail(op, " on ", state_->where(), ": got CUDA tensor ", t.desc(),
                       ", but this build of Fathom has no CUDA backend (rebuild with "
                       "-DFATHOM_CUDA=ON)");
#endif
}

WorkPtr ProcessGroup::submit(Call& c) {
  internal::Backend& b = backend_for(c.in.defined() ? c.in : c.out, op_name(c.kind));
  std::lock_guard<std::mutex> order(state_->issue_mu);
  state_->issue(c);
  return b.submit(std::move(c));
}

WorkPtr ProcessGroup::allreduce(const Tensor& t, ReduceOp op) {
  auto& st = *state_;
  check_open(st, "allreduce");
  check_tensor(st, "allreduce", t, "tensor");
  check_float_for_avg(st, "allreduce", op, t);
  Call c = make_call(OpKind::allreduce, t, t, op, -1, 0);
  return submit(c);
}

WorkPtr ProcessGroup::broadcast(const Tensor& t, int root) {
  auto& st = *state_;
  check_open(st, "broadcast");
  check_tensor(st, "broadcast", t, "tensor");
  check_peer(st, "broadcast", root, "root");
  Call c = make_call(OpKind::broadcast, t, t, ReduceOp::sum, root, 0);
  return submit(c);
}

WorkPtr ProcessGroup::allgather(const Tensor& out, const Tensor& in) {
  auto& st = *state_;
  check_open(st, "allgather");
  check_tensor(st, "allgather", in, "input");
  check_tensor(st, "allgather", out, "output");
  FATHOM_CHECK(out.dtype() == in.dtype() && out.device() == in.device(), "allgather on ",
               st.where(), ": output ", out.desc(), " and input ", in.desc(),
               " differ in dtype or device");
  FATHOM_CHECK(out.numel() == in.numel() * st.size, "allgather on ", st.where(), ": output ",
               out.desc(), " must hold size x input = ", st.size, " x ", in.numel(), " = ",
               in.numel() * st.size, " elements (input ", in.desc(), ")");
  check_count(st, "allgather", in.numel());
  // In place (input = this rank's block of the output) is what NCCL and MPI_IN_PLACE allow;
  // any other overlap would have the collective read what it is overwriting.
  if (in.numel() && in.impl().storage == out.impl().storage) {
    int64_t n = in.numel();
    bool own_block = in.offset() == out.offset() + int64_t(st.rank) * n;
    bool apart = in.offset() + n <= out.offset() || out.offset() + out.numel() <= in.offset();
    FATHOM_CHECK(own_block || apart, "allgather on ", st.where(), ": input ", in.desc(),
                 " overlaps the output ", out.desc(), " but is not this rank's block of it (elements ",
                 int64_t(st.rank) * n, " to ", int64_t(st.rank + 1) * n, "), the only overlap "
                 "allowed (in place)");
  }
  Call c = make_call(OpKind::allgather, out, in, ReduceOp::sum, -1, 0);
  return submit(c);
}

WorkPtr ProcessGroup::reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op) {
  auto& st = *state_;
  check_open(st, "reduce_scatter");
  check_tensor(st, "reduce_scatter", in, "input");
  check_tensor(st, "reduce_scatter", out, "output");
  check_float_for_avg(st, "reduce_scatter", op, in);
  FATHOM_CHECK(out.dtype() == in.dtype() && out.device() == in.device(), "reduce_scatter on ",
               st.where(), ": output ", out.desc(), " and input ", in.desc(),
               " differ in dtype or device");
  FATHOM_CHECK(in.numel() == out.numel() * st.size, "reduce_scatter on ", st.where(), ": input ",
               in.desc(), " must hold size x output = ", st.size, " x ", out.numel(), " = ",
               out.numel() * st.size, " elements (output ", out.desc(), ")");
  check_count(st, "reduce_scatter", out.numel());
  Call c = make_call(OpKind::reduce_scatter, out, in, op, -1, 0);
  return submit(c);
}

static void check_p2p(const internal::GroupState& st, const char* op, const Tensor& t, int peer,
                      int tag) {
  check_open(st, op);
  check_tensor(st, op, t, "tensor");
  check_peer(st, op, peer, "peer");
  FATHOM_CHECK(peer != st.rank, op, " on ", st.where(), ": rank ", peer,
               " is this rank; a rank cannot send to or receive from itself");
  FATHOM_CHECK(tag >= 0 && tag < internal::kMaxUserTag, op, " on ", st.where(), ": tag ", tag,
               " must be in [0, ", internal::kMaxUserTag, ")");
}

WorkPtr ProcessGroup::send(const Tensor& t, int dst, int tag) {
  check_p2p(*state_, "send", t, dst, tag);
  Call c = make_call(OpKind::send, t, t, ReduceOp::sum, dst, tag);
  return submit(c);
}

WorkPtr ProcessGroup::recv(const Tensor& t, int src, int tag) {
  check_p2p(*state_, "recv", t, src, tag);
  Call c = make_call(OpKind::recv, t, t, ReduceOp::sum, src, tag);
  return submit(c);
}

WorkPtr ProcessGroup::barrier() {
  check_open(*state_, "barrier");
  Call c = make_call(OpKind::barrier, Tensor(), Tensor(), ReduceOp::sum, -1, 0);
  std::lock_guard<std::mutex> order(state_->issue_mu);
  state_->issue(c);
  return mpi_->submit(std::move(c));
}

std::shared_ptr<ProcessGroup> ProcessGroup::split(int color, int key, const std::string& name) {
  check_open(*state_, "split");
  return make_child(color, key, 0, name);
}

std::shared_ptr<ProcessGroup> ProcessGroup::split(const std::vector<int>& ranks,
                                                  const std::string& name) {
  auto& st = *state_;
  check_open(st, "split");
  std::vector<bool> seen(size_t(st.size));
  int index = -1;
  uint64_t hash = 1469598103934665603ull;  // FNV-1a over the list: debug mode compares it
  for (size_t i = 0; i < ranks.size(); ++i) {
    int r = ranks[i];
    check_peer(st, "split", r, "listed rank");
    FATHOM_CHECK(!seen[size_t(r)], "split on ", st.where(), ": rank ", r, " is listed twice");
    seen[size_t(r)] = true;
    if (r == st.rank) index = int(i);
    hash = (hash ^ uint64_t(r)) * 1099511628211ull;
  }
  return make_child(index < 0 ? -1 : 0, index, hash, name);
}

std::shared_ptr<ProcessGroup> ProcessGroup::make_child(int color, int key, uint64_t list_hash,
                                                       const std::string& name) {
  auto parent = state_;
  std::shared_ptr<internal::GroupState> child;
  mpi_->run_collective(OpKind::split, list_hash, [&](int64_t seq) {
    auto what = [&] { return "split of " + parent->where(); };
    MPI_Comm comm = MPI_COMM_NULL;
    internal::MpiLock lock;  // no nonblocking MPI_Comm_split exists
    FATHOM_MPI_CHECK(MPI_Comm_split(parent->comm, color < 0 ? MPI_UNDEFINED : color, key, &comm),
                     what());
    if (comm == MPI_COMM_NULL) return;
    child = std::make_shared<internal::GroupState>();
    // The same on every member: from the parent, the split's seq and the color.
    child->name = !name.empty() ? name
                                : parent->name + "/split" + std::to_string(seq) + "c" +
                                      std::to_string(color);
    uint64_t h = parent->key;
    for (uint64_t v : {uint64_t(seq), uint64_t(uint32_t(color))})
      h = (h ^ v) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
    child->key = h;
    child->comm = comm;
    FATHOM_MPI_CHECK(MPI_Comm_dup(comm, &child->side), what());
    MPI_Comm_set_errhandler(child->comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(child->side, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &child->rank);
    MPI_Comm_size(comm, &child->size);
    // World ranks of the members, for messages that name ranks.
    MPI_Group g, world_group;
    MPI_Comm_group(comm, &g);
    MPI_Comm_group(MPI_COMM_WORLD, &world_group);
    std::vector<int> mine(size_t(child->size));
    for (int i = 0; i < child->size; ++i) mine[size_t(i)] = i;
    child->world_ranks.resize(size_t(child->size));
    MPI_Group_translate_ranks(g, child->size, mine.data(), world_group, child->world_ranks.data());
    MPI_Group_free(&g);
    MPI_Group_free(&world_group);
    child->timeout_s = parent->timeout_s.load();
    child->shm_check = internal::ShmAgreement::open(comm, child->rank, child->size);
  });
  auto pg = child ? std::make_shared<ProcessGroup>(child) : nullptr;
  if (pg) internal::register_group(pg);
#if FATHOM_WITH_CUDA
  // Every member of the parent's NCCL communicator takes part, those left out included.
  if (nccl_) {
    auto nb = internal::split_nccl_backend(*nccl_, color, key, child, pg ? pg->mpi_ : nullptr);
    if (pg) pg->nccl_ = std::move(nb);
  }
#endif
  return pg;
}

}  // namespace fathom::comm

#pragma once
// Internal to comm/: the state a ProcessGroup shares with its backends and the watchdog.
//
// Every call gets a sequence number when the caller issues it (collectives count 1, 2, ... per
// group, the same on every rank when ranks issue the same calls; send/recv count separately,
// since only two ranks take part). A pending record lives from issue to completion; the
// watchdog reads the records to find calls running past the timeout, and answers peers'
// questions about where this rank is from them.
#include <mpi.h>

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "fathom/comm/process_group.h"

namespace fathom::comm::internal {

using Clock = std::chrono::steady_clock;

// What a rank is about to call. Every collective's key fields are checked across ranks before
// it runs (mpi_backend.cpp: check_agreement), every send carries its fingerprint ahead of the
// payload, and debug mode compares all of it. Plain bytes sent over MPI: every rank runs the
// same binary, so the layout agrees.
struct Fingerprint {
  int64_t seq = 0;
  int64_t numel = 0;
  int64_t dims[6] = {};
  uint64_t extra = 0;  // split(ranks): a hash of the list; barrier: kFinalBarrier or 0
  int32_t peer = -1;   // root, dst or src
  int32_t tag = 0;
  uint8_t kind = 0, dtype = 0, reduce = 0, ndim = 0, device = 0;
  uint8_t debug = 0;  // FATHOM_COMM_DEBUG on this rank when the call was issued
  uint8_t pad[2] = {};
};
// Fingerprint::extra of comm::finalize's world barrier, so that a peer still in a collective
// learns that this rank is exiting instead of "a different collective".
constexpr uint64_t kFinalBarrier = 1;
bool same_call(const Fingerprint& a, const Fingerprint& b);
std::string describe(const Fingerprint& f);  // "allreduce(sum) [4, 4] f32 cpu"
// The always-on agreement check compares these kKeyFields int64 of every rank's call.
constexpr int kKeyFields = 10;
void key_fields(const Fingerprint& f, int64_t* out);

// One call as the front end hands it to a backend.
struct Call {
  OpKind kind = OpKind::barrier;
  ReduceOp reduce = ReduceOp::sum;
  Tensor out, in;  // allreduce, broadcast, send, recv: `out` is the tensor and in == out
  int peer = -1;   // root, dst or src
  int tag = 0;
  bool p2p = false;
  bool debug = false;  // compare fingerprints across ranks first (FATHOM_COMM_DEBUG)
  int64_t seq = 0;     // collective or p2p sequence number
  uint64_t id = 0;     // local key of the pending record
  size_t bytes = 0;    // payload bytes counted in the stats
  Fingerprint fp;
  std::string desc;
  std::function<void()> body;  // split and internal calls run this on the comm thread
  // A CUDA call's host step (nccl_backend.cpp), queued on the MPI backend in call order: the
  // comm thread checks it (agreement check for a collective, the header for send/recv), then
  // runs this to enqueue it on the NCCL stream; for a recv it gets the sender's header. The
  // NCCL backend then owns the pending record (finished when its event completes).
  std::function<void(const Fingerprint* sender)> nccl_enqueue;
};
// Whether a recv can take the message that `sender` announced: "" when dtype, element count
// and device agree (in debug mode, the shape too), else the error naming both calls.
std::string p2p_mismatch(const Call& recv, const Fingerprint& sender, const GroupState& st);

// This rank's answer to a peer's watchdog. Fixed-size, sent as bytes.
struct PeerStatus {
  int64_t issued_seq = 0;   // last collective this rank called (0: none yet)
  int64_t oldest_seq = -1;  // oldest unfinished collective, -1 when all are done
  double oldest_for_s = 0;  // how long that one has been running (0 while queued)
  int32_t pending = 0;      // unfinished calls, send/recv included
  // Sends this rank issued to, and recvs it issued from, the asking rank (a p2p question).
  int64_t sends_to_asker = 0, recvs_from_asker = 0;
  uint8_t oldest_started = 0;
  uint8_t known_at_query = 0;  // desc_at_query is filled
  char issued_desc[96] = {};
  char oldest_desc[96] = {};
  char desc_at_query[96] = {};  // what this rank called as the queried seq
};

// A call that has run longer than the group's timeout.
struct Overdue {
  uint64_t id = 0;
  int64_t seq = 0;
  bool p2p = false;
  int peer = -1;
  std::string desc;
  double running_s = 0;
  OpKind kind = OpKind::barrier;
  int64_t nth = 0;  // send/recv: this rank's nth send to (recv from) that peer in the group
};
// The seq of a side-channel question about send/recv, asked by group rank r: negative, so it
// never names a collective (-1 means "no seq").
inline int64_t p2p_question(int asker) { return -2 - int64_t(asker); }

// The NCCL backend's hook into the watchdog: poll() completes finished work and returns a
// fatal error message ("" when healthy); abort() tears the communicator down before exit.
class Poller {
 public:
  virtual ~Poller() = default;
  virtual std::string poll() = 0;
  virtual void abort() = 0;
};

// The MPI backend's hook for the watchdog's tick: pays a deferred wake-up of the comm thread.
class Kicker {
 public:
  virtual ~Kicker() = default;
  virtual void kick() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual WorkPtr submit(Call c) = 0;
  // Finishes what is queued, then stops; later submits throw.
  virtual void shutdown() = 0;
};

struct GroupState;
class ShmAgreement;
// The error for calls that differ: every rank's call (`all`, by group rank), grouped.
std::string mismatch_message(const std::vector<Fingerprint>& all, int64_t seq,
                             const GroupState& st, bool debug_check);

struct GroupState {
  std::string name;
  int rank = 0, size = 1;
  uint64_t key = 1;                            // the same on every member; names it to peers
  std::vector<int> world_ranks;                // group rank -> world rank
  MPI_Comm comm = MPI_COMM_NULL;               // the collectives
  MPI_Comm side = MPI_COMM_NULL;               // send headers, fingerprints on a mismatch
  // The agreement check through shared memory (mpi_agreement.h) when every member is on this
  // node; null: through an MPI_Allreduce on `comm`. Used by the comm thread only.
  std::unique_ptr<ShmAgreement> shm_check;
  std::atomic<double> timeout_s{600};
  std::atomic<bool> closed{false};
  // Held from numbering a call to queueing it, so that when several threads issue calls on
  // one group, the queue order is the seq order (which of them goes first is still theirs).
  std::mutex issue_mu;
  std::mutex backend_mu;  // guards the lazy creation of the NCCL backend

  // The NCCL backend's poller, set once it exists; read by the watchdog thread.
  void set_poller(std::shared_ptr<Poller> p) {
    std::lock_guard<std::mutex> lk(poller_mu_);
    poller_ = std::move(p);
  }
  std::shared_ptr<Poller> poller() const {
    std::lock_guard<std::mutex> lk(poller_mu_);
    return poller_;
  }
  void set_kicker(std::weak_ptr<Kicker> k) {
    std::lock_guard<std::mutex> lk(poller_mu_);
    kicker_ = std::move(k);
  }
  std::shared_ptr<Kicker> kicker() const {
    std::lock_guard<std::mutex> lk(poller_mu_);
    return kicker_.lock();
  }

  ~GroupState();
  // "group 'world' (rank 0 of 2)"
  std::string where() const;
  std::string rank_name(int r) const;  // "rank 1" or "rank 1 (world rank 5)"

  // Caller thread: numbers the call, records it as pending, counts its bytes.
  void issue(Call& c);
  // Backends: the call began running (MPI: the comm thread took it; NCCL: enqueued).
  void started(uint64_t id);
  // Backends: the call is over; writes its trace line.
  void finished(uint64_t id, bool ok);
  PeerStatus status_for(int64_t seq) const;
  std::optional<Overdue> overdue(Clock::time_point now) const;
  // Every call that began running at least `min_s` seconds before `now`.
  std::vector<Overdue> running_for(Clock::time_point now, double min_s) const;
  int64_t last_seq() const;

  CommStats stats() const;
  void reset_stats();
  // Frees comm and side (idempotent); the group is closed afterwards.
  void free_comms();

 private:
  struct Record {
    OpKind kind = OpKind::barrier;
    bool p2p = false;
    int peer = -1;
    int64_t seq = 0;
    int64_t nth = 0;
    size_t bytes = 0;
    DType dtype = DType::u8;
    bool started = false;
    Clock::time_point start{};
    int64_t start_us = 0;
    std::string desc;
  };
  struct History {
    int64_t seq = 0;
    std::string desc;
  };
  mutable std::mutex poller_mu_;
  std::shared_ptr<Poller> poller_;
  std::weak_ptr<Kicker> kicker_;
  mutable std::mutex mu_;
  int64_t coll_seq_ = 0, p2p_seq_ = 0;
  std::map<int, int64_t> sends_to_, recvs_from_;  // by peer: sends and recvs issued
  uint64_t next_id_ = 0;
  std::map<uint64_t, Record> pending_;
  std::array<History, 64> history_{};  // what the last 64 collectives were, by seq % 64
  CommStats stats_;
};

// Process-wide state (comm/bootstrap.cpp).
// Writes one line to this rank's trace file when tracing is on.
bool tracing();
void trace_line(const std::string& line);
// Groups are registered when made; the watchdog sees their states, finalize shuts them down.
void register_group(const std::shared_ptr<ProcessGroup>& pg);
std::vector<std::shared_ptr<GroupState>> live_groups();
int world_rank();
// True while comm::finalize runs (its barrier is marked kFinalBarrier).
bool finalizing();

}  // namespace fathom::comm::internal

#pragma once
// Internal to comm/: the MPI backend. One communication thread per group takes calls from a
// FIFO queue and runs them one at a time, so the order calls are issued in is the order MPI
// sees them, the same on every rank; the caller returns as soon as the call is queued.
//
// One shortcut: when a caller waits on a collective that is at the head of the queue while the
// comm thread is idle, the caller runs it itself. The order is unchanged (it was next anyway)
// and the caller was going to block regardless, but two thread hand-offs are saved. For that
// to happen, a collective queued while the comm thread sleeps does not wake it at once:
//  - normally a one-shot timer wakes it kWakeDelayNs later (disarmed if the caller takes the
//    call), so an asynchronous call starts at most that late;
//  - after kSyncStreak calls in a row were taken inline, the caller is taken to be
//    synchronous and no timer is armed either (two timerfd calls cost 5-20 us in a VM, more
//    at 1 MB than at 4 KB). The wake is then owed: the next call, a wait() on anything else,
//    is_completed(), or the watchdog's 50 ms tick (kick()) pays it, and the streak restarts.
// So `pg.allreduce(x)->wait()` never makes the comm thread runnable. That matters on a busy
// machine (or with mpirun binding a rank's threads to one core): each hand-off is a chance
// for the scheduler to give the core to another process for a whole time slice, and 1 MB
// allreduces measured 10-25 ms medians instead of 0.3 ms that way.
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "fathom/comm/group_state.h"

namespace fathom::comm::internal {

class MpiBackend;

// MPI counts are ints: allreduce, broadcast, send and recv go in chunks of this many elements.
inline constexpr int64_t kMaxChunk = int64_t(1) << 30;

// "<call> (seq N) on <group>": how errors name a call.
std::string call_context(const Call& c, const GroupState& st);

// A CPU call's handle: the comm thread fills it in; wait() sleeps on a condition variable.
class MpiWork final : public Work {
 public:
  explicit MpiWork(std::weak_ptr<MpiBackend> owner = {}) : owner_(std::move(owner)) {}
  void wait() override;
  bool is_completed() override;
  void finish(std::exception_ptr err);

 private:
  std::weak_ptr<MpiBackend> owner_;  // set for collectives, which wait() may run inline
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> done_{false};
  std::exception_ptr err_;
};

class MpiBackend final : public Backend,
                         public Kicker,
                         public std::enable_shared_from_this<MpiBackend> {
 public:
  explicit MpiBackend(std::shared_ptr<GroupState> state);
  ~MpiBackend() override;
  WorkPtr submit(Call c) override;
  void shutdown() override;
  // Queues `body` as a collective of this group (it gets a seq, the watchdog watches it) and
  // waits for it. For split and the NCCL unique-id exchange, which must keep the call order.
  // `body` gets the call's seq.
  void run_collective(OpKind kind, uint64_t extra, std::function<void(int64_t seq)> body);
  // Runs `work`'s collective on the calling thread if it is next and the comm thread is idle.
  void run_inline(const MpiWork* work);
  // Pays an owed wake-up (see above).
  void kick() override;

 private:
  struct Task {
    Call call;
    std::shared_ptr<MpiWork> work;
  };
  static constexpr long kWakeDelayNs = 30000;  // 30 us
  static constexpr int kSyncStreak = 4;
  void loop();
  // `idle`: what the agreement check runs while it waits (the comm thread: its sends and recvs).
  void run_collective_task(Task& t, const std::function<void()>& idle);
  void wake_now();
  void set_timer(long ns);  // one-shot wake of the comm thread; 0 disarms
  void sleep_until_woken(int timeout_us);  // -1: until woken
  void execute(Call& c, const std::function<void()>& idle);
  // Every collective: the ranks' calls agree in op, dtype, count, root and seq, else every
  // rank throws naming each rank's call (before any payload moves).
  void check_agreement(const Call& c, const std::function<void()>& idle);
  // Debug mode: whole fingerprints, shapes included.
  void check_fingerprints(const Call& c);
  std::vector<Fingerprint> gather_fingerprints(const Call& c);
  // A CUDA call's host step (Call::nccl_enqueue): the check, then the enqueue.
  void nccl_host_step(Call& c, const std::function<void()>& idle);
  void allreduce(Call& c);
  void allgather(Call& c);
  void reduce_scatter(Call& c);

  std::shared_ptr<GroupState> st_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool stop_ = false;
  bool busy_ = false;         // a caller is running the head task inline (see above)
  bool running_ = false;      // the comm thread is handling a task
  bool sleeping_ = false;     // the comm thread is (about to be) blocked in ppoll
  bool timer_armed_ = false;  // a delayed wake is pending
  bool owed_ = false;         // a queued collective got no wake (caller looked synchronous)
  int inline_streak_ = 0;     // collectives in a row that callers took inline
  int event_fd_ = -1;         // wakes the comm thread now
  int timer_fd_ = -1;         // wakes it kWakeDelayNs after a collective is queued
  // NCCL sends' headers still in flight (whoever runs a host step: one at a time).
  struct Header {
    MPI_Request req = MPI_REQUEST_NULL;
    std::unique_ptr<Fingerprint> fp;
  };
  std::deque<Header> headers_;
  std::thread thread_;
};

}  // namespace fathom::comm::internal

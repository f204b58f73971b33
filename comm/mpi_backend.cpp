#include "fathom/comm/mpi_backend.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <future>
#include <sstream>

#include "fathom/comm/comm.h"
#include "fathom/comm/mpi_agreement.h"
#include "fathom/comm/mpi_util.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/phase.h"

namespace fathom::comm::internal {

void MpiWork::wait() {
  phase::Scope phase_scope(phase::Phase::comm_wait);
  if (!done_.load(std::memory_order_acquire))
    if (auto b = owner_.lock()) b->run_inline(this);
  if (!done_.load(std::memory_order_acquire)) {
    // No timeout here: the watchdog bounds every call and ends the job when one overruns.
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_.load(std::memory_order_acquire); });
  }
  if (err_) std::rethrow_exception(err_);
}

bool MpiWork::is_completed() {
  if (done_.load(std::memory_order_acquire)) return true;
  if (auto b = owner_.lock()) b->kick();  // a poller is not waiting: start the call
  return done_.load(std::memory_order_acquire);
}

void MpiWork::finish(std::exception_ptr err) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    err_ = std::move(err);
    done_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
}

MpiBackend::MpiBackend(std::shared_ptr<GroupState> state) : st_(std::move(state)) {
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  FATHOM_CHECK(event_fd_ >= 0 && timer_fd_ >= 0, "comm: ", st_->where(),
               ": cannot create the comm thread's eventfd/timerfd");
  // Named (for top -H and perf) and prioritized before the group is used.
  std::promise<void> ready;
  thread_ = std::thread([this, &ready] {
    pthread_setname_np(pthread_self(), "fathom-comm");
    raise_comm_thread_priority();
    ready.set_value();
    loop();
  });
  ready.get_future().wait();
}

MpiBackend::~MpiBackend() {
  shutdown();
  ::close(event_fd_);
  ::close(timer_fd_);
}

void MpiBackend::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  wake_now();
  if (thread_.joinable()) thread_.join();
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return !busy_; });  // a caller may still run a call inline
  // NCCL sends' headers that no recv took (the peer never posted one): MPI finishes them in
  // the background; their buffers must outlive that, so they are left allocated.
  int finalized = 0;
  MPI_Finalized(&finalized);
  for (Header& h : headers_) {
    if (finalized || h.req == MPI_REQUEST_NULL) continue;
    MpiLock lock;
    int done = 0;
    MPI_Test(&h.req, &done, MPI_STATUS_IGNORE);
    if (!done) MPI_Request_free(&h.req), (void)h.fp.release();
  }
  headers_.clear();
}

void MpiBackend::wake_now() {
  uint64_t one = 1;
  ssize_t n = ::write(event_fd_, &one, sizeof one);
  (void)n;  // the counter only saturates when the thread is awake anyway
}

void MpiBackend::set_timer(long ns) {
  itimerspec t{};
  t.it_value.tv_nsec = ns;  // 0 disarms
  ::timerfd_settime(timer_fd_, 0, &t, nullptr);
}

void MpiBackend::sleep_until_woken(int timeout_us) {
  pollfd fds[2] = {{event_fd_, POLLIN, 0}, {timer_fd_, POLLIN, 0}};
  timespec t{timeout_us / 1000000, long(timeout_us % 1000000) * 1000};
  ::ppoll(fds, 2, timeout_us < 0 ? nullptr : &t, nullptr);

  uint64_t drain;
  while (::read(event_fd_, &drain, sizeof drain) > 0) {}
  while (::read(timer_fd_, &drain, sizeof drain) > 0) {}
}

WorkPtr MpiBackend::submit(Call c) {
  // CUDA sends and recvs take the ordered path: their host step must keep the call order.
  bool p2p = c.p2p && !c.nccl_enqueue;
  auto work = p2p ? std::make_shared<MpiWork>() : std::make_shared<MpiWork>(weak_from_this());
  bool now = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) {
      st_->finished(c.id, false);
      fathom::detail::fail(c.desc, " on ", st_->where(),
                           ": the group was shut down (comm::finalize() ran or the group was "
                           "destroyed)");
    }
    queue_.push_back({std::move(c), work});
    if (owed_) {
      // The previous call got no wake-up, as its caller looked synchronous, but another call
      // comes before any wait: this caller is asynchronous after all.
      owed_ = false;
      inline_streak_ = 0;
      now = true;
    } else if (sleeping_) {
      // Wake the comm thread later, or not at all, so that a caller that waits at once takes
      // the call inline and the thread never becomes runnable (see mpi_backend.h). Sends and
      // recvs are posted at once.
      if (p2p) {
        now = true;
      } else if (inline_streak_ >= kSyncStreak) {
        owed_ = true;  // kick() or the next call settles it
      } else if (!timer_armed_) {
        timer_armed_ = true;
        set_timer(kWakeDelayNs);
      }
    }
  }
  if (now) wake_now();
  return work;
}

void MpiBackend::kick() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!owed_) return;
    owed_ = false;
    inline_streak_ = 0;
  }
  wake_now();
}

void MpiBackend::run_collective(OpKind kind, uint64_t extra,
                                std::function<void(int64_t seq)> body) {
  Call c;
  c.kind = kind;
  c.fp.kind = uint8_t(kind);
  c.fp.extra = extra;
  c.debug = debug_enabled();
  c.fp.debug = c.debug;
  WorkPtr work;
  {
    std::lock_guard<std::mutex> order(st_->issue_mu);
    st_->issue(c);
    c.body = [body = std::move(body), seq = c.seq] { body(seq); };
    work = submit(std::move(c));
  }
  work->wait();
}

void MpiBackend::run_inline(const MpiWork* work) {
  Task task;
  bool wake = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (busy_ || running_ || queue_.empty() || queue_.front().work.get() != work) {
      if (owed_) owed_ = false, inline_streak_ = 0, wake = true;  // waiting on something else
    } else {
      task = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      owed_ = false;
      ++inline_streak_;
      if (timer_armed_) set_timer(0);  // taken: the comm thread need not wake for it
      timer_armed_ = false;
    }
  }
  if (wake) wake_now();
  if (!task.work) return;
  run_collective_task(task, {});  // the comm thread keeps progressing sends and recvs
  bool more;
  {
    std::lock_guard<std::mutex> lk(mu_);
    busy_ = false;
    more = !queue_.empty();  // queued meanwhile: the comm thread takes them now
    if (more) owed_ = false;
  }
  cv_.notify_all();  // shutdown may be waiting
  if (more) wake_now();
}

void MpiBackend::run_collective_task(Task& task, const std::function<void()>& idle) {
  Call& c = task.call;
  st_->started(c.id);
  std::exception_ptr err;
  try {
    execute(c, idle);
  } catch (...) {
    err = std::current_exception();
  }
  // A CUDA call that reached its stream is the NCCL backend's to finish.
  if (err || !c.nccl_enqueue) st_->finished(c.id, !err);
  task.work->finish(err);
}

std::string call_context(const Call& c, const GroupState& st) {
  return fathom::detail::concat(c.desc, " (", c.p2p ? "p2p seq " : "seq ", c.seq, ") on ",
                                st.where());
}

// ---- The comm thread ----

namespace {
// A send or recv in flight. Always (not only in debug mode): a send first posts its
// fingerprint on the side communicator and a recv first waits for the sender's, then receives
// into the tensor only if dtype and element count agree (and in debug mode the shape too);
// otherwise into a scratch buffer sized from the sender's fingerprint, so that the sender
// still completes and the receiver fails naming both calls. Why a header message: MPI checks
// neither (Open MPI receives 3 f32 into a recv of 5 i32 without an error), and a receive
// smaller than the message is a truncation error only after MPI wrote into the buffer. The
// cost is one 120-byte eager message per send; the receive is posted when it arrives (one
// small-message latency later), by which time a large payload is still being matched
// (rendezvous), so only small messages pay it.
struct P2p {
  Call call;
  std::shared_ptr<MpiWork> work;
  std::vector<MPI_Request> reqs;
  std::unique_ptr<Fingerprint> fp;  // ours (send) or the sender's (recv)
  MPI_Request fp_req = MPI_REQUEST_NULL;
  bool awaiting_fp = false;
  std::vector<char> scratch;
  std::string error;
};


// Posts the data transfer of a send or recv, in chunks.
void post_p2p(P2p& p, GroupState& st, void* buf, int64_t count, DType dtype) {
  const Call& c = p.call;
  char* ptr = static_cast<char*>(buf);
  MpiLock lock;
  int64_t off = 0;
  do {  // at least once: an empty message still matches the peer's call
    int n = int(std::min(kMaxChunk, count - off));
    MPI_Request r;
    void* at = ptr + off * int64_t(itemsize(dtype));
    if (c.kind == OpKind::send)
      FATHOM_MPI_CHECK(MPI_Isend(at, n, mpi_type(dtype), c.peer, c.tag, st.comm, &r), call_context(c, st));
    else
      FATHOM_MPI_CHECK(MPI_Irecv(at, n, mpi_type(dtype), c.peer, c.tag, st.comm, &r), call_context(c, st));
    p.reqs.push_back(r);
    off += kMaxChunk;
  } while (off < count);
}

void start_p2p(P2p& p, GroupState& st) {
  const Call& c = p.call;
  {
    MpiLock lock;
    if (c.kind == OpKind::send) {
      p.fp = std::make_unique<Fingerprint>(c.fp);
      FATHOM_MPI_CHECK(MPI_Isend(p.fp.get(), sizeof(Fingerprint), MPI_BYTE, c.peer, c.tag, st.side,
                                 &p.fp_req),
                       call_context(c, st));
    } else {
      p.fp = std::make_unique<Fingerprint>();
      FATHOM_MPI_CHECK(MPI_Irecv(p.fp.get(), sizeof(Fingerprint), MPI_BYTE, c.peer, c.tag, st.side,
                                 &p.fp_req),
                       call_context(c, st));
      p.awaiting_fp = true;
      return;
    }
  }
  post_p2p(p, st, c.out.data_ptr(), c.out.numel(), c.out.dtype());
}

// The sender's fingerprint arrived: check it (p2p_mismatch), then post the receive.
void on_fingerprint(P2p& p, GroupState& st) {
  const Call& c = p.call;
  const Fingerprint& theirs = *p.fp;
  p.error = p2p_mismatch(c, theirs, st);
  if (p.error.empty()) return post_p2p(p, st, c.out.data_ptr(), c.out.numel(), c.out.dtype());
  // A CPU send's payload is drained into scratch memory, so the sender completes; a CUDA
  // send's travels over NCCL, where nothing here could take it.
  if (theirs.device || OpKind(theirs.kind) != OpKind::send) return;
  DType t = DType(theirs.dtype);
  p.scratch.resize(size_t(std::max<int64_t>(theirs.numel, 0)) * itemsize(t));
  post_p2p(p, st, p.scratch.data(), std::max<int64_t>(theirs.numel, 0), t);
}

// Tests one p2p call; true when it is over.
bool progress_p2p(P2p& p, GroupState& st) {
  int done = 0;
  if (p.awaiting_fp) {
    {
      MpiLock lock;
      FATHOM_MPI_CHECK(MPI_Test(&p.fp_req, &done, MPI_STATUS_IGNORE), call_context(p.call, st));
    }
    if (!done) return false;
    p.awaiting_fp = false;
    on_fingerprint(p, st);
  }
  MpiLock lock;
  if (p.fp_req != MPI_REQUEST_NULL) {
    FATHOM_MPI_CHECK(MPI_Test(&p.fp_req, &done, MPI_STATUS_IGNORE), call_context(p.call, st));
    if (!done) return false;
  }
  FATHOM_MPI_CHECK(MPI_Testall(int(p.reqs.size()), p.reqs.data(), &done, MPI_STATUSES_IGNORE),
                   call_context(p.call, st));
  return done;
}
}  // namespace

void MpiBackend::loop() {
  std::deque<P2p> inflight;
  // Tests every p2p call in flight; completes those that are over.
  auto progress = [&] {
    for (auto it = inflight.begin(); it != inflight.end();) {
      std::exception_ptr err;
      bool over = false;
      try {
        over = progress_p2p(*it, *st_);
        if (over && !it->error.empty()) throw Error(it->error);
      } catch (...) {
        err = std::current_exception();
        over = true;
      }
      if (!over) {
        ++it;
        continue;
      }
      st_->finished(it->call.id, !err);
      it->work->finish(err);
      it = inflight.erase(it);
    }
  };
  // What a collective's agreement check does while it waits for its peers: this thread's sends
  // and recvs must go on, a peer may be blocked on one (an MPI_Allreduce would progress them).
  const std::function<void()> progress_fn = [&] {
    if (!inflight.empty()) progress();
  };

  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lk(mu_);
      // busy_: a caller runs the head task inline; the next one must wait for it.
      for (int round = 0; queue_.empty() || busy_; ++round) {
        if (stop_ && queue_.empty() && inflight.empty()) return;
        // Sleeps until woken; with sends and recvs in flight, only briefly between tests
        // (yields first, then sleeps growing to 1 ms, so an idle wait stays cheap).
        int timeout_us = -1;
        if (!inflight.empty()) {
          lk.unlock();
          progress();
          lk.lock();
          if (!queue_.empty() && !busy_) break;
          if (inflight.empty()) continue;
          timeout_us = round < 64 ? 0 : std::min(1000, 10 << std::min(6, (round - 64) / 16));
        }
        sleeping_ = true;
        lk.unlock();
        if (timeout_us == 0)
          std::this_thread::yield();
        else
          sleep_until_woken(timeout_us);
        lk.lock();
        sleeping_ = false;
        timer_armed_ = false;
        if (timeout_us < 0) round = 0;
      }
      task = std::move(queue_.front());
      queue_.pop_front();
      running_ = true;
      if (!task.call.p2p || task.call.nccl_enqueue) inline_streak_ = 0;  // no wait at once
    }
    struct Done {  // clears running_ however this iteration ends
      MpiBackend* b;
      ~Done() {
        std::lock_guard<std::mutex> lk(b->mu_);
        b->running_ = false;
      }
    } done{this};

    Call& c = task.call;
    if (c.p2p && !c.nccl_enqueue) {
      st_->started(c.id);
      inflight.emplace_back();
      inflight.back().call = std::move(c);
      inflight.back().work = std::move(task.work);
      try {
        start_p2p(inflight.back(), *st_);
      } catch (...) {
        st_->finished(inflight.back().call.id, false);
        inflight.back().work->finish(std::current_exception());
        inflight.pop_back();
      }
      progress();
      continue;
    }
    run_collective_task(task, progress_fn);
    if (!inflight.empty()) progress();
  }
}

std::vector<Fingerprint> MpiBackend::gather_fingerprints(const Call& c) {
  std::vector<Fingerprint> all(size_t(st_->size));
  Fingerprint mine = c.fp;
  int n = int(sizeof(Fingerprint));
  mpi_run(
      [&] { return call_context(c, *st_) + ": fingerprint exchange"; },
      [&] { return MPI_Allgather(&mine, n, MPI_BYTE, all.data(), n, MPI_BYTE, st_->side); },
      [&](MPI_Request* r) {
        return MPI_Iallgather(&mine, n, MPI_BYTE, all.data(), n, MPI_BYTE, st_->side, r);
      });
  return all;
}

void MpiBackend::check_agreement(const Call& c, const std::function<void()>& idle) {
  int64_t buf[2 * kKeyFields], res[2 * kKeyFields];
  key_fields(c.fp, buf);
  // On one node: through shared memory (mpi_agreement.h). Otherwise one MPI_Allreduce(MAX)
  // of [v, -v] over the key fields gives every rank the maximum and minimum of each: they
  // agree iff max == min everywhere. It is the same 160-byte call on every rank whatever the
  // ranks are about to call, so it always matches. Either way every rank decides alike, and
  // only on a mismatch do they allgather whole fingerprints to say what each called
  // (docs/comm.md has the costs).
  if (st_->shm_check) {
    if (!st_->shm_check->agree(buf, idle))
      throw Error(mismatch_message(gather_fingerprints(c), c.seq, *st_, false));
    return;
  }
  for (int i = 0; i < kKeyFields; ++i) buf[kKeyFields + i] = -buf[i];
  mpi_run(
      [&] { return call_context(c, *st_) + ": agreement check"; },
      [&] {
        return MPI_Allreduce(buf, res, 2 * kKeyFields, MPI_INT64_T, MPI_MAX, st_->comm);
      },
      [&](MPI_Request* r) {
        return MPI_Iallreduce(buf, res, 2 * kKeyFields, MPI_INT64_T, MPI_MAX, st_->comm, r);
      });
  bool agree = true;
  for (int i = 0; i < kKeyFields; ++i) agree = agree && res[i] == -res[kKeyFields + i];
  if (!agree) throw Error(mismatch_message(gather_fingerprints(c), c.seq, *st_, false));
}

void MpiBackend::check_fingerprints(const Call& c) {
  auto all = gather_fingerprints(c);
  bool agree = std::all_of(all.begin(), all.end(), [&](const Fingerprint& f) {
    return same_call(f, all[0]);
  });
  if (!agree) throw Error(mismatch_message(all, c.seq, *st_, true));
}

}  // namespace fathom::comm::internal

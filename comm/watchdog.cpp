#include "fathom/comm/watchdog.h"

#include <glog/logging.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "fathom/comm/comm.h"
#include "fathom/comm/group_state.h"
#include "fathom/comm/side_channel.h"

namespace fathom::comm::internal {
namespace {

constexpr auto kPoll = std::chrono::milliseconds(50);

struct Watchdog {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread thread;
  std::atomic<bool> peer_failed{false};  // a peer's notice was printed: end this rank
  std::atomic<int> peer_exit_code{1};    // ... with the failing peer's exit code
  // Watchdog thread only (notices are handled there too):
  std::map<int, Clock::time_point> exiting;  // world ranks that entered comm::finalize, since
  struct Suspect {
    Clock::time_point asked{}, doomed{};  // doomed: when a peer's answer said it cannot finish
    std::string why;
  };
  std::map<std::pair<uint64_t, uint64_t>, Suspect> suspects;  // (group key, call id)
};

std::atomic<bool>& failing_flag() {
  static std::atomic<bool> f{false};
  return f;
}

struct FailureHooks {
  std::mutex mu;
  uint64_t next = 0;
  std::map<uint64_t, std::function<void()>> fns;
};
FailureHooks& failure_hooks() {
  static FailureHooks* h = new FailureHooks;  // never destroyed: a failing exit may still read it
  return *h;
}

// The hooks of comm::FailureHook, once. A thread that holds the registry's lock while this
// one ends the job would leave it locked: after a bounded try the hooks are skipped. A second
// caller waits (up to 2 s) until the first has run them, so neither path out of the job
// (end_job, or the answer to a failing peer's notice) goes on while they are still running.
void run_failure_hooks() {
  enum : int { not_run, running, done };
  static std::atomic<int> state{not_run};
  int expect = not_run;
  if (!state.compare_exchange_strong(expect, running)) {
    for (int i = 0; i < 2000 && state.load() == running; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return;
  }
  struct Done {
    ~Done() { state.store(done); }
  } mark_done;
  FailureHooks& h = failure_hooks();
  std::unique_lock<std::mutex> lk(h.mu, std::defer_lock);
  for (int i = 0; i < 100 && !lk.try_lock(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!lk.owns_lock()) return;
  auto fns = h.fns;
  lk.unlock();
  for (auto& [id, fn] : fns) {
    try {
      fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "DeepComm: a failure hook threw: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "DeepComm: a failure hook threw\n");
    }
  }
}

// Ends this process's part of the job after the message was printed: NCCL communicators are
// aborted, then MPI_Abort makes mpirun stop every rank.
[[noreturn]] void end_job(int code) {
  run_failure_hooks();
  for (auto& g : live_groups())
    if (auto p = g->poller()) p->abort();
  // No MpiLock, even under MPI_THREAD_SERIALIZED: a call stuck while holding it (split) would
  // keep the job alive forever, and this is the process's last MPI call either way.
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) {
    // One process alone has nobody to stop: exit without MPI_Abort's banner.
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  }
  std::_Exit(code);
}


Watchdog& dog() {
  static Watchdog* d = new Watchdog;  // never destroyed: atexit handlers may still use it
  return *d;
}

// A peer's notice: runs on the watchdog thread inside serve_side_channel, before the peer
// hears back, so a failing peer's line is out before mpirun tears the job down.
void on_notice(const Notice& n) {
  auto& d = dog();
  if (n.kind == NoticeKind::exiting) {
    d.exiting.emplace(n.from, Clock::now());
    return;
  }
  // The failing peer ends the job (MPI_Abort) once this rank answers: this rank's failure hooks
  // (a trace of its steps) run first, whether it is failing on its own too or not.
  if (job_failing()) {  // already ending the job with its own message
    run_failure_hooks();
    return;
  }
  report(fathom::detail::concat("DeepComm: rank ", n.from, " is failing: ", n.text,
                                " (ending this rank too)"));
  d.peer_exit_code = n.exit_code;
  d.peer_failed = true;
  run_failure_hooks();
}

// The side channel's question: where is this rank in group `key` at collective `seq`?
std::optional<PeerStatus> answer(uint64_t key, int64_t seq) {
  for (auto& g : live_groups())
    if (g->key == key && !g->closed) return g->status_for(seq);
  return std::nullopt;
}

// What a peer's answer says about the call this rank is stuck in. `arrived` is false when the
// peer is the reason the call cannot finish.
std::string explain(const PeerStatus& s, const Overdue& od, bool* arrived) {
  std::ostringstream os;
  *arrived = false;
  if (od.p2p) {
    os << "answered: " << s.pending << " call(s) unfinished";
    if (s.oldest_seq >= 0)
      os << "; its oldest collective is seq " << s.oldest_seq << ": " << s.oldest_desc
         << (s.oldest_started ? " (running)" : " (queued)");
    os << "; its last collective is seq " << s.issued_seq
       << (s.issued_seq ? std::string(": ") + s.issued_desc : std::string());
    return os.str();
  }
  if (s.known_at_query && od.desc != s.desc_at_query) {
    os << "called " << s.desc_at_query << " as seq " << od.seq
       << ", a different call: the ranks issued collectives in different orders or shapes";
  } else if (s.issued_seq < od.seq) {
    os << "has not called it; its last collective is ";
    if (s.issued_seq == 0)
      os << "none";
    else
      os << "seq " << s.issued_seq << ": " << s.issued_desc;
    if (s.oldest_seq >= 0)
      os << ", and it is still in seq " << s.oldest_seq << ": " << s.oldest_desc << " ("
         << (s.oldest_started ? "running" : "queued") << ")";
    else
      os << ", finished (it is computing, waiting outside DeepComm, or skipped this call)";
  } else if (s.oldest_seq >= 0 && s.oldest_seq < od.seq) {
    os << "is still in an earlier collective, seq " << s.oldest_seq << ": " << s.oldest_desc
       << " (running for " << s.oldest_for_s << " s)";
  } else if (s.oldest_seq == od.seq && !s.oldest_started) {
    os << "called it, but it is still queued behind this rank's other calls";
  } else if (s.oldest_seq == od.seq) {
    *arrived = true;
    os << "arrived, waiting in it for " << s.oldest_for_s << " s";
  } else {
    *arrived = true;
    os << "already finished it";
  }
  return os.str();
}

// Asks the peers where they are, then fails the job with one message. Never returns.
[[noreturn]] void investigate(GroupState& g, const Overdue& od) {
  double limit = g.timeout_s.load();
  std::vector<int> peers;  // group ranks
  if (od.p2p)
    peers.push_back(od.peer);
  else
    for (int r = 0; r < g.size; ++r)
      if (r != g.rank) peers.push_back(r);
  std::vector<int> world_peers;
  for (int r : peers) world_peers.push_back(g.world_ranks[size_t(r)]);
  // Peers answer within one watchdog tick; one that never answers is dead, stopped, or
  // unreachable over TCP. The wait is bounded so the job always ends.
  double wait_s = std::clamp(limit / 2, 2.0, 10.0);
  auto answers = ask_peers(world_peers, g.key, od.p2p ? -1 : od.seq, wait_s, answer);
  if (dog().peer_failed) end_job(dog().peer_exit_code);  // a peer's notice came meanwhile

  std::ostringstream os, detail_lines;
  std::vector<int> missing;
  for (size_t i = 0; i < peers.size(); ++i) {
    bool arrived = false;
    std::string why;
    if (!answers[i])
      why = "did not answer the watchdog within " + std::to_string(int(wait_s)) +
            " s (dead, stopped, already finalized, or unreachable over TCP)";
    else if (!answers[i]->found)
      why = "answered, but has no such group (it destroyed it, or the ranks split differently)";
    else
      why = explain(answers[i]->status, od, &arrived);
    if (!arrived) missing.push_back(peers[i]);
    detail_lines << "\n  " << g.rank_name(peers[i]) << ": " << why;
  }
  os << "DeepComm watchdog: " << od.desc << " (" << (od.p2p ? "p2p seq " : "seq ") << od.seq
     << ") on " << g.where() << " did not finish within " << limit << " s (running for "
     << od.running_s << " s).";
  if (!od.p2p) {
    os << " Ranks that did not arrive: [";
    for (size_t i = 0; i < missing.size(); ++i) os << (i ? ", " : "") << missing[i];
    os << "]" << (g.name != "world" ? " (ranks of this group)" : "") << ".";
  }
  os << detail_lines.str();
  os << "\nEnding the job so that no rank hangs. Every rank must issue the same collectives in "
        "the same order; FATHOM_COMM_DEBUG=1 checks that call by call. The limit is "
        "FATHOM_COMM_TIMEOUT (seconds) or ProcessGroup::set_timeout.";
  fail_job(os.str());
}

// A call that needs a peer which entered comm::finalize cannot finish if that peer never
// issued its side: a collective it did not call, or a send/recv with no counterpart left on
// it. Without this, a rank that returned from main while its peer waits in a recv from it
// would keep the peer waiting for the whole timeout. The peer is asked once the call has run
// for kExitGrace; a "cannot" answer still standing kExitGrace later (time for a message that
// was already on its way to arrive) ends the job naming both ranks.
constexpr double kExitGrace = 1.0;
void check_exiting_peers(Clock::time_point now) {
  auto& d = dog();
  if (d.exiting.empty()) return;
  auto exiting = d.exiting;  // asking serves notices, which may add to it
  auto grace = std::chrono::duration<double>(kExitGrace);
  std::map<std::pair<uint64_t, uint64_t>, Watchdog::Suspect> still;
  for (auto& g : live_groups()) {
    if (g->closed) continue;
    for (const Overdue& c : g->running_for(now, kExitGrace)) {
      for (const auto& [peer, since] : exiting) {
        auto at = std::find(g->world_ranks.begin(), g->world_ranks.end(), peer);
        int r = int(at - g->world_ranks.begin());
        if (at == g->world_ranks.end() || r == g->rank || (c.p2p && c.peer != r)) continue;
        if (now - since < grace) continue;
        auto key = std::make_pair(g->key, c.id);
        Watchdog::Suspect s = d.suspects.count(key) ? d.suspects[key] : Watchdog::Suspect{};
        if (s.doomed != Clock::time_point{} && now - s.doomed >= grace)
          fail_job(fathom::detail::concat(
              "DeepComm: ", c.desc, " (", c.p2p ? "p2p seq " : "seq ", c.seq, ") on ",
              g->where(), " cannot finish: ", g->rank_name(r),
              " is exiting (it entered comm::finalize: it returned from main or called exit) and ",
              s.why, ". Ending the job now instead of at the timeout."));
        if (s.doomed == Clock::time_point{} && now - s.asked >= grace) {
          s.asked = now;
          auto a = ask_peers({peer}, g->key, c.p2p ? p2p_question(g->rank) : c.seq, 2.0, answer)[0];
          // A recv that is this rank's nth from the peer needs the peer's nth send to it
          // (each send matches one recv), and a send its nth recv: counts it has not reached.
          int64_t theirs = c.kind == OpKind::recv ? a ? a->status.sends_to_asker : 0
                                                  : a ? a->status.recvs_from_asker : 0;
          if (!a)
            s.why = "did not answer the watchdog";
          else if (!a->found)
            s.why = "has no such group any more";
          else if (c.p2p && theirs < c.nth)
            s.why = fathom::detail::concat(
                "never issued the matching ", c.kind == OpKind::recv ? "send" : "recv",
                ": this is this rank's ", c.kind == OpKind::recv ? "recv #" : "send #", c.nth,
                c.kind == OpKind::recv ? " from" : " to", " it in this group, and it issued ", theirs,
                c.kind == OpKind::recv ? " send(s) to" : " recv(s) from", " this rank");
          else if (!c.p2p && a->status.issued_seq < c.seq)
            s.why = fathom::detail::concat(
                "never called it: its last collective in this group is ",
                a->status.issued_seq ? "seq " + std::to_string(a->status.issued_seq) + ": " +
                                           a->status.issued_desc
                                     : std::string("none"));
          if (!s.why.empty()) s.doomed = Clock::now();
        }
        still[key] = s;
      }
    }
  }
  d.suspects = std::move(still);  // calls that finished are forgotten
}

void run() {
  auto& d = dog();
  std::unique_lock<std::mutex> lk(d.mu);
  while (!d.stop) {
    d.cv.wait_for(lk, kPoll);
    if (d.stop) break;
    lk.unlock();
    serve_side_channel(answer);
    if (d.peer_failed) end_job(d.peer_exit_code);
    auto now = Clock::now();
    check_exiting_peers(now);
    if (d.peer_failed) end_job(d.peer_exit_code);
    for (auto& g : live_groups()) {
      if (g->closed) continue;
      if (auto k = g->kicker()) k->kick();
      if (auto p = g->poller()) {
        std::string err = p->poll();
        if (!err.empty()) fail_job(err);
      }
      if (auto od = g->overdue(now)) investigate(*g, *od);
    }
    lk.lock();
  }
}

}  // namespace

void start_watchdog() {
  auto& d = dog();
  std::lock_guard<std::mutex> lk(d.mu);
  if (d.thread.joinable()) return;
  d.stop = false;
  set_notice_handler(on_notice);
  d.thread = std::thread(run);
}

void stop_watchdog() {
  auto& d = dog();
  {
    std::lock_guard<std::mutex> lk(d.mu);
    d.stop = true;
  }
  d.cv.notify_all();
  if (d.thread.joinable()) d.thread.join();
}

bool job_failing() { return failing_flag().load(); }

// This process's world rank: MPI's once initialized, else the launcher's (comm::abort before
// init), else "?".
static std::string rank_label() {
  int init = 0;
  MPI_Initialized(&init);
  if (init) return std::to_string(world_rank());
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID", "RANK"})
    if (const char* r = std::getenv(v); r && *r) return r;
  return "?";
}

void report(const std::string& msg) {
  std::string line = "[rank " + rank_label() + "] " + msg + "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  // glog writes ERROR to stderr too, so only use it when it also keeps log files.
  if (google::IsGoogleLoggingInitialized()) {
    LOG(ERROR) << msg;
    google::FlushLogFiles(google::GLOG_ERROR);
  }
}

[[noreturn]] void fail_job(const std::string& msg) {
  if (failing_flag().exchange(true)) {
    // Another thread is already ending the job: MPI_Abort takes this one too, or _Exit does.
    std::this_thread::sleep_for(std::chrono::seconds(30));
    std::_Exit(kWatchdogExitCode);
  }
  report(msg);
  end_job(kWatchdogExitCode);
}

}  // namespace fathom::comm::internal

namespace fathom::comm {

void abort(const std::string& reason, int exit_code) {
  using namespace internal;
  if (failing_flag().exchange(true)) {  // a second thread (or the terminate handler) too
    std::this_thread::sleep_for(std::chrono::seconds(30));
    std::_Exit(exit_code);
  }
  std::fflush(stdout);
  report(reason);
  if (side_channel_open()) {
    // The peers print the reason before confirming; 3 s covers a watchdog tick (50 ms) on a
    // loaded machine, and a peer that never confirms (dead, finalized) is MPI_Abort's job.
    Notice n;
    n.text = reason;
    n.exit_code = exit_code;
    notify_peers(n, 3.0);
  }
  end_job(exit_code);
}

FailureHook::FailureHook(std::function<void()> fn) {
  auto& h = internal::failure_hooks();
  std::lock_guard<std::mutex> lk(h.mu);
  id_ = h.next++;
  h.fns[id_] = std::move(fn);
}

FailureHook::~FailureHook() {
  auto& h = internal::failure_hooks();
  std::lock_guard<std::mutex> lk(h.mu);
  h.fns.erase(id_);
}

}  // namespace fathom::comm

#include "fathom/comm/watchdog.h"

#include <glog/logging.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <thread>

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
};

Watchdog& dog() {
  static Watchdog* d = new Watchdog;  // never destroyed: atexit handlers may still use it
  return *d;
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

void run() {
  auto& d = dog();
  std::unique_lock<std::mutex> lk(d.mu);
  while (!d.stop) {
    d.cv.wait_for(lk, kPoll);
    if (d.stop) break;
    lk.unlock();
    serve_side_channel(answer);
    auto now = Clock::now();
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

[[noreturn]] void fail_job(const std::string& msg) {
  static std::atomic<bool> failing{false};
  if (failing.exchange(true)) {
    // Another thread is already ending the job: MPI_Abort takes this one too, or _Exit does.
    std::this_thread::sleep_for(std::chrono::seconds(30));
    std::_Exit(kWatchdogExitCode);
  }
  std::string line = "[DeepComm rank " + std::to_string(world_rank()) + "] " + msg + "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  // glog writes ERROR to stderr too, so only use it when it also keeps log files.
  if (google::IsGoogleLoggingInitialized()) {
    LOG(ERROR) << msg;
    google::FlushLogFiles(google::GLOG_ERROR);
  }
  for (auto& g : live_groups())
    if (auto p = g->poller()) p->abort();
  // No MpiLock, even under MPI_THREAD_SERIALIZED: a call stuck while holding it (split) would
  // keep the job alive forever, and this is the process's last MPI call either way.
  MPI_Abort(MPI_COMM_WORLD, kWatchdogExitCode);
  std::_Exit(kWatchdogExitCode);
}

}  // namespace fathom::comm::internal

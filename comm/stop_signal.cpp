// Stop requests from signals, and the one-int allreduce that makes every rank agree on them.
#include "fathom/comm/stop_signal.h"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "fathom/comm/process_group.h"
#include "fathom/core/error.h"
#include "fathom/core/ops/factory.h"

namespace fathom::comm {
namespace {

// Lock-free atomics are async-signal-safe, which is all the handler touches.
std::atomic<bool> g_requested{false};
std::atomic<int> g_signal{0};
std::atomic<uint64_t> g_seen{0};  // bit s: signal s arrived since the last clear
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free &&
              std::atomic<uint64_t>::is_always_lock_free);

void on_signal(int sig) {
  uint64_t bit = sig < 64 ? uint64_t(1) << sig : 0;
  // The same SIGTERM or SIGINT a second time: the job is being told again, so it should end
  // now, even if it is stuck before its next stop check.
  if ((sig == SIGTERM || sig == SIGINT) && (g_seen.fetch_or(bit) & bit)) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_seen.fetch_or(bit);
  int none = 0;
  g_signal.compare_exchange_strong(none, sig);
  g_requested.store(true);
}

}  // namespace

void install_stop_handler(std::initializer_list<int> signals) {
  for (int sig : signals) {
    FATHOM_CHECK(sig > 0 && sig < NSIG && sig != SIGKILL && sig != SIGSTOP,
                 "comm::install_stop_handler: signal ", sig, " cannot be caught");
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // a read or write the signal interrupts goes on
    FATHOM_CHECK(sigaction(sig, &sa, nullptr) == 0, "comm::install_stop_handler: sigaction(",
                 sig, ") failed: ", std::strerror(errno));
  }
}

bool stop_requested() { return g_requested.load(); }
int stop_signal() { return g_signal.load(); }
void request_stop() { g_requested.store(true); }
void clear_stop_request() {
  g_signal.store(0);
  g_seen.store(0);
  g_requested.store(false);
}

bool any_rank_stop_requested(ProcessGroup& group) {
  Tensor flag = full({1}, stop_requested() ? 1.0 : 0.0, DType::i32);
  group.allreduce(flag, ReduceOp::max)->wait();
  return flag.item<int32_t>() != 0;
}

}  // namespace fathom::comm

// comm's stop requests: a signal on one rank stops every rank at the same step ([mpi]: run
// with 2 ranks by CTest, and alone), and a repeated SIGTERM is not swallowed.
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "fathom/comm/comm.h"
#include "testing.h"

using namespace fathom;

namespace {

// Puts the default actions back, so the rest of the test binary is killed by SIGTERM as usual.
struct DefaultHandlers {
  ~DefaultHandlers() {
    std::signal(SIGUSR1, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    comm::clear_stop_request();
  }
};

int world_min(comm::ProcessGroup& w, int v, comm::ReduceOp op) {
  Tensor t = full({1}, double(v), DType::i32);
  w.allreduce(t, op)->wait();
  return t.item<int32_t>();
}

}  // namespace

TEST_CASE("any_rank_stop_requested: a signal on one rank stops every rank at the same step", "[mpi]") {
  auto& w = comm::world();
  DefaultHandlers restore;
  comm::install_stop_handler();
  comm::clear_stop_request();
  const int signalled = w.size() - 1, signal_step = 3;
  int stopped_at = -1;
  for (int step = 0; step < 10; ++step) {
    // raise() delivers the signal to this thread before it returns: the handler has run.
    if (w.rank() == signalled && step == signal_step) std::raise(SIGUSR1);
    if (comm::any_rank_stop_requested(w)) {
      stopped_at = step;
      break;
    }
  }
  CHECK(stopped_at == signal_step);
  CHECK(world_min(w, stopped_at, comm::ReduceOp::min) == world_min(w, stopped_at, comm::ReduceOp::max));
  // Only the signalled rank saw the signal; the others stopped because it did.
  CHECK(comm::stop_requested() == (w.rank() == signalled));
  CHECK(comm::stop_signal() == (w.rank() == signalled ? SIGUSR1 : 0));
  comm::clear_stop_request();
  CHECK_FALSE(comm::any_rank_stop_requested(w));
}

TEST_CASE("any_rank_stop_requested: request_stop from code, on every rank at once", "[mpi]") {
  auto& w = comm::world();
  DefaultHandlers restore;
  comm::request_stop();
  CHECK(comm::stop_requested());
  CHECK(comm::stop_signal() == 0);
  CHECK(comm::any_rank_stop_requested(w));
}

TEST_CASE("install_stop_handler: SIGTERM once is a request, twice ends the process") {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    comm::install_stop_handler();
    std::raise(SIGTERM);
    if (!comm::stop_requested() || comm::stop_signal() != SIGTERM) _exit(10);
    std::raise(SIGUSR1);  // another signal: still a request, the first one is kept
    if (comm::stop_signal() != SIGTERM) _exit(11);
    std::raise(SIGTERM);  // the default action: the process ends here
    _exit(12);
  }
  int st = 0;
  REQUIRE(waitpid(pid, &st, 0) == pid);
  INFO("wait status " << st);
  CHECK(WIFSIGNALED(st));
  CHECK(WTERMSIG(st) == SIGTERM);
}

TEST_CASE("install_stop_handler: signals that cannot be caught are refused") {
  CHECK_THROWS_WITH(comm::install_stop_handler({SIGKILL}),
                    "comm::install_stop_handler: signal 9 cannot be caught");
  CHECK_THROWS_WITH(comm::install_stop_handler({0}), "comm::install_stop_handler: signal 0 cannot be caught");
}

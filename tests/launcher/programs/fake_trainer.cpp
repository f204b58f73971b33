// A stand-in for a training program, for fathomrun's tests. Its "checkpoint" is a step
// counter in DIR/step, written by rank 0 after every step (a temporary file renamed over the
// old one); it resumes from there. Every step is one DeepComm allreduce, so the ranks move in
// lockstep as a real data-parallel job does, and a rank that dies leaves its peers waiting
// in a collective. Faults, injected on the first attempt only (FATHOM_RESTART_COUNT=0)
// unless --every-attempt:
//   --kill-at K   rank --rank (default 1) sends itself SIGKILL at the start of step K
//   --fail-at K   ... exits with code 3 at once (no comm::finalize: a crash-like exit)
//   --hang-at K   ... sleeps forever, printing nothing
// --stop-aware installs comm's stop handler (SIGUSR1, SIGTERM) and checks
// comm::any_rank_stop_requested every step: on a stop every rank prints the step it stops at
// and exits 0.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "fathom/comm/comm.h"
#include "fathom/core/ops/factory.h"

using namespace fathom;

namespace {

long read_step(const std::string& dir) {
  std::ifstream f(dir + "/step");
  long s = 0;
  return (f >> s) ? s : 0;
}

void write_step(const std::string& dir, long step) {
  std::string tmp = dir + "/step.tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << step << "\n";
  }
  std::rename(tmp.c_str(), (dir + "/step").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = ".";
  long steps = 10, kill_at = -1, fail_at = -1, hang_at = -1, step_ms = 50;
  int fault_rank = 1;
  bool stop_aware = false, every_attempt = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "fake_trainer: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--dir") dir = next();
    else if (a == "--steps") steps = std::stol(next());
    else if (a == "--kill-at") kill_at = std::stol(next());
    else if (a == "--fail-at") fail_at = std::stol(next());
    else if (a == "--hang-at") hang_at = std::stol(next());
    else if (a == "--rank") fault_rank = std::stoi(next());
    else if (a == "--step-ms") step_ms = std::stol(next());
    else if (a == "--stop-aware") stop_aware = true;
    else if (a == "--every-attempt") every_attempt = true;
    else {
      std::fprintf(stderr, "fake_trainer: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);  // one line at a time, whatever stdout is
  if (stop_aware) comm::install_stop_handler();
  const comm::InitInfo& info = comm::init();
  auto& world = *info.world;
  comm::LaunchEnv env = comm::launch_env();
  int rank = world.rank();
  std::printf("launch: %s\n", env.describe().c_str());
  std::printf("restart_count=%d launcher=%s\n", env.restart_count, env.supervisor.c_str());
  {
    std::ofstream(dir + "/pid." + std::to_string(rank)) << getpid() << "\n";
  }
  bool faulty = rank == fault_rank && (every_attempt || env.restart_count == 0);

  // Rank 0's counter, shared: the others may read the file while rank 0 rewrites it.
  Tensor start_t = full({1}, rank == 0 ? double(read_step(dir)) : 0.0, DType::i64);
  world.allreduce(start_t, comm::ReduceOp::max)->wait();
  long start = start_t.item<int64_t>();
  if (rank == 0) std::printf("resumed at step %ld\n", start);

  for (long step = start; step < steps; ++step) {
    if (stop_aware && comm::any_rank_stop_requested(world)) {
      if (rank == 0) write_step(dir, step);
      std::printf("stopped at step %ld by signal %d\n", step, comm::stop_signal());
      return 0;
    }
    if (faulty && step == kill_at) {
      std::printf("killing myself with SIGKILL at step %ld\n", step);
      std::fflush(stdout);
      std::raise(SIGKILL);
    }
    if (faulty && step == fail_at) {
      std::printf("exiting with code 3 at step %ld\n", step);
      std::fflush(stdout);
      std::_Exit(3);
    }
    if (faulty && step == hang_at)
      while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
    Tensor x = ones({4});
    world.allreduce(x)->wait();
    if (to_vector(x)[0] != double(world.size())) {
      std::fprintf(stderr, "fake_trainer: allreduce gave %g, not %d\n", to_vector(x)[0], world.size());
      return 1;
    }
    if (rank == 0) {
      write_step(dir, step + 1);
      std::printf("step %ld\n", step);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
  }
  if (rank == 0) std::printf("done steps=%ld\n", read_step(dir));
  return 0;
}

#pragma once
// DeepComm's entry points: bootstrap the job, get the world group, tear down.
//
//   auto info = fathom::comm::init();          // reads mpirun / srun / torchrun-style env
//   auto& world = *info.world;                 // rank(), size(), allreduce(...), split(...)
//   Tensor x = zeros({1024}, {kFloat32, info.device});
//   world.allreduce(x)->wait();
//   fathom::comm::finalize();                  // or let the atexit hook do it
//
// See docs/comm.md for the threading model, the watchdog and the environment variables;
// comm/launch_env.h for what the launcher's environment says (readable before init), and
// comm/stop_signal.h for stopping every rank at the same step on SIGUSR1/SIGTERM.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fathom/comm/launch_env.h"
#include "fathom/comm/process_group.h"
#include "fathom/comm/stop_signal.h"
#include "fathom/core/device.h"

namespace fathom::comm {

struct InitInfo {
  std::shared_ptr<ProcessGroup> world;
  int rank = 0;        // == world->rank()
  int world_size = 1;  // == world->size()
  int local_rank = 0;  // this process's index on its node
  int local_size = 1;  // processes on this node
  // cuda:(local_rank % device count) when this build and node have GPUs, else cpu. DeepComm
  // does not make it current: the caller does (the core owns the CUDA context).
  Device device = Device::cpu();
  std::string launcher;  // "openmpi", "mpich", "slurm", "torchrun" or "single"
  int mpi_thread_level = 0;  // MPI_THREAD_MULTIPLE or MPI_THREAD_SERIALIZED
};

// Initializes MPI (MPI_Init_thread, asking for MPI_THREAD_MULTIPLE) unless the program already
// did, creates the world group and starts the watchdog. Idempotent: later calls return the
// same InitInfo. Registers an atexit hook that calls finalize(). Throws fathom::Error when the
// environment is inconsistent (e.g. WORLD_SIZE=4 but MPI sees one process).
const InitInfo& init();
// The world group, initializing on first use.
ProcessGroup& world();
bool is_initialized();

// Drains every live group (a final world barrier, watched like any collective), stops the
// watchdog and finalizes MPI if init() initialized it. Groups used afterwards throw.
// Idempotent; safe from atexit.
void finalize();

// Ends the whole job because this rank cannot go on: prints "[rank R] <reason>" to stderr,
// tells every other rank over the watchdog's side channel (each prints "[rank P] DeepComm:
// rank R is failing: <reason> (ending this rank too)" and exits within a watchdog tick,
// 50 ms, with the same code), waits up to 3 s for them to confirm, then MPI_Abort(exit_code)
// (a job of one process just exits). Call it from a catch block instead of returning an error
// from main, so the peers learn why. A rank that just returns or exits ends the job too, in
// seconds rather than at the timeout (comm::finalize tells the peers it is exiting; a peer
// waiting for a call it will never make fails naming it), but without its reason. Before
// init (or after finalize) it prints and exits with `exit_code`. init() installs a
// std::terminate handler that does the same for an exception nobody caught.
[[noreturn]] void abort(const std::string& reason, int exit_code = 1);

// Runs `fn` when this process ends the job because it or a peer failed or hung (comm::abort, a
// peer's notice, the watchdog's timeout, an uncaught exception), on whichever thread ends it,
// just before MPI_Abort or exit: for what a rank can save of its own on the way out (its part
// of a profile). It must be quick and use no collective (the peers are going too); an
// exception from it is printed and ignored. Unregistered when the hook is destroyed. Nothing
// runs for SIGKILL.
class FailureHook {
 public:
  explicit FailureHook(std::function<void()> fn);
  ~FailureHook();
  FailureHook(const FailureHook&) = delete;
  FailureHook& operator=(const FailureHook&) = delete;

 private:
  uint64_t id_;
};

// For errors about a setting every rank must share: "\n  <what>: rank 0 <v0>, rank 1 <v1>, ..."
// when the ranks' values (one per rank, in rank order) differ; "" when they all agree.
std::string describe_disagreement(const std::string& what, const std::vector<std::string>& per_rank);

// RAII form: init() in the constructor, finalize() in the destructor.
class Guard {
 public:
  Guard() : info_(init()) {}
  ~Guard() { finalize(); }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
  const InitInfo& info() const { return info_; }

 private:
  const InitInfo& info_;
};

// Tracing: one JSON line per finished call to "<prefix>.rank<R>.jsonl" (FATHOM_COMM_TRACE sets
// the prefix at init). An empty prefix stops tracing and closes the file.
void set_trace(const std::string& prefix);
// Debug mode (FATHOM_COMM_DEBUG=1): before each call all ranks compare what they are calling.
// Every rank of the job must switch it at the same point of the call order.
void set_debug(bool on);
bool debug_enabled();

}  // namespace fathom::comm

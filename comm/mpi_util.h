#pragma once
// Internal to comm/: MPI error checking, the thread-level policy, dtype and op mapping.
#include <mpi.h>

#include <string>

#include "fathom/comm/process_group.h"
#include "fathom/core/dtype.h"
#include "fathom/core/error.h"

namespace fathom::comm::internal {

// Throws fathom::Error "<what>: MPI error <class>: <MPI_Error_string> (file:line)" on failure.
void mpi_fail(int rc, const std::string& what, const char* file, int line);
#define FATHOM_MPI_CHECK(call, what)                                          \
  do {                                                                        \
    int fathom_mpi_rc_ = (call);                                              \
    if (fathom_mpi_rc_ != MPI_SUCCESS)                                        \
      ::fathom::comm::internal::mpi_fail(fathom_mpi_rc_, (what), __FILE__, __LINE__); \
  } while (0)

// The thread level MPI gave us. With MPI_THREAD_MULTIPLE every group's comm thread calls the
// blocking collectives directly (Open MPI's nonblocking ones run about 2x slower here). With
// only MPI_THREAD_SERIALIZED, MPI calls take one process-wide lock, and a collective is
// started nonblocking and tested with the lock released between tests, so one group's stuck
// collective cannot keep another group's thread, or the watchdog, out of MPI.
void set_thread_level(int provided);
bool thread_multiple();

class MpiLock {
 public:
  MpiLock();
  ~MpiLock();
  MpiLock(const MpiLock&) = delete;
  MpiLock& operator=(const MpiLock&) = delete;

 private:
  bool held_;
};

// Backs off between MPI_Test calls: a few yields, then sleeps growing to 1 ms, so waiting
// never busy-spins for long on a shared machine.
void backoff(int round);

// Called by each comm thread as it starts. A comm thread on a CPU that compute keeps busy must
// run the moment it is runnable: its collective progresses only while the peers' comm threads
// run too, and each one left waiting for a time slice busy-polls on its own core. So it asks
// for a lower nice (FATHOM_COMM_THREAD_NICE, parsed by comm::init). That needs CAP_SYS_NICE
// or an RLIMIT_NICE allowance: the default quietly stays at the process's priority without
// one, an explicit value prints one warning.
struct CommThreadNice {
  bool apply = true;            // false: "off", leave the thread's priority alone
  bool explicit_value = false;  // the user set it: a refusal is worth a warning
  int nice = -10;
};
void set_comm_thread_nice(CommThreadNice n);
void raise_comm_thread_priority();

// Runs one MPI operation to completion with the policy above: `blocking()` under
// MPI_THREAD_MULTIPLE, otherwise `start(&request)` and MPI_Test until done. `what()` names
// the call in the error; it runs only on failure, keeping string building off the fast path.
template <class What, class Blocking, class Start>
void mpi_run(What&& what, Blocking&& blocking, Start&& start) {
  if (thread_multiple()) {
    FATHOM_MPI_CHECK(blocking(), what());
    return;
  }
  MPI_Request req = MPI_REQUEST_NULL;
  {
    MpiLock lock;
    FATHOM_MPI_CHECK(start(&req), what());
  }
  for (int round = 0;; ++round) {
    int done = 0;
    {
      MpiLock lock;
      FATHOM_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what());
    }
    if (done) return;
    backoff(round);
  }
}

// The MPI datatype a DType travels as. bool is one byte of 0/1 (u8); bf16 and f16 are
// committed 2-byte types of their own, so the half reduction ops can tell them apart.
MPI_Datatype mpi_type(DType t);
// The MPI op for a reduction on dtype t; avg is sum (the caller divides). Half types get
// user-defined ops that compute in f32 and round once per step. For bool, sum and max are a
// logical or and min a logical and (PyTorch's convention).
MPI_Op mpi_op(ReduceOp op, DType t);
// Creates the half types and ops; called once after MPI_Init, freed before MPI_Finalize.
void create_mpi_types();
void free_mpi_types();

}  // namespace fathom::comm::internal

#pragma once
// Internal to comm/: the watchdog. One thread per process, started by init(). Every 50 ms it
//  - answers peers' questions ("where are you in group G at collective seq S?") arriving on
//    the TCP side channel (comm/side_channel.h says why not MPI). It answers even while this
//    rank's comm thread is stuck inside MPI, and it never calls MPI itself except to abort;
//  - lets the NCCL backend poll its events and ncclCommGetAsyncError;
//  - looks for a call running longer than its group's timeout. Then it asks the peers (all
//    ranks for a collective, the partner for send/recv), waits a bounded time for the
//    answers, writes one message naming the call, the group, its sequence number and what
//    every rank that did not arrive is doing, and ends the job with MPI_Abort, which makes
//    mpirun stop every rank: a hang becomes an error, never silence.
#include <string>

namespace fathom::comm::internal {

// mpirun's exit status (and MPI_Abort's error code) when the watchdog ends a job.
constexpr int kWatchdogExitCode = 124;
// User tags for send/recv stay below this (MPI promises at least 32767); debug-mode
// fingerprints travel on the side communicator under the user's tag.
constexpr int kMaxUserTag = 32000;

void start_watchdog();
// Stops the thread; pending answers are finished with a bounded wait.
void stop_watchdog();
// Prints msg (stderr, and glog's log files when glog is initialized), aborts NCCL
// communicators, then MPI_Abort. Used by the watchdog and the NCCL backend.
[[noreturn]] void fail_job(const std::string& msg);
// Prints "[rank R] msg" to stderr (and glog's files when glog is initialized).
void report(const std::string& msg);
// True once this rank is ending the job (fail_job or comm::abort): a notice from a peer is
// then only confirmed, not acted on.
bool job_failing();

}  // namespace fathom::comm::internal

#pragma once
// Stopping a job cleanly on a signal: SLURM's warning before the time limit (srun
// --signal=USR1@60, forwarded by fathomrun and mpirun), a SIGTERM from a scheduler.
//
//   comm::install_stop_handler();                       // once, early in main
//   for (step = start; step < steps; ++step) {
//     if (comm::any_rank_stop_requested(world)) {       // every rank gets the same answer
//       save_checkpoint(step);                          // so they all stop at this step
//       return 0;
//     }
//     train_step();
//   }
//
// A signal reaches the ranks at slightly different moments: a rank that checked only its own
// flag could stop one step before its peers and leave them waiting in that step's
// collectives. any_rank_stop_requested() is one small allreduce (MAX of one int) per call, so
// every rank stops at the step where the first of them saw the signal. Call it every step, or
// every k steps at the same steps on every rank.
#include <csignal>
#include <initializer_list>

namespace fathom::comm {

class ProcessGroup;

// Installs handlers that record a stop request on each of the signals (default SIGUSR1 and
// SIGTERM; SIGINT can be added). A SIGTERM or SIGINT that arrives a second time is not caught:
// its default action ends the process (a job that does not stop in time can still be ended
// the usual way). Idempotent; safe to call again with other signals.
void install_stop_handler(std::initializer_list<int> signals = {SIGUSR1, SIGTERM});

// This process's own flag: true once one of the signals arrived (or request_stop()).
bool stop_requested();
// The first signal that requested the stop, 0 when none did (request_stop() sets 0 too).
int stop_signal();
// Requests a stop from code (e.g. a training script's own time budget).
void request_stop();
// Forgets the request (tests; a program that handled it and goes on).
void clear_stop_request();

// Collective over `group` (every rank calls it at the same point): true on every rank when
// any rank's stop_requested() is true. Costs one allreduce of one int32 on the CPU.
bool any_rank_stop_requested(ProcessGroup& group);

}  // namespace fathom::comm

// Rank 1 does not call a collective that the other ranks call. The watchdog must end the job
// within FATHOM_COMM_TIMEOUT with a message naming the collective, the group, its sequence
// number and rank 1, instead of hanging. Modes:
//   idle: rank 1 sleeps (as if stuck in compute) instead of calling allreduce;
//   other: rank 1 calls barrier where the others call allreduce (calls out of order).
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "fathom/comm/comm.h"
#include "fathom/core/ops/factory.h"

using namespace fathom;

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "idle";
  auto& w = *comm::init().world;
  Tensor x = ones({16});
  w.allreduce(x)->wait();  // seq 1: everybody
  if (w.rank() == 1) {
    if (mode == "idle")
      std::this_thread::sleep_for(std::chrono::seconds(60));  // the watchdog ends the job first
    else {
      // A second later than the others, so rank 0's watchdog is normally the one to report.
      std::this_thread::sleep_for(std::chrono::seconds(1));
      w.barrier()->wait();
    }
  } else {
    w.allreduce(x)->wait();  // seq 2: rank 1 never arrives
  }
  std::printf("UNREACHABLE: rank %d was not stopped by the watchdog\n", w.rank());
  return 0;
}

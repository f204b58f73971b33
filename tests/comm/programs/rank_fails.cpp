// Rank 1 fails while rank 0 waits in DeepComm. The job must end within seconds (CTest checks
// the elapsed time; FATHOM_COMM_TIMEOUT is 60 s, so the watchdog's timeout cannot be what
// ends it) with rank 0 naming rank 1 and quoting its error. Modes:
//   throw:  rank 1 throws out of main (std::terminate: comm's terminate handler tells the
//           peers) while rank 0 is in an allreduce;
//   abort:  rank 1 catches an error and calls comm::abort while rank 0 waits in a recv;
//   return: rank 1 returns 1 from main (atexit: comm::finalize's marked barrier) while rank 0
//           is in an allreduce: the agreement check says rank 1 is exiting;
//   return_recv: the same while rank 0 waits in a recv from rank 1 that rank 1 never sends:
//           finalize told rank 0 that rank 1 is exiting, and rank 0's watchdog finds that rank
//           1 has no send left for it;
//   return_group: the same while rank 0 is in a collective of a sub-group that rank 1 never
//           calls (rank 1 has destroyed the group).
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

#include "fathom/comm/comm.h"
#include "fathom/core/ops/factory.h"

using namespace fathom;

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "throw";
  auto& w = *comm::init().world;
  Tensor x = ones({16});
  w.allreduce(x)->wait();  // seq 1: everybody
  auto sub = w.split(0, w.rank(), "sub");
  if (w.rank() == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the others are waiting
    if (mode == "throw") throw std::runtime_error("bad label 11 in shard 1 (thrown)");
    if (mode == "abort") {
      try {
        throw Error("bad label 11 in shard 1 (caught)");
      } catch (const Error& e) {
        comm::abort(std::string("rank_fails: error: ") + e.what());
      }
    }
    std::fprintf(stderr, "rank 1: returning 1 from main\n");
    return 1;
  }
  if (mode == "abort" || mode == "return_recv")
    w.recv(x, 1)->wait();
  else if (mode == "return_group")
    sub->allreduce(x)->wait();
  else
    w.allreduce(x)->wait();
  std::printf("UNREACHABLE: rank %d was not stopped\n", w.rank());
  return 0;
}

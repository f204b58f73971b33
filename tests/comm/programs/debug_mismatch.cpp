// Debug mode (FATHOM_COMM_DEBUG=1): the ranks call allreduce with different shapes, then a
// send and a recv that disagree. Each must fail on every rank involved with a message naming
// the ranks and what each called, and the group must stay usable afterwards (no hang).
// Prints the errors on stderr and exits with 3 when everything behaved.
#include <cstdio>

#include "fathom/comm/comm.h"
#include "fathom/core/ops/factory.h"

using namespace fathom;

int main() {
  auto& w = *comm::init().world;
  int failures = 0;
  Tensor x = ones({4, 4 + w.rank()});  // rank r: [4, 4 + r]
  try {
    w.allreduce(x)->wait();
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d caught: %s\n", w.rank(), e.what());
    ++failures;
  }
  if (w.size() > 1 && w.rank() < 2) {
    try {
      if (w.rank() == 0) w.send(ones({3}), 1)->wait();
      if (w.rank() == 1) w.recv(zeros({5}, DType::i32), 0)->wait();
    } catch (const Error& e) {
      std::fprintf(stderr, "rank %d caught: %s\n", w.rank(), e.what());
      ++failures;
    }
  }
  Tensor y = ones({2});
  w.allreduce(y)->wait();  // still in step on every rank
  bool ok = to_vector(y)[0] == w.size() && failures == (w.rank() == 1 ? 2 : 1);
  std::fprintf(stderr, "rank %d: %s\n", w.rank(), ok ? "DEBUG-CHECKS-OK" : "DEBUG-CHECKS-WRONG");
  comm::finalize();
  return ok ? 3 : 1;
}

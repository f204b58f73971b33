// Two ranks disagree about a call, without FATHOM_COMM_DEBUG. Every mode must end with a clear
// message on both ranks (naming each rank's call), never a crash, a hang or a wrong result.
//   allreduce_dtype, allreduce_count, broadcast_root, broadcast_count: rank 1's call differs.
//     Each rank catches the error, checks that its tensor was not written, and checks that
//     the group still works; rank 0 then prints "ALL-RANKS-CAUGHT <n>" and both exit with 3.
//   sendrecv: rank 0 sends [3] f32, rank 1 receives [5] i32. Rank 1's recv fails; it calls
//     comm::abort with the error, and rank 0 (in a barrier) must stop quoting it.
#include <cstdio>
#include <string>

#include "fathom/comm/comm.h"
#include "fathom/core/ops/factory.h"

using namespace fathom;

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "allreduce_dtype";
  auto& w = *comm::init().world;
  int r = w.rank();
  if (mode == "sendrecv") {
    try {
      if (r == 0) w.send(ones({3}), 1)->wait();
      if (r == 1) w.recv(zeros({5}, DType::i32), 0)->wait();
      w.barrier()->wait();
    } catch (const Error& e) {
      comm::abort(std::string("rank ") + std::to_string(r) + " caught: " + e.what());
    }
    std::printf("UNREACHABLE: rank %d returned from a mismatched send/recv\n", r);
    return 0;
  }

  // Rank r's tensor holds r + 1, so a write by the failed call would show.
  bool differs = r == 1;
  Tensor x;
  if (mode == "allreduce_dtype") x = full({8}, double(r + 1), differs ? DType::bf16 : DType::f32);
  else if (mode == "allreduce_count" || mode == "broadcast_count") x = full({8 + (differs ? 1 : 0)}, double(r + 1));
  else x = full({8}, double(r + 1));
  bool caught = false;
  try {
    if (mode.rfind("allreduce", 0) == 0) w.allreduce(x)->wait();
    else w.broadcast(x, mode == "broadcast_root" && differs ? 1 : 0)->wait();
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d caught: %s\n", r, e.what());
    caught = true;
  }
  bool untouched = true;
  for (double v : to_vector(x)) untouched = untouched && v == double(r + 1);
  Tensor n = full({1}, caught && untouched ? 1.0 : 0.0);
  w.allreduce(n)->wait();  // the group still works
  if (r == 0) std::fprintf(stderr, "ALL-RANKS-CAUGHT %d\n", int(to_vector(n)[0]));
  comm::finalize();
  return to_vector(n)[0] == w.size() ? 3 : 1;
}

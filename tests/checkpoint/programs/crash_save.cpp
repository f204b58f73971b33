// A save that dies: tests/checkpoint/crash_save.sh runs this program, kills it during a save
// (FATHOM_CHECKPOINT_TEST_KILL, or kill -9 from the shell) and checks that what is left loads.
//
//   crash_save DIR init        save step 1 and wait for it
//   crash_save DIR save2       save step 2 and wait (the kill hook ends the process inside)
//   crash_save DIR loop        save steps 2, 3, ... asynchronously until killed
//   crash_save DIR check S     load_latest must give step S ("any": any step), bitwise equal
//                              to what was saved; no stale .tmp.* entry may survive
// Runs alone or under mpirun; each rank's state is about 16 MB (FATHOM_TEST_STATE_MB).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <fathom.h>

using namespace fathom;

namespace {

checkpoint::RankState state(int64_t step, int rank) {
  const char* mb = std::getenv("FATHOM_TEST_STATE_MB");
  const int64_t total = int64_t(mb ? std::atoi(mb) : 16) << 20;
  checkpoint::RankState s;
  for (int i = 0; i < 8; ++i) {
    Tensor t = empty({total / 4 / 8}, DType::f32);
    float* p = t.data<float>();
    for (int64_t k = 0; k < t.numel(); ++k) p[k] = float((k * 31 + step * 7 + i) % 1000) * 0.5f;
    s.replicated["layer" + std::to_string(i)] = t;
  }
  s.replicated["step"] = full({}, double(step), DType::i64);
  s.per_rank["rank"] = full({2}, double(rank * 1000 + step), DType::i64);
  return s;
}

bool same(const nn::StateDict& a, const nn::StateDict& b) {
  if (a.size() != b.size()) return false;
  for (auto& [name, t] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second.shape() != t.shape() || it->second.dtype() != t.dtype() ||
        std::memcmp(it->second.data_ptr(), t.data_ptr(), t.nbytes()) != 0)
      return false;
  }
  return true;
}

int run(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: crash_save DIR init|save2|loop|check STEP\n");
    return 2;
  }
  const std::string dir = argv[1], mode = argv[2];
  comm::ProcessGroup& world = *comm::init().world;
  const int rank = world.rank();
  checkpoint::Checkpointer ckpt(dir, world);
  if (mode == "init" || mode == "save2") {
    int64_t step = mode == "init" ? 1 : 2;
    ckpt.save(step, state(step, rank));
    ckpt.wait();
    if (rank == 0) std::printf("saved %lld\n", static_cast<long long>(step));
    return 0;
  }
  if (mode == "loop") {
    for (int64_t step = 2;; ++step) {
      ckpt.save(step, state(step, rank));
      if (rank == 0) {
        std::printf("saving %lld\n", static_cast<long long>(step));
        std::fflush(stdout);
      }
    }
  }
  if (mode == "check" && argc == 4) {
    auto l = ckpt.load_latest();
    if (!l) {
      std::fprintf(stderr, "crash_save: no checkpoint\n");
      return 1;
    }
    const std::string want = argv[3];
    bool ok = want == "any" || std::to_string(l->step) == want;
    checkpoint::RankState s = state(l->step, rank);
    ok = ok && same(l->replicated, s.replicated) && same(l->per_rank, s.per_rank);
    world.barrier()->wait();  // rank 0's constructor has removed the stale entries by now
    int stale = 0;
    for (auto& e : std::filesystem::directory_iterator(dir))
      stale += e.path().filename().string().rfind(".tmp.", 0) == 0;
    if (rank == 0)
      std::printf("loaded step %lld (%s), %d stale entries\n", static_cast<long long>(l->step),
                  ok ? "contents match" : "WRONG", stale);
    return ok && stale == 0 ? 0 : 1;
  }
  std::fprintf(stderr, "crash_save: unknown mode '%s'\n", mode.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "crash_save: error: %s\n", e.what());
    return 1;
  }
}

#pragma once
// How many threads Fathom's CPU kernels may use (docs/threads.md), like torch.set_num_threads.
//
//   fathom::set_num_threads(1);              // every CPU op on the calling thread alone
//   int n = fathom::get_num_threads();
//
// The default is read once, at the first CPU op or call here: FATHOM_NUM_THREADS, else
// OMP_NUM_THREADS (its first number), else the cores this process may run on
// (sched_getaffinity); under a launcher that starts several ranks on one node (mpirun, srun,
// torchrun-style), each rank takes its share of the node's cores, so ranks do not oversubscribe.
// A kernel uses fewer threads when its tensor is small, and none but the caller's when it is
// tiny. Results never depend on the thread count: the work is cut by shape alone.

namespace fathom {

// Threads CPU ops may use, the calling one included (>= 1).
int get_num_threads();

// Sets it for the whole process (an op already running keeps its threads); n < 1 is an Error.
void set_num_threads(int n);

// While one lives, CPU ops called from this thread run on this thread alone (a background
// thread that should not compete with the training thread for cores: the DataLoader's worker).
class SingleThreadGuard {
 public:
  SingleThreadGuard();
  ~SingleThreadGuard();
  SingleThreadGuard(const SingleThreadGuard&) = delete;
  SingleThreadGuard& operator=(const SingleThreadGuard&) = delete;

 private:
  bool before_;
};

}  // namespace fathom

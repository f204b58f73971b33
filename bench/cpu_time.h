#pragma once
// CPU time for benchmarks: spinning and the comm thread's work show here even when the wall
// clock cannot tell them from a busy machine.
#include <sys/resource.h>
#include <time.h>

namespace fathom::bench {

// CPU seconds of the whole process, every thread.
inline double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// CPU seconds of the calling thread alone.
inline double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

}  // namespace fathom::bench

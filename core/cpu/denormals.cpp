#include "fathom/core/cpu/denormals.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "fathom/core/denormals.h"
#include "fathom/core/error.h"

namespace fathom::cpu {

std::atomic<int> g_flush_denormal{-1};

int read_flush_denormal() {
  int v = 1;
#if !defined(__x86_64__)
  v = 0;
#endif
  if (const char* s = std::getenv("FATHOM_FLUSH_DENORMAL")) {
    FATHOM_CHECK(!std::strcmp(s, "0") || !std::strcmp(s, "1"),
                 "FATHOM_FLUSH_DENORMAL must be 0 or 1, got '", s, "'");
    v = s[0] - '0';
#if !defined(__x86_64__)
    FATHOM_CHECK(v == 0, "FATHOM_FLUSH_DENORMAL=1: this CPU has no flush-to-zero mode Fathom knows");
#endif
  }
  int expected = -1;
  g_flush_denormal.compare_exchange_strong(expected, v);
  return g_flush_denormal.load();
}

}  // namespace fathom::cpu

namespace fathom {

bool get_flush_denormal() { return cpu::flush_denormal_on(); }

void set_flush_denormal(bool on) {
#if !defined(__x86_64__)
  FATHOM_CHECK(!on, "set_flush_denormal(true): this CPU has no flush-to-zero mode Fathom knows");
#endif
  cpu::flush_denormal_on();  // an environment value that does not parse still says so
  cpu::g_flush_denormal.store(on ? 1 : 0);
}

}  // namespace fathom

// The Catch2 main of every test binary. CTest runs each binary's CPU cases ("~[cuda]") and,
// as a test of its own, its [cuda] cases with FATHOM_TEST_NEEDS_CUDA=1: without a CUDA device
// that run exits 77 before running anything, which CTest reports as Skipped
// (SKIP_RETURN_CODE), so a green CPU run says how much was not run.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>

#include "fathom/core/device.h"

int main(int argc, char** argv) {
  const char* needs = std::getenv("FATHOM_TEST_NEEDS_CUDA");
  if (needs && std::string(needs) == "1" && !fathom::cuda_available()) {
    std::printf("SKIPPED: no CUDA device in this build or on this machine\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}

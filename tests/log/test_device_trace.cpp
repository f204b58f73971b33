// trace::DeviceScope: GPU work timed by CUDA events, resolved onto the host spans' clock. On the
// CPU it records nothing (there is no device work) and a CUDA device without a CUDA build is an
// error; on a GPU ([cuda]) a span around a kernel of known size has a positive duration inside
// the host span that launched and synchronized it, and two streams get two rows.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/matmul.h"
#include "fathom/core/trace.h"
#include "testing.h"
#if FATHOM_WITH_CUDA
#include <cuda_runtime.h>

#include "fathom/core/cuda/runtime.h"
#endif

using namespace fathom;
using namespace fathom::testing;

TEST_CASE("trace::DeviceScope on the CPU records nothing and disturbs nothing", "[log]") {
  trace::start(64);
  {
    trace::Scope host("train", "forward");
    trace::DeviceScope dev("cuda", "forward", Device::cpu());
  }
  trace::stop();
  trace::Snapshot snap = trace::snapshot();
  REQUIRE(snap.spans.size() == 1);
  CHECK(std::string(snap.spans[0].name) == "forward");
  CHECK(std::string(snap.spans[0].track).empty());
  trace::clear();
}

TEST_CASE("trace::DeviceScope: off costs nothing, and a CUDA device needs a CUDA build", "[log]") {
  trace::stop();
  { trace::DeviceScope dev("cuda", "x", Device::cuda(0)); }  // off: not even the device is checked
#if !FATHOM_WITH_CUDA
  trace::start(8);
  CHECK_THROWS_WITH(trace::DeviceScope("cuda", "x", Device::cuda(0)),
                    Catch::Contains("trace::DeviceScope: cuda:0") &&
                        Catch::Contains("no CUDA backend"));
  trace::stop();
  trace::clear();
#endif
}

TEST_CASE("trace::DeviceScope times a kernel inside its host span, one row per stream", "[cuda]") {
  if (!has_cuda()) return;
#if FATHOM_WITH_CUDA
  const Device gpu = Device::cuda(0);
  Tensor a = ops::to(uniform({2048, 2048}, -1, 1), gpu), b = ops::to(uniform({2048, 2048}, -1, 1), gpu);
  (void)ops::matmul(a, b);  // warm: cuBLASLt's first call picks its algorithm
  cuda::synchronize(0);
  cudaStream_t side = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking) == cudaSuccess);
  trace::start(256);
  int64_t host_begin = 0, host_end = 0;
  {
    host_begin = trace::now_us();
    {
      trace::DeviceScope dev("cuda", "matmul", gpu);
      for (int i = 0; i < 4; ++i) (void)ops::matmul(a, b);  // 4 x 17 GFLOP
    }
    {
      trace::DeviceScope dev("cuda", "side", gpu, side, "cuda 0 side");
      REQUIRE(cudaMemsetAsync(b.data_ptr(), 0, 4096, side) == cudaSuccess);
    }
    cuda::synchronize(0);
    REQUIRE(cudaStreamSynchronize(side) == cudaSuccess);
    host_end = trace::now_us();
  }
  trace::Snapshot snap = trace::snapshot();
  trace::stop();
  std::set<std::string> rows;
  bool saw_matmul = false;
  for (const trace::Span& s : snap.spans) {
    if (std::string(s.category) != "cuda") continue;
    rows.insert(s.track);
    CHECK(std::string(s.args[0].key) == "device");
    CHECK(s.args[0].num == 0);
    if (std::string(s.name) == "matmul") {
      saw_matmul = true;
      CHECK(s.end_us > s.begin_us);  // 68 GFLOP take well over a microsecond on any GPU
      // Within the host span, allowing the reference's launch latency.
      CHECK(s.begin_us >= host_begin - 50);
      CHECK(s.end_us <= host_end + 50);
    }
  }
  CHECK(saw_matmul);
  CHECK(rows == std::set<std::string>{"cuda 0", "cuda 0 side"});
  trace::clear();
  cudaStreamDestroy(side);
#endif
}

// GPU benchmarks of the core CUDA backend, one JSON object per line on stdout (prose on
// stderr). Built only with the CUDA backend (bench/CMakeLists.txt takes *.cu then).
//  - bf16 GEMM through ops::matmul at n = 4096 and 8192: TFLOP/s = 2 n^3 / time.
//  - elementwise add (ops::binary_out) on 256M bf16 and 64M f32 elements, as bandwidth
//    (3 tensors' bytes / time) next to cudaMemcpy device-to-device of one tensor's bytes
//    (2 x bytes / time: read + write), the practical ceiling.
//  - fused AdamW (ops::adam_step, one multi-tensor launch) over GPT-2 small's 124M parameters
//    in f32, and in bf16 with f32 master weights, as bandwidth: the bytes it must move (f32
//    params: read+write param, m, v and read grad = 28 B/element; bf16 + master: write param
//    2 B, read+write master, m, v, read grad = 30 B/element) / time.
// Every result is checked first (wrong = elements off beyond tolerance, on a sample), warm-up
// runs are untimed, times are CUDA events on the compute stream, medians of 15 runs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "fathom/core/cuda/runtime.h"
#include "fathom/core/ops/optim.h"
#include <fathom.h>

using namespace fathom;

namespace {

constexpr int kWarmup = 3, kRuns = 15;

// Median time in ms of fn() over kRuns, timed by events on the device's compute stream.
double median_ms(const std::function<void()>& fn) {
  cudaStream_t s = cuda::current_stream(0);
  for (int i = 0; i < kWarmup; ++i) fn();
  cudaEvent_t a, b;
  FATHOM_CUDA_CHECK(cudaEventCreate(&a));
  FATHOM_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> ms;
  for (int i = 0; i < kRuns; ++i) {
    FATHOM_CUDA_CHECK(cudaEventRecord(a, s));
    fn();
    FATHOM_CUDA_CHECK(cudaEventRecord(b, s));
    FATHOM_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    FATHOM_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Elements of got (host doubles) off from want by more than atol + rtol * |want|.
int64_t count_wrong(const std::vector<double>& got, const std::vector<double>& want, double rtol,
                    double atol) {
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= atol + rtol * std::fabs(want[i]))) ++bad;
  return bad;
}

void bench_gemm(int64_t n) {
  Device gpu = Device::cuda(0);
  Generator g(1);
  Tensor a = randn({n, n}, {kBFloat16, gpu}, &g), b = randn({n, n}, {kBFloat16, gpu}, &g);
  // Check the first rows against the CPU (f32 GEMM of the same bf16 values).
  Tensor out = ops::matmul(a, b);
  int64_t rows = 4;
  Tensor a_rows = ops::to(ops::to(ops::narrow(a, 0, 0, rows), Device::cpu()), kFloat32);
  Tensor want = ops::matmul(a_rows, ops::to(ops::to(b, Device::cpu()), kFloat32));
  int64_t wrong = count_wrong(to_vector(ops::narrow(out, 0, 0, rows)), to_vector(want), 2e-2,
                              2e-2 * std::sqrt(double(n)));
  double ms = median_ms([&] { out = ops::matmul(a, b); });
  double tflops = 2.0 * double(n) * double(n) * double(n) / (ms * 1e-3) / 1e12;
  std::printf("{\"bench\":\"gemm\",\"dtype\":\"bf16\",\"m\":%lld,\"n\":%lld,\"k\":%lld,"
              "\"time_ms\":%.4f,\"tflops\":%.1f,\"wrong\":%lld}\n",
              (long long)n, (long long)n, (long long)n, ms, tflops, (long long)wrong);
  std::fflush(stdout);
}

void bench_add(DType dt, int64_t numel) {
  Device gpu = Device::cuda(0);
  Generator g(2);
  Tensor a = uniform({numel}, -1, 1, {dt, gpu}, &g), b = uniform({numel}, -1, 1, {dt, gpu}, &g);
  Tensor out = empty({numel}, {dt, gpu});
  ops::binary_out(BinaryOp::add, a, b, out);
  // Check a sample at the start and the end of the tensors.
  int64_t wrong = 0;
  int64_t sample = std::min<int64_t>(numel, 1 << 20);
  for (int64_t start : {int64_t(0), numel - sample}) {
    auto part = [&](const Tensor& t) { return ops::to(ops::narrow(t, 0, start, sample), Device::cpu()); };
    Tensor want = ops::binary(BinaryOp::add, part(a), part(b));
    double t = dt == kBFloat16 ? 1e-2 : 1e-6;
    wrong += count_wrong(to_vector(part(out)), to_vector(want), t, t);
  }
  double ms = median_ms([&] { ops::binary_out(BinaryOp::add, a, b, out); });
  size_t bytes = out.nbytes();
  double ms_copy = median_ms([&] {
    FATHOM_CUDA_CHECK(cudaMemcpyAsync(out.data_ptr(), a.data_ptr(), bytes, cudaMemcpyDeviceToDevice,
                                      cuda::current_stream(0)));
  });
  double gbs = 3.0 * double(bytes) / (ms * 1e-3) / 1e9;
  double copy_gbs = 2.0 * double(bytes) / (ms_copy * 1e-3) / 1e9;
  std::printf("{\"bench\":\"add\",\"dtype\":\"%s\",\"numel\":%lld,\"bytes_moved\":%zu,"
              "\"time_ms\":%.4f,\"gbs\":%.1f,\"memcpy_d2d_time_ms\":%.4f,\"memcpy_d2d_gbs\":%.1f,"
              "\"fraction_of_memcpy\":%.3f,\"wrong\":%lld}\n",
              dtype_name(dt), (long long)numel, 3 * bytes, ms, gbs, ms_copy, copy_gbs,
              gbs / copy_gbs, (long long)wrong);
  std::fflush(stdout);
}

// Device-to-device copy bandwidth (read + write) of a 1 GiB buffer: the practical ceiling.
double memcpy_gbs() {
  Device gpu = Device::cuda(0);
  Tensor a = zeros({int64_t(256) << 20}, {kFloat32, gpu}), b = zeros({int64_t(256) << 20}, {kFloat32, gpu});
  double ms = median_ms([&] {
    FATHOM_CUDA_CHECK(cudaMemcpyAsync(b.data_ptr(), a.data_ptr(), a.nbytes(), cudaMemcpyDeviceToDevice,
                                      cuda::current_stream(0)));
  });
  return 2.0 * double(a.nbytes()) / (ms * 1e-3) / 1e9;
}

void bench_adamw(DType param_dt, double ceiling_gbs) {
  Device gpu = Device::cuda(0);
  Generator g(3);
  // GPT-2 small's parameter tensors: 12 blocks, then the token and position embeddings.
  std::vector<int64_t> sizes;
  for (int l = 0; l < 12; ++l)
    for (int64_t s : {768 * 2304, 2304, 768 * 768, 768, 768 * 3072, 3072, 3072 * 768, 768, 768, 768, 768, 768})
      sizes.push_back(s);
  sizes.push_back(50304 * 768);
  sizes.push_back(1024 * 768);
  std::vector<ParamSlot> slots, cpu_slots;
  int64_t total = 0;
  for (int64_t n : sizes) {
    ParamSlot s;
    Tensor w = randn({n}, {kFloat32, gpu}, &g);
    s.param = param_dt == kFloat32 ? w : ops::to(w, param_dt);
    if (param_dt != kFloat32) s.master = w;
    s.grad = randn({n}, {kFloat32, gpu}, &g);
    s.exp_avg = zeros({n}, {kFloat32, gpu});
    s.exp_avg_sq = zeros({n}, {kFloat32, gpu});
    total += n;
    slots.push_back(s);
  }
  // Check: the parameters of a small and a large slot after one step equal the CPU's step.
  AdamHyper h;
  h.lr = 1e-3;
  h.weight_decay = 0.1;
  std::vector<size_t> checked = {1, sizes.size() - 2};
  auto on_cpu = [](const Tensor& t) { return t.defined() ? ops::clone(ops::to(t, Device::cpu())) : Tensor(); };
  for (size_t i : checked)
    cpu_slots.push_back({on_cpu(slots[i].param), on_cpu(slots[i].grad), on_cpu(slots[i].master),
                         on_cpu(slots[i].exp_avg), on_cpu(slots[i].exp_avg_sq)});
  ops::adam_step(slots, h);
  ops::adam_step(cpu_slots, h);
  int64_t wrong = 0;
  for (size_t k = 0; k < checked.size(); ++k)
    wrong += count_wrong(to_vector(slots[checked[k]].param), to_vector(cpu_slots[k].param),
                         param_dt == kFloat32 ? 1e-6 : 1e-2, 1e-6);
  double ms = median_ms([&] { ops::adam_step(slots, h); });
  double bytes = double(total) * (param_dt == kFloat32 ? 28.0 : 30.0);
  double gbs = bytes / (ms * 1e-3) / 1e9;
  std::printf("{\"bench\":\"adamw\",\"param_dtype\":\"%s\",\"params\":%lld,\"tensors\":%zu,"
              "\"bytes_moved\":%.0f,\"time_ms\":%.4f,\"gbs\":%.1f,\"memcpy_d2d_gbs\":%.1f,"
              "\"fraction_of_memcpy\":%.3f,\"wrong\":%lld}\n",
              dtype_name(param_dt), (long long)total, slots.size(), bytes, ms, gbs, ceiling_gbs,
              gbs / ceiling_gbs, (long long)wrong);
  std::fflush(stdout);
}

}  // namespace

int main() {
  try {
    if (!cuda_available()) {
      std::fprintf(stderr, "bench_gpu: no CUDA device visible; nothing to measure\n");
      return 0;
    }
    std::printf("{\"bench\":\"device\",\"name\":\"%s\",\"sms\":%d,\"devices\":%d}\n",
                cuda::device_name(0).c_str(), cuda::sm_count(0), cuda_device_count());
    std::fflush(stdout);
    bench_gemm(4096);
    bench_gemm(8192);
    bench_add(kBFloat16, int64_t(256) << 20);
    bench_add(kFloat32, int64_t(64) << 20);
    double ceiling = memcpy_gbs();
    bench_adamw(kFloat32, ceiling);
    bench_adamw(kBFloat16, ceiling);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu: %s\n", e.what());
    return 1;
  }
  return 0;
}

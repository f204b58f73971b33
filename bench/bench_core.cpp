// Core CPU throughput next to its roofline, measured in the same run on the same buffers:
//   gemm     ops::matmul vs a direct cblas_sgemm           GFLOP/s = 2 n^3 / t
//   add      ops::binary_out(add) vs memcpy                GB/s = 3 * n * 4 / t (2 reads, 1 write)
//   softmax  ops::softmax over [rows, 1024] vs memcpy      GB/s = 2 * n * 4 / t (1 read, 1 write)
// memcpy moves the same number of bytes (read + write counted) split over the same OpenMP
// threads as the kernels, so the ratio is against what the memory system can do here; add
// also reports a plain copy loop over the same bytes (see parallel_copy_loop).
// Every result is checked before it is timed; one warm-up run is untimed; the two sides of a
// comparison alternate run by run (the machine may be shared) and the median is reported.
// One JSON object per line on stdout; prose on stderr.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include <fathom.h>

using namespace fathom;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median seconds of each function, run alternately `reps` times after one untimed warm-up.
std::vector<double> race(const std::vector<std::function<void()>>& fs, int reps) {
  for (auto& f : fs) f();
  std::vector<std::vector<double>> t(fs.size());
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < fs.size(); ++i) {
      double t0 = now();
      fs[i]();
      t[i].push_back(now() - t0);
    }
  std::vector<double> out;
  for (auto& v : t) out.push_back(median(v));
  return out;
}

// memcpy split into one contiguous chunk per OpenMP thread, like the CPU kernels' parallel_for.
void parallel_memcpy(char* dst, const char* src, size_t n) {
#pragma omp parallel
  {
    size_t nt = size_t(omp_get_num_threads()), t = size_t(omp_get_thread_num());
    size_t chunk = (n + nt - 1) / nt, b = std::min(n, t * chunk), e = std::min(n, b + chunk);
    if (b < e) std::memcpy(dst + b, src + b, e - b);
  }
}

// The same copy as a plain loop (what the compiler makes of dst[i] = src[i], over the same
// threads): the streaming speed loop code reaches here. glibc's memcpy is faster than any such
// loop past its non-temporal threshold (cache-bypassing stores, page-interleaved reads), so
// this line separates "the kernel is slow" from "memcpy has a path arithmetic cannot use".
void parallel_copy_loop(float* dst, const float* src, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

[[noreturn]] void wrong(const char* bench, const std::string& what) {
  std::fprintf(stderr, "bench_core: %s gave a wrong result: %s\n", bench, what.c_str());
  std::exit(1);
}

void bench_gemm(int64_t n, int reps, Generator& g) {
  Tensor a = randn({n, n}, kFloat32, &g), b = randn({n, n}, kFloat32, &g);
  Tensor c = empty({n, n});
  const float* ap = a.data<float>();
  const float* bp = b.data<float>();
  float* cp = c.data<float>();
  auto direct = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), 1.0f, ap, int(n),
                bp, int(n), 0.0f, cp, int(n));
  };
  // Check: both against an f64 dot product at sampled entries, and against each other.
  Tensor out = ops::matmul(a, b);
  direct();
  const float* op = out.data<float>();
  for (int s = 0; s < 64; ++s) {
    int64_t i = (s * 7919) % n, j = (s * 104729 + 13) % n;
    double want = 0;
    for (int64_t k = 0; k < n; ++k) want += double(ap[i * n + k]) * double(bp[k * n + j]);
    double bound = 1e-5 * std::sqrt(double(n)) * 10 + 1e-4;
    if (std::fabs(op[i * n + j] - want) > bound || std::fabs(cp[i * n + j] - want) > bound)
      wrong("gemm", "entry (" + std::to_string(i) + ", " + std::to_string(j) + ")");
  }
  Tensor keep;
  auto t = race({[&] { keep = ops::matmul(a, b); }, direct}, reps);
  double flop = 2.0 * double(n) * double(n) * double(n);
  double f = flop / t[0] / 1e9, cb = flop / t[1] / 1e9;
  std::printf(
      "{\"bench\":\"gemm\",\"dtype\":\"f32\",\"n\":%lld,\"fathom_gflops\":%.2f,"
      "\"cblas_gflops\":%.2f,\"ratio\":%.3f,\"fathom_ms\":%.3f,\"cblas_ms\":%.3f}\n",
      (long long)n, f, cb, f / cb, t[0] * 1e3, t[1] * 1e3);
  std::fflush(stdout);
}

void bench_add(int64_t n, int reps, Generator& g) {
  Tensor a = randn({n}, kFloat32, &g), b = randn({n}, kFloat32, &g);
  Tensor out = empty({n});
  ops::binary_out(BinaryOp::add, a, b, out);
  const float* ap = a.data<float>();
  const float* bp = b.data<float>();
  const float* op = out.data<float>();
  for (int64_t i = 0; i < n; ++i)
    if (op[i] != ap[i] + bp[i]) wrong("add", "element " + std::to_string(i));
  // The same bytes as add moves: 3 n floats, as 1.5 n read and 1.5 n written.
  size_t half = size_t(n) * 4 * 3 / 2;
  std::vector<char> src(half, 1), dst(half, 0);
  float* fdst = reinterpret_cast<float*>(dst.data());
  const float* fsrc = reinterpret_cast<const float*>(src.data());
  auto t = race({[&] { ops::binary_out(BinaryOp::add, a, b, out); },
                 [&] { parallel_memcpy(dst.data(), src.data(), half); },
                 [&] { parallel_copy_loop(fdst, fsrc, int64_t(half / 4)); }},
                reps);
  // The allocating form, timed on its own: a fresh output this large is new pages from the
  // kernel, so this adds the page faults an allocator cache would avoid.
  Tensor fresh;
  auto ta = race({[&] {
                   fresh = ops::binary(BinaryOp::add, a, b);
                   fresh = Tensor();
                 }},
                 5);
  double bytes = 3.0 * double(n) * 4;
  double f = bytes / t[0] / 1e9, m = bytes / t[1] / 1e9, cl = bytes / t[2] / 1e9;
  double fa = bytes / ta[0] / 1e9;
  std::printf(
      "{\"bench\":\"add\",\"dtype\":\"f32\",\"n\":%lld,\"threads\":%d,\"fathom_gbs\":%.2f,"
      "\"memcpy_gbs\":%.2f,\"ratio\":%.3f,\"copy_loop_gbs\":%.2f,\"ratio_vs_copy_loop\":%.3f,"
      "\"fathom_alloc_gbs\":%.2f}\n",
      (long long)n, omp_get_max_threads(), f, m, f / m, cl, f / cl, fa);
  std::fflush(stdout);
}

void bench_softmax(int64_t rows, int64_t cols, int reps, Generator& g) {
  Tensor x = randn({rows, cols}, kFloat32, &g);
  Tensor y = ops::softmax(x);
  const float* xp = x.data<float>();
  const float* yp = y.data<float>();
  for (int64_t r = 0; r < rows; r += 97) {
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < cols; ++j) m = std::max(m, double(xp[r * cols + j]));
    for (int64_t j = 0; j < cols; ++j) s += std::exp(double(xp[r * cols + j]) - m);
    for (int64_t j = 0; j < cols; ++j) {
      double want = std::exp(double(xp[r * cols + j]) - m) / s;
      if (std::fabs(yp[r * cols + j] - want) > 1e-6 * want + 1e-9)
        wrong("softmax", "row " + std::to_string(r) + " col " + std::to_string(j));
    }
  }
  size_t n = size_t(rows * cols) * 4;
  std::vector<char> src(n, 1), dst(n, 0);
  Tensor keep;
  auto t = race(
      {[&] { keep = ops::softmax(x); }, [&] { parallel_memcpy(dst.data(), src.data(), n); }}, reps);
  double bytes = 2.0 * double(n);
  double f = bytes / t[0] / 1e9, m = bytes / t[1] / 1e9;
  std::printf(
      "{\"bench\":\"softmax\",\"dtype\":\"f32\",\"rows\":%lld,\"cols\":%lld,\"threads\":%d,"
      "\"fathom_gbs\":%.2f,\"memcpy_gbs\":%.2f,\"ratio\":%.3f}\n",
      (long long)rows, (long long)cols, omp_get_max_threads(), f, m, f / m);
  std::fflush(stdout);
}

}  // namespace

int main() {
  Generator g(2024);
  std::fprintf(stderr,
               "bench_core: %d OpenMP threads; results are checked, then timed "
               "(median, one untimed warm-up)\n",
               omp_get_max_threads());
  bench_gemm(256, 51, g);
  bench_gemm(1024, 15, g);
  bench_gemm(2048, 7, g);
  bench_add(int64_t(32) << 20, 15, g);
  bench_softmax(4096, 1024, 15, g);
  return 0;
}

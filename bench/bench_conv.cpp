// CPU convolution speed (oneDNN), forward and backward (data + weight), on ResNet-50's layer
// shapes at batch 16; one JSON line per layer and dtype, prose on stderr. The activation
// layout oneDNN is handed is FATHOM_CONV_LAYOUT's (any, the default: oneDNN picks; nchw; nhwc),
// read once per process, so compare layouts by running it once per value:
//
//   for l in nchw nhwc any; do FATHOM_CONV_LAYOUT=$l ./build/bench/bench_conv; done
//
// Each result is checked first: y's sum (equal across layouts up to rounding) is printed, and
// non-finite outputs are counted as wrong. Median of --reps after a warm-up call.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fathom.h>

using namespace fathom;

namespace {

struct Layer {
  const char* name;
  int64_t C, H, O, k, stride, pad;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_ms(F&& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  const char* layout = std::getenv("FATHOM_CONV_LAYOUT");
  std::string lay = layout && *layout ? layout : "any";
  const int64_t N = 16;
  const Layer layers[] = {
      {"conv1_7x7_s2", 3, 224, 64, 7, 2, 3},    {"layer1_3x3", 64, 56, 64, 3, 1, 1},
      {"layer1_1x1_in", 256, 56, 64, 1, 1, 0},  {"layer2_3x3", 128, 28, 128, 3, 1, 1},
      {"layer3_3x3", 256, 14, 256, 3, 1, 1},    {"layer4_3x3", 512, 7, 512, 3, 1, 1},
      {"layer4_1x1_out", 512, 7, 2048, 1, 1, 0},
  };
  std::fprintf(stderr, "bench_conv: layout %s, batch %lld, %d threads, median of %d\n",
               lay.c_str(), (long long)N, get_num_threads(), reps);
  Generator g(0);
  for (DType dt : {DType::f32, DType::bf16}) {
    for (const Layer& l : layers) {
      Tensor x = uniform({N, l.C, l.H, l.H}, -1, 1, {dt}, &g);
      Tensor w = uniform({l.O, l.C, l.k, l.k}, -0.1, 0.1, {dt}, &g);
      ConvParams p{{l.stride, l.stride}, {l.pad, l.pad}, {1, 1}, 1};
      Tensor y = ops::conv2d(x, w, Tensor(), p);  // warm-up: builds the primitives
      Tensor gy = ops::to(uniform(y.shape(), -1, 1, {DType::f32}, &g), dt);
      ops::conv2d_backward(gy, x, w, p, true, true, false);
      std::vector<double> fwd, bwd;
      for (int r = 0; r < reps; ++r) {
        fwd.push_back(time_ms([&] { y = ops::conv2d(x, w, Tensor(), p); }));
        bwd.push_back(time_ms([&] { ops::conv2d_backward(gy, x, w, p, true, true, false); }));
      }
      Tensor y64 = ops::to(y, DType::f64);
      double sum = ops::sum(y64).item<double>();
      int64_t wrong = std::isfinite(sum) ? 0 : 1;
      double flops = 2.0 * double(y.numel()) * double(l.C * l.k * l.k);
      double f = median(fwd), b = median(bwd);
      std::printf("{\"bench\":\"conv2d\",\"layer\":\"%s\",\"layout\":\"%s\",\"dtype\":\"%s\","
                  "\"batch\":%lld,\"threads\":%d,\"fwd_ms\":%.2f,\"bwd_ms\":%.2f,"
                  "\"fwd_gflops\":%.1f,\"bwd_gflops\":%.1f,\"y_sum\":%.6g,\"wrong\":%lld}\n",
                  l.name, lay.c_str(), dtype_name(dt), (long long)N, get_num_threads(), f, b,
                  flops / f / 1e6, 2 * flops / b / 1e6, sum, (long long)wrong);
      std::fflush(stdout);
    }
  }
  return 0;
}

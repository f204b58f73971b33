// The CUDA backend against the CPU reference: every kernel of core/backend_api.inc on random
// inputs of awkward shapes (empty, one element, odd sizes, non-contiguous, broadcast) in every
// float dtype, with dtype-aware tolerances; exact where both sides round the same way (copies,
// integer ops, comparisons, uniform draws). Each test skips itself, loudly, without a GPU.
#include <cstring>
#include <limits>

#include "fathom/core/backend.h"
#include "testing.h"
#if FATHOM_WITH_CUDA
#include "fathom/core/cuda/allocator.h"
#endif

using namespace fathom;
using namespace fathom::testing;

namespace {

const Device kGpu = Device::cuda(0);
const DType kFloats[] = {kFloat32, kFloat64, kBFloat16, kFloat16};

Tensor gpu(const Tensor& t) { return ops::to(t, kGpu); }
Tensor cpu(const Tensor& t) { return ops::to(t, Device::cpu()); }

// Random values of dtype dt on the CPU: normal for floats, small integers otherwise.
Tensor rand_of(const Shape& s, DType dt, Generator& g, double lo = -3, double hi = 3) {
  if (is_floating(dt)) return ops::to(uniform(s, lo, hi, kFloat64, &g), dt);
  if (dt == kBool) return ops::binary(BinaryOp::gt, uniform(s, 0, 1, kFloat64, &g), 0.5);
  Tensor u = uniform(s, dt == kUInt8 ? 0 : -20, 20, kFloat64, &g);
  return ops::to(u, dt);  // truncation toward zero: small integers
}

// Bytes of a tensor in row-major order, on the host.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  Tensor h = ops::contiguous(cpu(t));
  std::vector<unsigned char> b(h.nbytes());
  if (!b.empty()) std::memcpy(b.data(), h.data_ptr(), b.size());
  return b;
}

// GPU result vs CPU result with the tolerance of the output dtype (exact for integers):
// relative rscale * tol, absolute ascale * tol.
void expect_match(const Tensor& got_gpu, const Tensor& want_cpu, const std::string& what,
                  double rscale = 4, double ascale = 1) {
  REQUIRE(got_gpu.device() == kGpu);
  REQUIRE(got_gpu.dtype() == want_cpu.dtype());
  REQUIRE(got_gpu.shape() == want_cpu.shape());
  double t = tol(want_cpu.dtype());
  expect_close(got_gpu, want_cpu, t * rscale, t * ascale, what);
}

const std::vector<Shape> kShapes = {{}, {0}, {1}, {7}, {3, 5}, {2, 3, 33}, {4, 1, 9}, {70001}};

}  // namespace

TEST_CASE("cuda: host <-> device copies round-trip bit-exact, conversions match the CPU",
          "[cuda]") {
  if (!has_cuda()) return;
  Generator g(1);
  const DType all[] = {kFloat32, kFloat64, kBFloat16, kFloat16, kInt32, kInt64, kUInt8, kBool};
  for (DType dt : all)
    for (const Shape& s : kShapes) {
      INFO(dtype_name(dt) << " " << shape_str(s));
      Tensor x = rand_of(s, dt, g);
      Tensor d = gpu(x);
      CHECK(d.is_cuda());
      CHECK(bytes_of(d) == bytes_of(x));
      // Strided on either side of the boundary, and a strided copy on the device.
      CHECK(bytes_of(gpu(noncontiguous(x))) == bytes_of(x));
      CHECK(bytes_of(noncontiguous(d)) == bytes_of(x));
      for (DType to : all) {
        // Negative floats to u8 are undefined behaviour (x86's scalar and vector code differ).
        if (is_floating(dt) && to == kUInt8) continue;
        INFO("to " << dtype_name(to));
        CHECK(bytes_of(ops::to(noncontiguous(d), to)) == bytes_of(ops::to(x, to)));
      }
    }
  // A transposed device view copied back to the host.
  Tensor m = rand_of({5, 7}, kFloat32, g);
  CHECK(bytes_of(ops::transpose(gpu(m), 0, 1)) == bytes_of(ops::transpose(m, 0, 1)));
}

TEST_CASE("cuda: fill, where and broadcast copies match the CPU", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(2);
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16, kInt64, kInt32, kUInt8, kBool})
    for (double v : {0.0, -0.0, 1.5, 7.0, -7.0, 1e30}) {
      // Out-of-range conversions to integers are undefined behaviour: not part of the contract.
      if (!is_floating(dt) && dt != kBool && (v < 0 || v > 100)) continue;
      INFO(dtype_name(dt) << " " << v);
      CHECK(bytes_of(full({3, 37}, v, {dt, kGpu})) == bytes_of(full({3, 37}, v, dt)));
      Tensor d = zeros({4, 6}, {dt, kGpu});
      ops::fill_(ops::transpose(d, 0, 1), v);
      CHECK(bytes_of(d) == bytes_of(full({4, 6}, v, dt)));
    }
  for (DType dt : kFloats) {
    Tensor c = rand_of({4, 1, 9}, kBool, g), a = rand_of({1, 5, 9}, dt, g), b = rand_of({9}, dt, g);
    CHECK(bytes_of(ops::where(gpu(c), gpu(a), gpu(b))) == bytes_of(ops::where(c, a, b)));
    Tensor dst = zeros({2, 5, 9}, {dt, kGpu});
    ops::copy_(dst, gpu(b));  // broadcast source
    CHECK(bytes_of(dst) == bytes_of(ops::expand(b, {2, 5, 9})));
  }
}

TEST_CASE("cuda: unary ops and their backward match the CPU", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(3);
  for (DType dt : kFloats)
    for (const Shape& s : kShapes)
      for (int o = 0; o < kNumUnaryOps; ++o) {
        auto op = UnaryOp(o);
        bool positive = op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::rsqrt ||
                        op == UnaryOp::log1p;
        Tensor x = rand_of(s, dt, g, positive ? 0.1 : -3, 3);
        Tensor gy = rand_of(s, dt, g);
        INFO(op_name(op) << " " << x.desc());
        Tensor y = ops::unary(op, x);
        Tensor yd = ops::unary(op, noncontiguous(gpu(x)));
        expect_match(yd, y, op_name(op));
        Tensor gx = ops::unary_backward(op, gy, x, y);
        Tensor gxd = ops::unary_backward(op, noncontiguous(gpu(gy)), gpu(x), gpu(y));
        expect_match(gxd, gx, "backward");
      }
}

TEST_CASE("cuda: clamp and its backward match the CPU in every dtype", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(31);
  struct Bounds { std::optional<double> lo, hi; };
  const std::vector<Bounds> bounds = {{-0.5, 0.7}, {0.2, std::nullopt}, {std::nullopt, -1.0},
                                      {1.0, -1.0}};
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16, kInt32, kInt64, kUInt8})
    for (const Shape& s : kShapes)
      for (const Bounds& b : bounds) {
        Bounds bi = is_floating(dt) ? b : Bounds{b.lo ? std::optional<double>(std::round(*b.lo * 5)) : std::nullopt,
                                                 b.hi ? std::optional<double>(std::round(*b.hi * 5)) : std::nullopt};
        Tensor x = rand_of(s, dt, g);
        INFO("clamp " << x.desc());
        expect_match(ops::clamp(noncontiguous(gpu(x)), bi.lo, bi.hi), ops::clamp(x, bi.lo, bi.hi),
                     "clamp", 0, 0);
        if (!is_floating(dt)) continue;
        Tensor gy = rand_of(s, dt, g);
        expect_match(ops::clamp_backward(noncontiguous(gpu(gy)), gpu(x), b.lo, b.hi),
                     ops::clamp_backward(gy, x, b.lo, b.hi), "clamp_backward", 0, 0);
      }
  // NaN passes through; integer bounds past the dtype's range saturate instead of overflowing.
  Tensor n = from_vector(std::vector<double>{std::nan(""), 3, -3}, {3}, {kFloat32, kGpu});
  auto c = to_vector(ops::clamp(n, -1, 1));
  CHECK((std::isnan(c[0]) && c[1] == 1 && c[2] == -1));
  Tensor i = from_vector(std::vector<int64_t>{-5, 5, INT64_MAX}, {3}, {kInt64, kGpu});
  CHECK(to_vector(ops::clamp(i, -1e30, 2)) == std::vector<double>{-5, 2, 2});
}

TEST_CASE("cuda: index views, index_put_, copy_ and fill_ through strided views", "[cuda]") {
  if (!has_cuda()) return;
  using namespace fathom::indexing;
  Generator g(32);
  Tensor x = rand_of({4, 6, 5}, kFloat32, g);
  Tensor xd = gpu(x);
  std::vector<TensorIndex> idx = {Slice(1, None, 2), -1, Slice(None, None, 3), None};
  expect_match(xd.index(idx), x.index(idx), "index", 0, 0);
  xd.index_put_({Ellipsis, Slice(0, 2)}, 7.0);
  x.index_put_({Ellipsis, Slice(0, 2)}, 7.0);
  Tensor v = rand_of({5}, kFloat64, g);
  xd.index_put_({Slice(None, None, 2), 1}, gpu(v));  // broadcast + f64 -> f32 on the device
  x.index_put_({Slice(None, None, 2), 1}, v);
  expect_match(xd, x, "index_put_", 0, 0);
  xd.index({0}).zero_();
  x.index({0}).zero_();
  Tensor from_host = rand_of({6, 5}, kBFloat16, g);
  xd.index({1}).copy_(from_host);  // across devices and dtypes
  x.index({1}).copy_(from_host);
  expect_match(xd, x, "copy_ / zero_", 0, 0);
  expect_match(xd.to(kGpu, kBFloat16), x.to(kCPU, kBFloat16).to(kGpu), "to(device, dtype)", 0, 0);
  CHECK(x.to(kGpu, kFloat16).device() == kGpu);
  expect_match(xd.clone(), x, "clone", 0, 0);
}

TEST_CASE("cuda: binary ops with broadcasting, scalars and in place match the CPU", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(4);
  struct Pair { Shape a, b; };
  std::vector<Pair> pairs = {{{}, {}},         {{0}, {0}},          {{1}, {7}},
                             {{3, 1, 5}, {1, 4, 5}}, {{2, 3, 33}, {33}}, {{70001}, {70001}},
                             {{6, 1}, {1, 130}}, {{}, {2, 9}}};
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16, kInt32, kInt64, kUInt8})
    for (const Pair& p : pairs)
      for (int o = 0; o < kNumBinaryOps; ++o) {
        auto op = BinaryOp(o);
        if (op == BinaryOp::pow && !is_floating(dt)) continue;  // overflow is UB-land on both
        bool positive = op == BinaryOp::pow || op == BinaryOp::div;
        Tensor a = rand_of(p.a, dt, g, positive ? 0.5 : -3, 3);
        Tensor b = rand_of(p.b, dt, g, positive ? 0.5 : -3, 3);
        if (op == BinaryOp::div && !is_floating(dt)) b = ops::binary(BinaryOp::add, ops::unary(UnaryOp::abs, ops::to(b, kFloat32)), 1.0);
        INFO(op_name(op) << " " << a.desc() << " " << b.desc());
        Tensor want = ops::binary(op, a, b);
        expect_match(ops::binary(op, noncontiguous(gpu(a)), gpu(b)), want, op_name(op));
        for (double s : {2.0, -1.5}) {
          if (positive && s < 0) continue;
          expect_match(ops::binary(op, gpu(a), s), ops::binary(op, a, s), "tensor op scalar");
          expect_match(ops::binary(op, s, gpu(b)), ops::binary(op, s, b), "scalar op tensor");
        }
      }
  // In place: out aliases a, b broadcast.
  for (DType dt : kFloats) {
    Tensor a = rand_of({4, 37}, dt, g), b = rand_of({37}, dt, g);
    Tensor ad = gpu(a);
    ops::add_(ad, gpu(b));
    ops::add_(a, b);
    expect_match(ad, a, "add_");
    ops::mul_(ad, 0.5);
    ops::mul_(a, 0.5);
    expect_match(ad, a, "mul_");
  }
  // NaN propagates through maximum/minimum in either position.
  Tensor n = from_vector(std::vector<double>{std::nan(""), 1, 2}, {3}, {kFloat32, kGpu});
  Tensor o = from_vector(std::vector<double>{0, std::nan(""), 5}, {3}, {kFloat32, kGpu});
  auto mx = to_vector(ops::binary(BinaryOp::maximum, n, o));
  CHECK((std::isnan(mx[0]) && std::isnan(mx[1]) && mx[2] == 5));
}

TEST_CASE("cuda: reductions and argmax match the CPU", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(5);
  struct Case { Shape s; Shape dims; };
  std::vector<Case> cases = {{{7}, {}},          {{1000003}, {}},        {{3, 4097}, {1}},
                             {{64, 7, 33}, {1}},   {{64, 7, 33}, {0, 2}},  {{2, 100000, 3}, {1}},
                             {{5, 3}, {0}},        {{300, 2}, {0}},        {{4, 0, 3}, {0}},
                             {{33, 65}, {0, 1}},   {{8, 9, 10}, {2}}};
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16, kInt32, kInt64, kUInt8, kBool})
    for (const Case& c : cases) {
      Tensor x = rand_of(c.s, dt, g);
      for (bool strided : {false, true}) {
        Tensor xd = strided ? noncontiguous(gpu(x)) : gpu(x);
        INFO(x.desc() << " dims " << shape_str(c.dims) << " strided " << strided);
        // Long sums add in another order: near-cancelling sums need an absolute tolerance
        // that grows with the length (values are up to 3).
        double len = 3 * std::sqrt(double(std::max<int64_t>(1, x.numel())));
        expect_match(ops::sum(xd, c.dims), ops::sum(x, c.dims), "sum", 4, len);
        if (is_floating(dt)) expect_match(ops::mean(xd, c.dims), ops::mean(x, c.dims), "mean");
        if (x.numel() > 0) {
          CHECK(bytes_of(ops::amax(xd, c.dims)) == bytes_of(ops::amax(x, c.dims)));
          CHECK(bytes_of(ops::amin(xd, c.dims, true)) == bytes_of(ops::amin(x, c.dims, true)));
        }
        if (c.dims.size() == 1 && x.numel() > 0)
          CHECK(bytes_of(ops::argmax(xd, c.dims[0])) == bytes_of(ops::argmax(x, c.dims[0])));
      }
    }
  // NaN wins in max and argmax; ties go to the first index.
  Tensor t = from_vector(std::vector<double>{1, 3, 3, std::nan(""), 2, 3}, {2, 3}, kFloat32);
  CHECK(bytes_of(ops::argmax(gpu(t), 1)) == bytes_of(ops::argmax(t, 1)));
  CHECK(bytes_of(ops::argmax(gpu(t), 0)) == bytes_of(ops::argmax(t, 0)));
  CHECK(std::isnan(ops::amax(gpu(t)).item<double>()));
  // The fused sum of squares (gradient norms) over mixed dtypes, strided included.
  std::vector<Tensor> xs, xds;
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16}) {
    xs.push_back(rand_of({1000003}, dt, g));
    xds.push_back(noncontiguous(gpu(xs.back())));
  }
  CHECK(ops::sum_squares(xds) == Approx(ops::sum_squares(xs)).epsilon(1e-6));
}

TEST_CASE("cuda: matmul matches the CPU: transposes, batches, broadcast, dtypes", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(6);
  struct Case { int64_t ba, bb, m, k, n; };
  std::vector<Case> cases = {{1, 1, 1, 1, 1},  {1, 1, 3, 5, 7},  {1, 1, 64, 33, 17},
                             {4, 4, 5, 6, 7},  {3, 1, 8, 9, 10}, {1, 3, 8, 9, 10},
                             {1, 1, 0, 3, 4},  {1, 1, 3, 0, 4},  {2, 2, 129, 65, 31},
                             {2, 2, 256, 128, 64}};
  for (DType dt : kFloats)
    for (const auto& c : cases)
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
          Tensor a = rand_of({c.ba, c.m, c.k}, dt, g, -1, 1);
          Tensor b = rand_of({c.bb, c.k, c.n}, dt, g, -1, 1);
          auto layout = [&](const Tensor& x, int t) {
            return t ? ops::transpose(ops::contiguous(ops::transpose(x, 1, 2)), 1, 2) : x;
          };
          INFO(dtype_name(dt) << " B" << c.ba << "x" << c.bb << " " << c.m << "x" << c.k << "x"
                              << c.n << " ta " << ta << " tb " << tb);
          Tensor want = ops::matmul(layout(a, ta), layout(b, tb));
          Tensor got = ops::matmul(layout(gpu(a), ta), layout(gpu(b), tb));
          double t = dt == kFloat64 ? 1e-10 : dt == kFloat32 ? 1e-4 : dt == kFloat16 ? 1e-2 : 6e-2;
          expect_close(got, want, t, t * std::sqrt(double(c.k) + 1), "matmul");
        }
  // [B, T, C] @ [C, N] (folded into one GEMM) and a 4-d broadcast batch.
  Tensor x = rand_of({2, 5, 3}, kFloat32, g), w = rand_of({3, 4}, kFloat32, g);
  expect_close(ops::matmul(gpu(x), gpu(w)), ops::matmul(x, w), 1e-5, 1e-5, "folded");
  Tensor p = rand_of({2, 3, 4, 5}, kBFloat16, g), q = rand_of({3, 5, 6}, kBFloat16, g);
  expect_close(ops::matmul(gpu(p), gpu(q)), ops::matmul(p, q), 6e-2, 1e-1, "4-d");
}

TEST_CASE("cuda: softmax and log_softmax, forward and backward, match the CPU", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(7);
  for (DType dt : kFloats)
    for (Shape s : std::vector<Shape>{{1, 1}, {3, 7}, {130, 33}, {5, 1000}, {2, 50257}, {0, 5},
                                      {4, 2, 9}})
      for (bool log : {false, true}) {
        INFO(dtype_name(dt) << " " << shape_str(s) << " log " << log);
        Tensor x = rand_of(s, dt, g, -8, 8), gy = rand_of(s, dt, g);
        Tensor y = log ? ops::log_softmax(x) : ops::softmax(x);
        Tensor yd = log ? ops::log_softmax(gpu(x)) : ops::softmax(gpu(x));
        expect_match(yd, y, "forward");
        Tensor gx = log ? ops::log_softmax_backward(gy, y) : ops::softmax_backward(gy, y);
        Tensor gxd = log ? ops::log_softmax_backward(gpu(gy), gpu(y))
                         : ops::softmax_backward(gpu(gy), gpu(y));
        expect_match(gxd, gx, "backward", 8);
      }
  // A row of -inf but one: exact 0 and 1.
  Tensor m = from_vector(std::vector<double>{-INFINITY, 2, -INFINITY}, {1, 3}, {kFloat32, kGpu});
  CHECK(to_vector(ops::softmax(m)) == std::vector<double>{0, 1, 0});
}

TEST_CASE("cuda: layer_norm forward and backward match the CPU", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(8);
  for (DType dt : kFloats)
    for (Shape s : std::vector<Shape>{{1, 1}, {4, 7}, {33, 768}, {5, 3000}, {2, 3, 5}, {300, 64}})
      for (int affine = 0; affine < 4; ++affine) {
        INFO(dtype_name(dt) << " " << shape_str(s) << " affine " << affine);
        int64_t C = s.back();
        Tensor x = rand_of(s, dt, g, -2, 5), gy = rand_of(s, dt, g);
        Tensor w = affine & 1 ? rand_of({C}, dt, g) : Tensor();
        Tensor b = affine & 2 ? rand_of({C}, dt, g) : Tensor();
        auto [y, mu, rs] = ops::layer_norm(x, w, b, 1e-5);
        auto od = [](const Tensor& t) { return t.defined() ? gpu(t) : t; };
        auto [yd, mud, rsd] = ops::layer_norm(gpu(x), od(w), od(b), 1e-5);
        expect_match(yd, y, "y", 8);
        expect_match(mud, mu, "mean");
        expect_match(rsd, rs, "rstd");
        auto [gx, gw, gb] = ops::layer_norm_backward(gy, x, w, mu, rs, b.defined());
        auto [gxd, gwd, gbd] = ops::layer_norm_backward(gpu(gy), gpu(x), od(w), mud, rsd,
                                                        b.defined());
        // With C = 1 every xhat is 0 and grad_x is 0 up to rounding scaled by rstd = 1/sqrt(eps)
        // (about 316): both devices are right within that, in different summation orders.
        expect_match(gxd, gx, "grad_x", 16, C == 1 ? 1e3 : 1);
        double rows = double(x.numel() / C);
        if (gw.defined()) expect_match(gwd, gw, "grad_w", 8, 4 * std::sqrt(rows));
        if (gb.defined()) expect_match(gbd, gb, "grad_b", 8, 4 * std::sqrt(rows));
      }
}

TEST_CASE("cuda: cross_entropy forward and backward match the CPU", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(9);
  for (DType dt : kFloats)
    for (auto [N, C] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 10}, {64, 1000}, {3, 50257}}) {
      INFO(dtype_name(dt) << " N " << N << " C " << C);
      Tensor logits = rand_of({N, C}, dt, g, -10, 10);
      std::vector<int64_t> t(static_cast<size_t>(N));
      for (int64_t i = 0; i < N; ++i) t[size_t(i)] = (i * 7919) % C;
      if (N > 2) t[1] = -100;  // ignored
      Tensor targets = from_vector(t, {N});
      Tensor loss = ops::cross_entropy(logits, targets);
      Tensor lossd = ops::cross_entropy(gpu(logits), gpu(targets));
      expect_match(lossd, loss, "loss", 8);
      Tensor gl = full({}, 1.7, loss.dtype());
      expect_match(ops::cross_entropy_backward(gpu(gl), gpu(logits), gpu(targets)),
                   ops::cross_entropy_backward(gl, logits, targets), "grad", 8);
    }
}

TEST_CASE("cuda: index_select and index_add (embedding) match the CPU", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(10);
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16, kInt64, kInt32, kUInt8})
    for (Shape s : std::vector<Shape>{{50, 768}, {7, 3}, {5}, {3, 11, 5}, {2, 9, 1}}) {
      int64_t dim = s.size() == 3 ? 1 : 0;
      int64_t V = s[size_t(dim)];
      INFO(dtype_name(dt) << " " << shape_str(s) << " dim " << dim);
      Tensor x = rand_of(s, dt, g);
      // Repeats (as in a batch of tokens) and a non-trivial index shape.
      std::vector<int64_t> ids;
      for (int64_t i = 0; i < 24; ++i) ids.push_back((i * i * 31 + 3) % V);
      Tensor index = from_vector(ids, {4, 6});
      Tensor want = ops::index_select(x, dim, index);
      CHECK(bytes_of(ops::index_select(gpu(x), dim, gpu(index))) == bytes_of(want));
      Shape src_shape = want.shape();
      Tensor src = rand_of(src_shape, dt, g);
      Tensor acc = rand_of(s, dt, g), accd = gpu(acc);
      ops::index_add_(acc, dim, index, src);
      ops::index_add_(accd, dim, gpu(index), gpu(src));
      // f32, f64 and integers add in the CPU's order; halves round once instead of per add.
      if (is_half(dt)) expect_match(accd, acc, "index_add", 8);
      else CHECK(bytes_of(accd) == bytes_of(acc));
    }
  // Embedding backward with many repeats of one id.
  Tensor gy = rand_of({1000, 16}, kFloat32, g);
  Tensor ids = zeros({1000}, kInt64);
  expect_close(ops::embedding_backward(gpu(gy), gpu(ids), 3),
               ops::embedding_backward(gy, ids, 3), 1e-5, 1e-5, "embedding_backward");
}

TEST_CASE("cuda: random draws equal the CPU's for the same generator state", "[cuda]") {
  if (!has_cuda()) return;
  for (DType dt : kFloats)
    for (int64_t n : {1, 3, 4, 5, 1023, 100003}) {
      INFO(dtype_name(dt) << " n " << n);
      Generator gc(42, 3), gd(42, 3);
      gc.reserve(5);  // an odd offset
      gd.reserve(5);
      // Uniform draws round identically on both devices.
      CHECK(bytes_of(uniform({n}, -2, 3, {dt, kGpu}, &gd)) == bytes_of(uniform({n}, -2, 3, dt, &gc)));
      CHECK(gc.state().offset == gd.state().offset);
      // Normal draws go through logf/sinf/cosf: equal up to the last bits of f32.
      Tensor zc = normal({n}, 0.5, 2, dt, &gc), zd = normal({n}, 0.5, 2, {dt, kGpu}, &gd);
      double t = dt == kFloat64 || dt == kFloat32 ? 1e-5 : tol(dt);
      expect_close(zd, zc, t, t, "normal");
    }
}

TEST_CASE("cuda: fused optimizer steps match the CPU", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(11);
  for (DType pt : kFloats)
    for (bool master : {false, true}) {
      if (master && !is_half(pt)) continue;
      INFO(dtype_name(pt) << " master " << master);
      std::vector<ParamSlot> sc, sd;
      for (Shape s : std::vector<Shape>{{3}, {70000}, {33, 17}, {0}}) {
        ParamSlot c;
        c.param = rand_of(s, pt, g);
        c.grad = rand_of(s, pt, g);
        if (master) c.master = ops::to(c.param, kFloat32);
        c.exp_avg = rand_of(s, kFloat32, g, 0, 1);
        c.exp_avg_sq = rand_of(s, kFloat32, g, 0, 1);
        ParamSlot d;
        std::initializer_list<std::pair<Tensor*, Tensor*>> fields = {
            {&c.param, &d.param}, {&c.grad, &d.grad}, {&c.master, &d.master},
            {&c.exp_avg, &d.exp_avg}, {&c.exp_avg_sq, &d.exp_avg_sq}};
        for (auto [src, dst] : fields) *dst = src->defined() ? ops::clone(gpu(*src)) : Tensor();
        sc.push_back(c);
        sd.push_back(d);
      }
      AdamHyper h;
      h.lr = 1e-2;
      h.weight_decay = 0.1;
      h.step = 3;
      ops::adam_step(sc, h);
      ops::adam_step(sd, h);
      SgdHyper sh;
      sh.momentum = 0.9;
      sh.first_step = false;
      ops::sgd_step(sc, sh);
      ops::sgd_step(sd, sh);
      // The moments are f32 on both devices, and nvcc may fuse their multiply-adds: an f64
      // parameter agrees to f32's precision, not f64's.
      double t = pt == kFloat64 ? 1e-6 : 8 * tol(pt);
      for (size_t i = 0; i < sc.size(); ++i) {
        expect_close(sd[i].param, sc[i].param, t, t, "param");
        expect_match(sd[i].exp_avg, sc[i].exp_avg, "exp_avg", 8);
        expect_match(sd[i].exp_avg_sq, sc[i].exp_avg_sq, "exp_avg_sq", 8);
        if (master) expect_match(sd[i].master, sc[i].master, "master", 8);
      }
    }
}

TEST_CASE("cuda: 2:4 compression matches the CPU bit for bit", "[cuda]") {
  if (!has_cuda()) return;
  Generator g(12);
  for (DType pd : {kFloat32, kBFloat16})
    for (uint64_t step : {0, 1, 5, 12345}) {
      Tensor grad = rand_of({4 * 1001}, kFloat32, g), res = rand_of({4 * 1001}, kFloat32, g);
      Tensor resd = gpu(res), pay = empty({2 * 1001}, pd), payd = empty({2 * 1001}, {pd, kGpu});
      ops::sparse24_compress(grad, res, pay, step);
      ops::sparse24_compress(gpu(grad), resd, payd, step);
      CHECK(bytes_of(payd) == bytes_of(pay));
      CHECK(bytes_of(resd) == bytes_of(res));
      Tensor out = empty({4 * 1001}, kFloat32), outd = empty({4 * 1001}, {kFloat32, kGpu});
      ops::sparse24_decompress(pay, out, step);
      ops::sparse24_decompress(payd, outd, step);
      CHECK(bytes_of(outd) == bytes_of(out));
    }
}

TEST_CASE("cuda: the caching allocator does no cudaMalloc in steady state", "[cuda]") {
  if (!has_cuda()) return;
#if FATHOM_WITH_CUDA
  Generator g(13);
  Tensor w = randn({256, 512}, {kBFloat16, kGpu}, &g);
  auto step = [&] {
    // A small training-like step: activations of several sizes, a matmul, a reduction.
    Tensor x = randn({64, 256}, {kBFloat16, kGpu}, &g);
    Tensor h = ops::unary(UnaryOp::gelu, ops::matmul(x, w));
    Tensor s = ops::softmax(h);
    Tensor loss = ops::mean(ops::to(s, kFloat32));
    Tensor big = zeros({3 << 20}, {kFloat32, kGpu});
    (void)loss.item<float>();
  };
  for (int i = 0; i < 3; ++i) step();
  cuda::AllocatorStats before = cuda::allocator_stats(0);
  for (int i = 0; i < 10; ++i) step();
  cuda::AllocatorStats after = cuda::allocator_stats(0);
  CHECK(after.num_cuda_mallocs == before.num_cuda_mallocs);
  CHECK(after.num_allocs > before.num_allocs);
  CHECK(after.allocated_bytes == before.allocated_bytes);
  // Trimming gives the cached blocks back; the next step allocates again.
  cuda::empty_cache(0);
  CHECK(cuda::allocator_stats(0).cached_bytes == 0);
  step();
  CHECK(cuda::allocator_stats(0).num_cuda_mallocs > after.num_cuda_mallocs);
#endif
}

TEST_CASE("cuda: errors name the op instead of crashing", "[cuda]") {
  if (!has_cuda()) return;
  CHECK_THROWS_WITH(empty({int64_t(1) << 50}, {kFloat32, kGpu}),
                    Catch::Contains("out of memory") && Catch::Contains("bytes"));
  CHECK_THROWS_WITH(empty({4}, {kFloat32, Device::cuda(cuda_device_count())}),
                    Catch::Contains("does not exist"));
  // The device still works after a failed allocation.
  CHECK(ops::sum(ones({10}, {kFloat32, kGpu})).item<float>() == 10);
}

TEST_CASE("cuda: iteration spaces past 2^31 elements are split, not truncated", "[cuda]") {
  if (!has_cuda()) return;
  // 2^31 + 2 bytes read through a transposed view: the strided kernel in 32-bit pieces.
  int64_t n = (int64_t(1) << 30) + 1;
  Tensor src = ones({2, n}, {kUInt8, kGpu});
  Tensor dst = zeros({n, 2}, {kUInt8, kGpu});
  ops::copy_(ops::transpose(dst, 0, 1), src);
  CHECK(ops::sum(dst).item<int64_t>() == 2 * n);
}

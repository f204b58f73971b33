// The CPU thread pool: every parallel kernel gives bitwise the same result on 1 and on N
// threads (N forced past the machine's cores, so the pieces and who runs them both change), the
// pool itself covers each index once and passes exceptions on, and the thread count comes from
// the environment as core/threads.h says.
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "fathom/core/cpu/loops.h"
#include "fathom/core/cpu/threads.h"
#include "fathom/core/ops/compress.h"
#include "fathom/core/ops/optim.h"
#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

template <class F>
auto with_threads(int n, F f) {
  int before = get_num_threads();
  set_num_threads(n);
  struct Restore {
    int n;
    ~Restore() { set_num_threads(n); }
  } restore{before};
  return f();
}

bool same_bits(const Tensor& a, const Tensor& b) {
  Tensor ca = a.contiguous(), cb = b.contiguous();
  return ca.shape() == cb.shape() && ca.dtype() == cb.dtype() &&
         std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0;
}

// make() builds its inputs from fixed seeds and returns its outputs; on 2, 3 and 4 threads they
// must equal the 1-thread run bit for bit.
void check_thread_invariant(const std::string& what, const std::function<std::vector<Tensor>()>& make) {
  std::vector<Tensor> one = with_threads(1, make);
  for (int n : {2, 3, 4}) {
    std::vector<Tensor> many = with_threads(n, make);
    REQUIRE(many.size() == one.size());
    for (size_t i = 0; i < one.size(); ++i) {
      INFO(what << ": output " << i << " on " << n << " threads");
      CHECK(same_bits(one[i], many[i]));
    }
  }
}

Tensor rnd(const Shape& s, uint64_t seed, DType dt = kFloat32) {
  Generator g(seed);
  return normal(s, 0.0, 1.0, kFloat32, &g).to(dt);
}

}  // namespace

TEST_CASE("threads: elementwise, copies and random fills are the same on any thread count", "[core][threads]") {
  for (DType dt : {kFloat32, kBFloat16}) {
    INFO(dtype_name(dt));
    check_thread_invariant("unary", [&] {
      Tensor x = rnd({1031, 1037}, 1, dt), xs = noncontiguous(x);
      std::vector<Tensor> out;
      for (int op = 0; op < kNumUnaryOps; ++op) {
        Tensor y = ops::unary(UnaryOp(op), x);
        out.push_back(y);
        out.push_back(ops::unary(UnaryOp(op), xs));
        out.push_back(ops::unary_backward(UnaryOp(op), x, x, y));
      }
      out.push_back(ops::clamp(x, -0.5, 0.5));
      out.push_back(ops::clamp_backward(x, x, -0.5, 0.5));
      return out;
    });
    check_thread_invariant("binary", [&] {
      Tensor a = rnd({1031, 1037}, 2, dt), b = rnd({1031, 1037}, 3, dt), row = rnd({1037}, 4, dt);
      std::vector<Tensor> out;
      for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div,
                          BinaryOp::maximum, BinaryOp::pow, BinaryOp::lt}) {
        out.push_back(ops::binary(op, a, b));
        out.push_back(ops::binary(op, a, row));             // broadcast
        out.push_back(ops::binary(op, a.t(), b.t()));       // strided
        Tensor o = empty(a.shape(), is_comparison(op) ? kBool : dt);
        ops::binary_out(op, a, 0.75, o);                      // scalar
        out.push_back(o);
      }
      Tensor acc = a.clone();
      ops::add_(acc, b, 0.5);
      ops::mul_(acc, 1.5);
      out.push_back(acc);
      Tensor cond = ops::binary(BinaryOp::gt, a, b);
      out.push_back(ops::where(cond, a, b));
      out.push_back(ops::masked_fill(a, cond, -1.0));
      return out;
    });
  }
  check_thread_invariant("copies, fills, random", [] {
    Tensor x = rnd({1031, 1037}, 5);
    Tensor f = empty({1031, 1037});
    ops::fill_(f, 0.25);
    Generator g(7);
    return std::vector<Tensor>{ops::contiguous(x.t()), x.to(kBFloat16), x.to(kFloat16).to(kFloat32),
                               x.to(kFloat64), f, randn({1 << 20}, kFloat32, &g),
                               rand({1 << 20}, kFloat32, &g), uniform({1 << 20}, -2, 3, kFloat32, &g)};
  });
}

TEST_CASE("threads: reductions and normalising kernels are the same on any thread count", "[core][threads]") {
  check_thread_invariant("reduce", [] {
    Tensor x = rnd({3000017}, 11), m = rnd({1000, 1237}, 12);
    std::vector<Tensor> out{ops::sum(x), ops::mean(x), ops::amax(x), ops::amin(x),
                            ops::sum(m, {0}), ops::sum(m, {1}), ops::amax(m, {0}),
                            ops::mean(m.t(), {1}), ops::sum_to(m, {1, 1237}),
                            from_vector(std::vector<double>{ops::sum_squares({x, m})}, {1})};
    return out;
  });
  for (DType dt : {kFloat32, kBFloat16}) {
    INFO(dtype_name(dt));
    check_thread_invariant("softmax", [&] {
      Tensor x = rnd({2048, 517}, 13, dt), gy = rnd({2048, 517}, 14, dt);
      Tensor y = ops::softmax(x), ly = ops::log_softmax(x);
      return std::vector<Tensor>{y, ly, ops::softmax_backward(gy, y), ops::log_softmax_backward(gy, ly)};
    });
    check_thread_invariant("layer_norm", [&] {
      Tensor x = rnd({2048, 384}, 15, dt), gy = rnd({2048, 384}, 16, dt);
      Tensor w = rnd({384}, 17, dt), b = rnd({384}, 18, dt);
      auto [y, mean, rstd] = ops::layer_norm(x, w, b, 1e-5);
      auto [gx, gw, gb] = ops::layer_norm_backward(gy, x, w, mean, rstd, true);
      return std::vector<Tensor>{y, mean, rstd, gx, gw, gb};
    });
    check_thread_invariant("cross_entropy", [&] {
      Tensor logits = rnd({8192, 37}, 19, dt);
      Generator g(20);
      Tensor t = ops::to(ops::binary(BinaryOp::mul, rand({8192}, kFloat64, &g), 36.999), kInt64);
      Tensor loss = ops::cross_entropy(logits, t);
      return std::vector<Tensor>{loss, ops::cross_entropy_backward(ones({}), logits, t)};
    });
  }
}

TEST_CASE("threads: gathers, scatters, optimizer steps and 2:4 compression are the same on any thread count",
          "[core][threads]") {
  check_thread_invariant("index", [] {
    Tensor w = rnd({5000, 96}, 21), x = rnd({64, 700, 33}, 22);
    Generator g(23);
    Tensor ids = ops::to(ops::binary(BinaryOp::mul, rand({4096}, kFloat64, &g), 4999.0), kInt64);
    Tensor ix = ops::to(ops::binary(BinaryOp::mul, rand({900}, kFloat64, &g), 699.0), kInt64);
    Tensor gy = rnd({4096, 96}, 24);
    Tensor acc = x.clone();
    ops::index_add_(acc, 1, ix, rnd({64, 900, 33}, 25));
    return std::vector<Tensor>{ops::embedding(w, ids), ops::embedding_backward(gy, ids, 5000),
                               ops::index_select(x, 1, ix), acc};
  });
  check_thread_invariant("adamw, sgd", [] {
    ParamSlot a{rnd({1 << 20}, 31), rnd({1 << 20}, 32), Tensor(), zeros({1 << 20}), zeros({1 << 20})};
    ParamSlot h{rnd({1 << 20}, 33, kBFloat16), rnd({1 << 20}, 34, kBFloat16), rnd({1 << 20}, 33),
                zeros({1 << 20}), zeros({1 << 20})};
    AdamHyper ah;
    ah.weight_decay = 0.01;
    for (int64_t s = 1; s <= 3; ++s) {
      ah.step = s;
      ops::adam_step({a, h}, ah);
    }
    ParamSlot m{rnd({1 << 20}, 35), rnd({1 << 20}, 36), Tensor(), zeros({1 << 20}), Tensor()};
    SgdHyper sh;
    sh.momentum = 0.9;
    ops::sgd_step({m}, sh);
    sh.first_step = false;
    ops::sgd_step({m}, sh);
    return std::vector<Tensor>{a.param, a.exp_avg, a.exp_avg_sq, h.param, h.master, m.param, m.exp_avg};
  });
  check_thread_invariant("sparse24", [] {
    Tensor g = rnd({1 << 20}, 41), r = rnd({1 << 20}, 42);
    Tensor p32 = empty({1 << 19}), p16 = empty({1 << 19}, kBFloat16), back = empty({1 << 20});
    Tensor r16 = r.clone();
    ops::sparse24_compress(g, r, p32, 5);
    ops::sparse24_compress(g, r16, p16, 6);
    ops::sparse24_decompress(p32, back, 5);
    return std::vector<Tensor>{r, p32, r16, p16, back};
  });
}

TEST_CASE("threads: matmul is the same on any thread count, in every layout and dtype", "[core][threads]") {
  for (DType dt : {kFloat32, kFloat64, kBFloat16}) {
    INFO(dtype_name(dt));
    check_thread_invariant("matmul", [&] {
      Tensor a = rnd({300, 261}, 51, dt), b = rnd({261, 530}, 52, dt);
      Tensor at = rnd({261, 300}, 53, dt).t(), bt = rnd({530, 261}, 54, dt).t();
      Tensor ba = rnd({3, 129, 260}, 55, dt), bb = rnd({3, 260, 531}, 56, dt);
      // The Fashion-MNIST MLP's three products: forward, grad of input, grad of weight.
      Tensor x = rnd({128, 784}, 57, dt), w = rnd({512, 784}, 58, dt), gy = rnd({128, 512}, 59, dt);
      return std::vector<Tensor>{ops::matmul(a, b), ops::matmul(at, b), ops::matmul(a, bt),
                                 ops::matmul(at, bt), ops::matmul(ba, bb), ops::matmul(x, w.t()),
                                 ops::matmul(gy, w), ops::matmul(gy.t(), x)};
    });
  }
}

TEST_CASE("threads: matmul tiles agree with a plain f64 product", "[core][threads]") {
  // Shapes around the tile edges (256, multiples of 16) on 4 threads.
  for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{{257, 70, 513}, {1, 300, 1000}, {600, 3, 17}}) {
    Tensor a = rnd({m, k}, 61, kFloat64), b = rnd({k, n}, 62, kFloat64);
    Tensor c = with_threads(4, [&] { return ops::matmul(a, b); });
    auto va = to_vector(a), vb = to_vector(b);
    std::vector<double> want(size_t(m * n));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += va[size_t(i * k + p)] * vb[size_t(p * n + j)];
        want[size_t(i * n + j)] = s;
      }
    expect_close(c, want, 1e-12, 1e-12, "matmul " + std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n));
  }
}

TEST_CASE("threads: parallel_for covers every index once, small ranges stay on the caller", "[core][threads]") {
  with_threads(4, [] {
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(100), int64_t(100003)}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int64_t> ranges{0};
      cpu::parallel_for(n, 10, [&](int64_t b, int64_t e) {
        ranges.fetch_add(1);
        CHECK((e - b >= 10 || e == n));
        for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
      });
      int bad = 0;
      for (auto& h : hits) bad += h.load() != 1;
      INFO("n = " << n);
      CHECK(bad == 0);
      if (n > 0 && n <= 10) CHECK(ranges.load() == 1);
    }
    // A body that does no work here runs once, on the calling thread.
    std::thread::id caller = std::this_thread::get_id(), ran;
    cpu::parallel_for(5, 10, [&](int64_t, int64_t) { ran = std::this_thread::get_id(); });
    CHECK(ran == caller);
    return 0;
  });
}

TEST_CASE("threads: slow pieces spread over the pool; nested and concurrent regions are correct",
          "[core][threads]") {
  with_threads(4, [] {
    std::mutex mu;
    std::set<std::thread::id> ids;
    // Pieces that sleep: the workers surely wake before the caller has done them all.
    cpu::parallel_for(16, 1, [&](int64_t b, int64_t e) {
      std::this_thread::sleep_for(std::chrono::milliseconds(3 * (e - b)));
      std::lock_guard<std::mutex> lk(mu);
      ids.insert(std::this_thread::get_id());
    });
    CHECK(ids.size() > 1);
    CHECK(ids.size() <= 4);
    // A region inside a region runs inline, and still covers its range.
    std::atomic<int64_t> total{0};
    cpu::parallel_for(8, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        cpu::parallel_for(1000, 10, [&](int64_t b2, int64_t e2) { total.fetch_add(e2 - b2); });
    });
    CHECK(total.load() == 8000);
    // Two threads issuing ops at once: one gets the pool, the other runs inline; both right.
    Tensor a = rnd({512, 300}, 71), b = rnd({300, 300}, 72);
    Tensor want = with_threads(1, [&] { return ops::matmul(a, b); });
    std::atomic<int> wrong{0};
    auto worker = [&] {
      for (int r = 0; r < 10; ++r) wrong += !same_bits(ops::matmul(a, b), want);
    };
    std::thread t1(worker), t2(worker);
    t1.join();
    t2.join();
    CHECK(wrong.load() == 0);
    return 0;
  });
}

TEST_CASE("threads: an exception in a piece reaches the caller, and the pool keeps working", "[core][threads]") {
  with_threads(3, [] {
    for (int round = 0; round < 3; ++round) {
      CHECK_THROWS_WITH(cpu::parallel_for(64, 1, [&](int64_t b, int64_t) {
                          std::this_thread::sleep_for(std::chrono::microseconds(200));
                          if (b >= 32) throw Error("piece " + std::to_string(b) + " failed");
                        }),
                        Catch::Contains("failed"));
      std::atomic<int64_t> sum{0};
      cpu::parallel_for(1000, 1, [&](int64_t b, int64_t e) { sum += e - b; });
      CHECK(sum.load() == 1000);
    }
    return 0;
  });
}

TEST_CASE("threads: set_num_threads, SingleThreadGuard and their errors", "[core][threads]") {
  int before = get_num_threads();
  CHECK(before >= 1);
  with_threads(3, [] {
    CHECK(get_num_threads() == 3);
    CHECK(cpu::threads_here() == 3);
    {
      SingleThreadGuard g;
      CHECK(cpu::threads_here() == 1);
      CHECK(get_num_threads() == 3);  // the guard is this thread's, not the process's
    }
    CHECK(cpu::threads_here() == 3);
    return 0;
  });
  CHECK(get_num_threads() == before);
  CHECK_THROWS_WITH(set_num_threads(0), Catch::Contains("set_num_threads: 0 threads"));
  CHECK(get_num_threads() == before);
}

TEST_CASE("threads: the default count comes from the environment and the affinity mask", "[core][threads]") {
  auto count = [](std::map<std::string, std::string> vars, int affinity = 8, int online = 16) {
    return cpu::default_num_threads(
        [&](const char* v) { auto it = vars.find(v); return it == vars.end() ? nullptr : it->second.c_str(); },
        affinity, online);
  };
  CHECK(count({}) == 8);
  CHECK(count({}, 0) == 1);
  CHECK(count({{"OMP_NUM_THREADS", "3"}}) == 3);
  CHECK(count({{"OMP_NUM_THREADS", "4,2"}}) == 4);
  CHECK(count({{"OMP_NUM_THREADS", "3"}, {"FATHOM_NUM_THREADS", "5"}}) == 5);
  CHECK(count({{"OMP_NUM_THREADS", ""}}) == 8);
  // Local ranks share the node; an explicit count still wins.
  CHECK(count({{"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}) == 8);
  CHECK(count({{"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}}) == 4);
  CHECK(count({{"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}}, 1) == 1);  // bound to one core by mpirun
  CHECK(count({{"MPI_LOCALNRANKS", "3"}}, 16, 16) == 5);
  CHECK(count({{"LOCAL_WORLD_SIZE", "32"}}, 16, 16) == 1);
  CHECK(count({{"LOCAL_WORLD_SIZE", "2"}, {"FATHOM_NUM_THREADS", "6"}}, 16, 16) == 6);
  CHECK(count({{"OMPI_COMM_WORLD_LOCAL_SIZE", "1"}, {"LOCAL_WORLD_SIZE", "4"}}, 16, 16) == 16);
  for (const char* bad : {"0", "-2", "two", "3x", "2,", "99999999999"}) {
    INFO(bad);
    CHECK_THROWS_WITH(count({{"FATHOM_NUM_THREADS", bad}}),
                      Catch::Contains(std::string("FATHOM_NUM_THREADS='") + bad + "'") &&
                          Catch::Contains("positive thread count"));
  }
  CHECK_THROWS_WITH(count({{"OMP_NUM_THREADS", "x"}}), Catch::Contains("OMP_NUM_THREADS='x'"));
}

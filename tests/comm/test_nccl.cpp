// DeepComm over NCCL: the CPU tests' checks on CUDA tensors, plus what only the NCCL path has
// (the comm stream, Work::wait ordering the compute stream, ncclCommSplit). Several ranks can
// share one GPU for these (NCCL_HOSTID per rank, see docs/comm.md); without a GPU every case
// reports SKIPPED.
#include "comm_testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

// The device comm::init chose for this rank, or nothing without CUDA (every rank agrees: the
// machine decides, not the rank).
bool nccl_device(Device& dev) {
  if (!has_cuda()) return false;
  dev = comm::init().device;
  REQUIRE(dev.is_cuda());
  return true;
}

Tensor cuda_rank_tensor(int64_t n, int rank, DType t, Device dev) {
  return ops::to(rank_tensor(n, rank, t), dev);
}

}  // namespace

TEST_CASE("nccl: allreduce, every dtype, op and size", "[comm][cuda]") {
  Device dev;
  if (!nccl_device(dev)) return;
  auto& w = world();
  for (DType t : all_dtypes()) {
    for (comm::ReduceOp op : kOps) {
      if (op == comm::ReduceOp::avg && !is_floating(t)) continue;
      for (int64_t n : test_sizes()) {
        Tensor x = cuda_rank_tensor(n, w.rank(), t, dev);
        void* before = x.data_ptr();
        w.allreduce(x, op)->wait();
        CHECK(x.data_ptr() == before);  // in place
        CHECK(x.is_cuda());
        std::vector<double> want(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) want[size_t(i)] = reduced(i, w.size(), t, op);
        expect_equal(x, want, label(comm::reduce_name(op), t, n));
      }
    }
  }
}

TEST_CASE("nccl: broadcast, allgather and reduce_scatter, every dtype and size", "[comm][cuda]") {
  Device dev;
  if (!nccl_device(dev)) return;
  auto& w = world();
  for (DType t : all_dtypes()) {
    for (int64_t n : test_sizes()) {
      int root = w.size() - 1;
      Tensor b = cuda_rank_tensor(n, w.rank(), t, dev);
      w.broadcast(b, root)->wait();
      std::vector<double> want_b(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) want_b[size_t(i)] = value(i, root, t);
      expect_equal(b, want_b, label("broadcast", t, n));

      Tensor in = cuda_rank_tensor(n, w.rank(), t, dev);
      Tensor out = zeros({w.size() * n}, {t, dev});
      w.allgather(out, in)->wait();
      std::vector<double> want_g;
      for (int r = 0; r < w.size(); ++r)
        for (int64_t i = 0; i < n; ++i) want_g.push_back(value(i, r, t));
      expect_equal(out, want_g, label("allgather", t, n));

      Tensor rs_in = cuda_rank_tensor(n * w.size(), w.rank(), t, dev);
      Tensor rs_out = zeros({n}, {t, dev});
      w.reduce_scatter(rs_out, rs_in)->wait();
      std::vector<double> want_rs(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        want_rs[size_t(i)] = reduced(w.rank() * n + i, w.size(), t, comm::ReduceOp::sum);
      expect_equal(rs_out, want_rs, label("reduce_scatter", t, n));
    }
  }
}

TEST_CASE("nccl: send and recv around a ring", "[comm][cuda]") {
  Device dev;
  if (!nccl_device(dev)) return;
  auto& w = world();
  if (w.size() < 2 || w.size() % 2) return;  // the even/odd order below needs an even ring
  int next = (w.rank() + 1) % w.size(), prev = (w.rank() + w.size() - 1) % w.size();
  for (DType t : {DType::f32, DType::bf16, DType::i64}) {
    for (int64_t n : test_sizes()) {
      Tensor out = cuda_rank_tensor(n, w.rank(), t, dev);
      Tensor in = zeros({n}, {t, dev});
      // NCCL p2p runs in stream order and a send waits for its recv: even ranks send first,
      // odd ranks receive first, or every rank would wait in its send.
      comm::WorkPtr a, b;
      if (w.rank() % 2 == 0) {
        a = w.send(out, next, 0);
        b = w.recv(in, prev, 0);
      } else {
        b = w.recv(in, prev, 0);
        a = w.send(out, next, 0);
      }
      comm::wait_all({a, b});
      std::vector<double> want(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) want[size_t(i)] = value(i, prev, t);
      expect_equal(in, want, label("recv", t, n));
    }
  }
}

TEST_CASE("nccl: wait() orders the compute stream after the collective", "[comm][cuda]") {
  Device dev;
  if (!nccl_device(dev)) return;
  auto& w = world();
  // Large enough that the collective is still running when the host gets past wait(): the
  // multiply below must still see the reduced values.
  const int64_t n = int64_t(16) << 20;
  for (int rep = 0; rep < 3; ++rep) {
    Tensor x = full({n}, double(w.rank() + 1), {DType::f32, dev});
    auto work = w.allreduce(x);
    work->wait();                // returns at once: only the compute stream waits
    Tensor y = x * 2.0;          // queued on the compute stream, after the collective
    double sum = w.size() * (w.size() + 1) / 2.0;
    auto v = to_vector(ops::narrow(y, 0, n - 4, 4));
    CHECK(v == std::vector<double>(4, 2 * sum));
    for (int i = 0; i < 1000 && !work->is_completed(); ++i) {}
    CHECK(work->is_completed());  // to_vector synchronized the compute stream
  }
}

TEST_CASE("nccl: many calls in flight complete in issue order", "[comm][cuda]") {
  Device dev;
  if (!nccl_device(dev)) return;
  auto& w = world();
  std::vector<Tensor> xs;
  std::vector<comm::WorkPtr> works;
  for (int i = 0; i < 64; ++i) {
    xs.push_back(full({1000 + i}, double(i + w.rank()), {DType::f32, dev}));
    works.push_back(w.allreduce(xs.back()));
  }
  Tensor twice = ones({10}, {DType::f32, dev});  // the second call sees the first's result
  auto t1 = w.allreduce(twice);
  auto t2 = w.allreduce(twice);
  for (auto it = works.rbegin(); it != works.rend(); ++it) (*it)->wait();
  t2->wait();
  double ranks = 0;
  for (int r = 0; r < w.size(); ++r) ranks += r;
  for (int i = 0; i < 64; ++i) {
    auto v = to_vector(xs[size_t(i)]);
    CHECK(v == std::vector<double>(v.size(), i * w.size() + ranks));
  }
  CHECK(to_vector(twice) == std::vector<double>(10, double(w.size() * w.size())));
  CHECK(w.stats()[comm::OpKind::allreduce].calls >= 66);
}

TEST_CASE("nccl: split sub-groups, before and after the parent used NCCL", "[comm][cuda]") {
  Device dev;
  if (!nccl_device(dev)) return;
  auto& w = world();
  for (bool parent_first : {false, true}) {
    INFO("parent used NCCL first: " << parent_first);
    auto parent = w.split(0, w.rank(), parent_first ? "nccl_parent_a" : "nccl_parent_b");
    if (parent_first) parent->allreduce(ones({3}, {DType::f32, dev}))->wait();  // ncclCommSplit
    int color = w.rank() % 2;
    auto g = parent->split(color, w.rank());
    REQUIRE(g);
    Tensor x = full({5}, double(w.rank()), {DType::f32, dev});
    g->allreduce(x)->wait();
    double want = 0;
    for (int r = color; r < w.size(); r += 2) want += r;
    CHECK(to_vector(x) == std::vector<double>(5, want));
    // The parent still works after its child's calls.
    Tensor y = ones({4}, {DType::f32, dev});
    parent->allreduce(y)->wait();
    CHECK(to_vector(y) == std::vector<double>(4, double(w.size())));
  }
}

TEST_CASE("nccl: a CPU input with a CUDA output is an error naming both", "[comm][cuda]") {
  Device dev;
  if (!nccl_device(dev)) return;
  auto& w = world();
  Tensor in = ones({4});
  Tensor out = zeros({4 * w.size()}, {DType::f32, dev});
  CHECK_THROWS_WITH(w.allgather(out, in), Catch::Contains("differ in dtype or device"));
}

// Always on, as on the CPU path: the host step's agreement check fails every rank's CUDA
// collective when one rank's differs, before anything reaches NCCL, so no tensor is written
// and the communicator stays in step.
TEST_CASE("nccl: collectives that differ between ranks fail on every rank, writing nothing", "[comm][cuda]") {
  Device dev;
  if (!nccl_device(dev)) return;
  auto& w = world();
  if (w.size() < 2) return;
  bool odd = w.rank() == 1;
  auto expect_fail = [&](auto&& call, const Tensor& t, const std::string& rank1_says) {
    std::vector<double> before = to_vector(t);
    try {
      call();
      FAIL("the mismatched call returned on rank " << w.rank());
    } catch (const Error& e) {
      CHECK_THAT(std::string(e.what()), Catch::Contains("the ranks called different collectives"));
      CHECK_THAT(std::string(e.what()), Catch::Contains("rank 1: " + rank1_says));
    }
    CHECK(to_vector(t) == before);
  };
  Tensor a = full({6 + (odd ? 1 : 0)}, double(w.rank() + 1), {DType::f32, dev});
  expect_fail([&] { w.allreduce(a)->wait(); }, a, "allreduce(sum) [7] f32 cuda");
  Tensor b = full({6}, double(w.rank() + 1), {odd ? DType::bf16 : DType::f32, dev});
  expect_fail([&] { w.allreduce(b)->wait(); }, b, "allreduce(sum) [6] bf16 cuda");
  Tensor c = full({6}, double(w.rank() + 1), {DType::f32, dev});
  expect_fail([&] { w.broadcast(c, odd ? 1 : 0)->wait(); }, c, "broadcast(root 1) [6] f32 cuda");
  // A CUDA allreduce on one rank, a CPU one on the other: both checked through the same queue.
  Tensor d = full({6}, double(w.rank() + 1), {DType::f32, odd ? Device::cpu() : dev});
  expect_fail([&] { w.allreduce(d)->wait(); }, d, "allreduce(sum) [6] f32 cpu");
  Tensor ok = ones({3}, {DType::f32, dev});
  w.allreduce(ok)->wait();
  CHECK(to_vector(ok) == std::vector<double>(3, double(w.size())));
}

// NCCL send/recv carry the same header as the CPU path: a recv that does not match its send
// fails naming both calls and leaves its tensor alone; the sender still completes (its message
// goes into scratch device memory), so the pair stays usable.
TEST_CASE("nccl: a send and recv that differ fail on the receiver, writing nothing", "[comm][cuda]") {
  Device dev;
  if (!nccl_device(dev)) return;
  auto& w = world();
  if (w.size() < 2 || w.size() % 2) return;
  int peer = w.rank() ^ 1;
  bool sender = w.rank() % 2 == 0;
  for (bool same_count : {false, true}) {
    INFO("same count: " << same_count);
    if (sender) {
      w.send(full({3}, 7.0, {DType::f32, dev}), peer)->wait();
    } else {
      Tensor r = full({same_count ? int64_t(3) : int64_t(5)}, -1.0,
                      {same_count ? DType::i32 : DType::f32, dev});
      try {
        w.recv(r, peer)->wait();
        FAIL("the mismatched recv returned");
      } catch (const Error& e) {
        CHECK_THAT(std::string(e.what()), Catch::Contains("send/recv mismatch"));
        CHECK_THAT(std::string(e.what()), Catch::Contains("[3] f32 cuda"));
      }
      CHECK(to_vector(r) == std::vector<double>(size_t(r.numel()), -1.0));
    }
  }
  // A matching pair still works afterwards.
  Tensor x = full({4}, double(w.rank()), {DType::f32, dev});
  if (sender)
    w.send(x, peer)->wait();
  else
    w.recv(x, peer)->wait();
  CHECK(to_vector(x) == std::vector<double>(4, double(sender ? w.rank() : peer)));
  w.barrier()->wait();
}

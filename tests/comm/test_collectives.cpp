// Every collective, every dtype, sizes 0, 1, odd and several MB, checked exactly against the
// values every rank can compute for itself.
#include "comm_testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

// The several-MB size is slow to fill and check with 4 ranks on 2 cores: there, every dtype
// gets sum, and bf16 (MPI reduces it with DeepComm's own op, in segments) every op.
bool skip_big(int64_t n, DType t, comm::ReduceOp op) {
  return n > 1000 && op != comm::ReduceOp::sum && t != DType::bf16;
}

}  // namespace

TEST_CASE("allreduce: every dtype, op and size", "[comm]") {
  auto& w = world();
  for (DType t : all_dtypes()) {
    for (comm::ReduceOp op : kOps) {
      if (op == comm::ReduceOp::avg && !is_floating(t)) continue;
      for (int64_t n : test_sizes()) {
        if (skip_big(n, t, op)) continue;
        Tensor x = rank_tensor(n, w.rank(), t);
        void* before = x.data_ptr();
        w.allreduce(x, op)->wait();
        CHECK(x.data_ptr() == before);  // in place
        std::vector<double> want(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) want[size_t(i)] = reduced(i, w.size(), t, op);
        // avg of small integers over 1, 2 or 4 ranks is a multiple of 1/4: exact everywhere.
        expect_equal(x, want, label(comm::reduce_name(op), t, n));
      }
    }
  }
}

TEST_CASE("allreduce: shaped tensors and views that are contiguous", "[comm]") {
  auto& w = world();
  Tensor base = full({6, 5}, 1.0);
  Tensor rows = ops::narrow(base, 0, 2, 3);  // contiguous rows 2..4, offset into the storage
  REQUIRE(rows.is_contiguous());
  w.allreduce(rows)->wait();
  auto v = to_vector(base);
  for (int i = 0; i < 30; ++i) CHECK(v[size_t(i)] == ((i >= 10 && i < 25) ? w.size() : 1.0));
}

TEST_CASE("broadcast: every dtype and size, from every root", "[comm]") {
  auto& w = world();
  for (DType t : all_dtypes()) {
    for (int64_t n : test_sizes()) {
      for (int root = 0; root < w.size(); ++root) {
        if (n > 1000 && root != w.size() - 1) continue;  // big: one root is enough
        Tensor x = rank_tensor(n, w.rank(), t);
        w.broadcast(x, root)->wait();
        std::vector<double> want(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) want[size_t(i)] = value(i, root, t);
        expect_equal(x, want, label("broadcast", t, n) + " root " + std::to_string(root));
      }
    }
  }
}

TEST_CASE("allgather: every dtype and size", "[comm]") {
  auto& w = world();
  for (DType t : all_dtypes()) {
    for (int64_t n : test_sizes()) {
      Tensor in = rank_tensor(n, w.rank(), t);
      Tensor out = zeros({w.size() * n}, t);
      w.allgather(out, in)->wait();
      std::vector<double> want;
      for (int r = 0; r < w.size(); ++r)
        for (int64_t i = 0; i < n; ++i) want.push_back(value(i, r, t));
      expect_equal(out, want, label("allgather", t, n));
    }
  }
  // Shapes only need the right element count: [size, 2, 3] gathers [2, 3].
  Tensor in = full({2, 3}, double(w.rank()));
  Tensor out = zeros({w.size(), 2, 3});
  w.allgather(out, in)->wait();
  auto v = to_vector(out);
  for (size_t i = 0; i < v.size(); ++i) CHECK(v[i] == double(i / 6));
}

// In place, as the distributed optimizer gathers its parameter buffers: each rank's input is its
// own block of the output; any other overlap is refused before anything is sent.
TEST_CASE("allgather in place: the input is this rank's block of the output", "[comm]") {
  auto& w = world();
  for (DType t : {DType::f32, DType::bf16, DType::i64}) {
    for (int64_t n : {int64_t(1), int64_t(5), int64_t(3000)}) {
      Tensor out = zeros({w.size() * n}, t);
      Tensor mine = ops::narrow(out, 0, w.rank() * n, n);
      ops::copy_(mine, rank_tensor(n, w.rank(), t));
      w.allgather(out, mine)->wait();
      std::vector<double> want;
      for (int r = 0; r < w.size(); ++r)
        for (int64_t i = 0; i < n; ++i) want.push_back(value(i, r, t));
      expect_equal(out, want, label("allgather in place", t, n));
    }
  }
  if (w.size() < 2) return;
  Tensor out = zeros({4 * w.size()});
  Tensor wrong = ops::narrow(out, 0, ((w.rank() + 1) % w.size()) * 4, 4);  // another rank's block
  CHECK_THROWS_WITH(w.allgather(out, wrong), Catch::Contains("overlaps the output") &&
                                                 Catch::Contains("not this rank's block"));
}

TEST_CASE("reduce_scatter: every dtype, op and size", "[comm]") {
  auto& w = world();
  for (DType t : all_dtypes()) {
    for (comm::ReduceOp op : kOps) {
      if (op == comm::ReduceOp::avg && !is_floating(t)) continue;
      for (int64_t n : test_sizes()) {
        if (skip_big(n, t, op)) continue;
        // Input element j: value(j, rank); this rank gets block [rank * n, (rank + 1) * n).
        Tensor in = rank_tensor(n * w.size(), w.rank(), t);
        Tensor out = zeros({n}, t);
        w.reduce_scatter(out, in, op)->wait();
        std::vector<double> want(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) want[size_t(i)] = reduced(w.rank() * n + i, w.size(), t, op);
        expect_equal(out, want, label("reduce_scatter", t, n) + " " + comm::reduce_name(op));
      }
    }
  }
}

TEST_CASE("send and recv around a ring, every dtype and size", "[comm]") {
  auto& w = world();
  if (w.size() < 2) return;
  int next = (w.rank() + 1) % w.size(), prev = (w.rank() + w.size() - 1) % w.size();
  for (DType t : all_dtypes()) {
    for (int64_t n : test_sizes()) {
      Tensor out = rank_tensor(n, w.rank(), t);
      Tensor in = zeros({n}, t);
      // Both posted before either is waited on: every rank sends first, so a blocking send
      // would deadlock here for large messages; DeepComm's are nonblocking.
      auto s = w.send(out, next, 3);
      auto r = w.recv(in, prev, 3);
      s->wait();
      r->wait();
      std::vector<double> want(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) want[size_t(i)] = value(i, prev, t);
      expect_equal(in, want, label("recv", t, n));
    }
  }
}

TEST_CASE("send and recv: tags tell messages apart", "[comm]") {
  auto& w = world();
  if (w.size() < 2) return;
  if (w.rank() == 0) {
    auto a = w.send(full({3}, 1.0), 1, 7);
    auto b = w.send(full({3}, 2.0), 1, 8);
    comm::wait_all({a, b});
  } else if (w.rank() == 1) {
    Tensor x8 = zeros({3}), x7 = zeros({3});
    auto b = w.recv(x8, 0, 8);  // posted in the opposite order of the sends
    auto a = w.recv(x7, 0, 7);
    comm::wait_all({a, b});
    CHECK(to_vector(x7) == std::vector<double>{1, 1, 1});
    CHECK(to_vector(x8) == std::vector<double>{2, 2, 2});
  }
  w.barrier()->wait();
}

TEST_CASE("barrier completes on every rank", "[comm]") {
  auto& w = world();
  for (int i = 0; i < 5; ++i) w.barrier()->wait();
  auto b = w.barrier();
  b->wait();
  CHECK(b->is_completed());
}

// Without debug mode: the always-on agreement check (mpi_backend.cpp) fails every rank's call
// when one rank's differs, writes no tensor, and leaves the group in step. Runs under every
// CTest flavour, so the MPI_THREAD_SERIALIZED path (Iallreduce + test) is covered too.
TEST_CASE("collectives that differ between ranks fail on every rank, writing nothing", "[comm]") {
  auto& w = world();
  if (w.size() < 2) return;
  bool odd = w.rank() == 1;  // rank 1 alone calls something else
  auto expect_fail = [&](auto&& call, const Tensor& t, const std::string& rank1_says) {
    double before = to_vector(t)[0];
    try {
      call();
      FAIL("the mismatched call returned on rank " << w.rank());
    } catch (const Error& e) {
      std::string m = e.what();
      CHECK_THAT(m, Catch::Contains("the ranks called different collectives"));
      CHECK_THAT(m, Catch::Contains("rank 1: " + rank1_says));
    }
    CHECK(to_vector(t)[0] == before);
  };
  Tensor a = full({6 + (odd ? 1 : 0)}, double(w.rank() + 1));
  expect_fail([&] { w.allreduce(a)->wait(); }, a, "allreduce(sum) [7] f32 cpu");
  Tensor b = full({6}, double(w.rank() + 1), odd ? DType::i32 : DType::f32);
  expect_fail([&] { w.allreduce(b, comm::ReduceOp::max)->wait(); }, b, "allreduce(max) [6] i32 cpu");
  Tensor c = full({6}, double(w.rank() + 1));
  expect_fail([&] { w.broadcast(c, odd ? 1 : 0)->wait(); }, c, "broadcast(root 1) [6] f32 cpu");
  Tensor d = full({6}, double(w.rank() + 1));
  expect_fail([&] { if (odd) w.barrier()->wait(); else w.allreduce(d)->wait(); }, d, "barrier");
  // Still in step: a matching call works.
  Tensor ok = ones({3});
  w.allreduce(ok)->wait();
  CHECK(to_vector(ok)[0] == w.size());
}

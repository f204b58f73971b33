// Tensor-parallel layers against the dense layers they split: every rank also runs the dense
// layer on the same input (same seed), and the outputs, the input gradient and this rank's
// slice of each weight gradient must agree, in f32 and f64, over the whole world and (with 4
// ranks) over tp groups of 2.
#include "testing.h"

#include "fathom/comm/comm.h"
#include "fathom/optim/optimizer.h"
#include "fathom/parallel/grad_norm.h"
#include "fathom/parallel/mesh.h"
#include "fathom/parallel/tensor_parallel.h"
#include "fathom/parallel/tp_gpt.h"

using namespace fathom;
using namespace fathom::testing;
using Catch::Matchers::Contains;
using parallel::ShardSpec;

namespace {

// The tp groups to test: the world, and pairs when there are more than 2 ranks.
std::vector<std::shared_ptr<comm::ProcessGroup>> tp_groups() {
  auto& world = *comm::init().world;
  std::vector<std::shared_ptr<comm::ProcessGroup>> out;
  out.push_back(parallel::Mesh(world, 1, 1, world.size()).tp_group());
  if (world.size() > 2) out.push_back(parallel::Mesh(world, world.size() / 2, 1, 2).tp_group());
  return out;
}

double rtol_of(DType t) { return t == DType::f64 ? 1e-12 : 1e-5; }
double atol_of(DType t) { return t == DType::f64 ? 1e-13 : 1e-6; }

Tensor leaf(const Tensor& t) {
  Tensor x = ops::clone(t);
  x.requires_grad_(true);
  return x;
}

Tensor shard(const Tensor& full, ShardSpec s, const comm::ProcessGroup& g) {
  return parallel::shard_of(full, s, g.rank(), g.size());
}

void expect_near(const Tensor& got, const Tensor& want, DType t, const std::string& what) {
  expect_close(got, want, rtol_of(t), atol_of(t), what);
}

// f64 where the device has it for every op (the CPU); f32 everywhere.
std::vector<DType> dtypes(Device dev) {
  if (dev.is_cuda()) return {DType::f32};
  return {DType::f32, DType::f64};
}

}  // namespace

void column_equals_dense(Device dev) {
  for (auto& g : tp_groups())
    for (DType dt : dtypes(dev))
      for (bool gather : {false, true}) {
        INFO("tp " << g->size() << " " << dtype_name(dt) << " gather " << gather);
        Generator gen(11);
        nn::Linear dense(6, 8, &gen);
        dense.to(dt);
        dense.to(dev);
        parallel::ColumnParallelLinear tp(parallel::ParallelLinearOptions(6, 8).gather_output(gather), g);
        tp.to(dt);
        tp.to(dev);
        ops::copy_(tp.weight, shard(dense.weight, {0}, *g));
        ops::copy_(tp.bias, shard(dense.bias, {0}, *g));
        Tensor x0 = randn({3, 2, 6}, dt, &gen).to(dev), w_out = randn({3, 2, 8}, dt, &gen).to(dev);
        Tensor xd = leaf(x0), xt = leaf(x0);
        Tensor yd = dense.forward(xd), yt = tp.forward(xt);
        sum(yd * w_out).backward();
        if (gather) {
          expect_near(yt, yd, dt, "y");
          sum(yt * w_out).backward();
        } else {
          expect_near(yt, shard(yd, {2}, *g), dt, "y");
          // Each rank's part of the loss; their sum over ranks is the dense loss.
          sum(yt * shard(w_out, {2}, *g)).backward();
        }
        expect_near(xt.grad(), xd.grad(), dt, "x.grad");  // copy_to_tp_region summed it
        expect_near(tp.weight.grad(), shard(dense.weight.grad(), {0}, *g), dt, "weight.grad");
        expect_near(tp.bias.grad(), shard(dense.bias.grad(), {0}, *g), dt, "bias.grad");
      }
}

void row_equals_dense(Device dev) {
  for (auto& g : tp_groups())
    for (DType dt : dtypes(dev))
      for (bool parallel_in : {true, false}) {
        INFO("tp " << g->size() << " " << dtype_name(dt) << " input_is_parallel " << parallel_in);
        Generator gen(12);
        nn::Linear dense(8, 5, &gen);
        dense.to(dt);
        dense.to(dev);
        parallel::RowParallelLinear tp(parallel::ParallelLinearOptions(8, 5).input_is_parallel(parallel_in), g);
        tp.to(dt);
        tp.to(dev);
        ops::copy_(tp.weight, shard(dense.weight, {1}, *g));
        ops::copy_(tp.bias, dense.bias);
        Tensor x0 = randn({4, 8}, dt, &gen).to(dev), w_out = randn({4, 5}, dt, &gen).to(dev);
        Tensor xd = leaf(x0), xt = leaf(parallel_in ? shard(x0, {1}, *g) : x0);
        Tensor yd = dense.forward(xd), yt = tp.forward(xt);
        expect_near(yt, yd, dt, "y");
        sum(yd * w_out).backward();
        sum(yt * w_out).backward();
        expect_near(xt.grad(), parallel_in ? shard(xd.grad(), {1}, *g) : xd.grad(), dt, "x.grad");
        expect_near(tp.weight.grad(), shard(dense.weight.grad(), {1}, *g), dt, "weight.grad");
        expect_near(tp.bias.grad(), dense.bias.grad(), dt, "bias.grad");  // replicated, whole
      }
}

void embedding_equals_dense(Device dev) {
  for (auto& g : tp_groups())
    for (DType dt : dtypes(dev)) {
      INFO("tp " << g->size() << " " << dtype_name(dt));
      Generator gen(13);
      nn::Embedding dense(nn::EmbeddingOptions(8, 3), &gen);
      dense.to(dt);
        dense.to(dev);
      parallel::VocabParallelEmbedding tp(8, 3, g);
      tp.to(dt);
        tp.to(dev);
      ops::copy_(tp.weight, shard(dense.weight, {0}, *g));
      // Every id, both ends of every rank's range among them, some repeated.
      Tensor ids = from_vector(std::vector<int64_t>{0, 7, 3, 4, 1, 6, 2, 5, 7, 0}, {2, 5}).to(dev);
      Tensor w_out = randn({2, 5, 3}, dt, &gen).to(dev);
      Tensor yd = dense.forward(ids), yt = tp.forward(ids);
      expect_near(yt, yd, dt, "y");
      sum(yd * w_out).backward();
      sum(yt * w_out).backward();
      expect_near(tp.weight.grad(), shard(dense.weight.grad(), {0}, *g), dt, "weight.grad");
      CHECK_THROWS_WITH(tp.forward(ops::to(ids, DType::f32)), Contains("must be integer"));
    }
}

void cross_entropy_equals_dense(Device dev) {
  for (auto& g : tp_groups())
    for (DType dt : dtypes(dev)) {
      INFO("tp " << g->size() << " " << dtype_name(dt));
      Generator gen(14);
      int64_t V = 8;
      // Large logits: the max shift must keep exp() finite.
      Tensor full = randn({2, 3, V}, dt, &gen).to(dev) * 30.0;
      Tensor targets = from_vector(std::vector<int64_t>{0, 7, -100, 3, 4, 5}, {2, 3}).to(dev);
      Tensor ld = leaf(full), lt = leaf(shard(full, {2}, *g));
      Tensor loss_d = cross_entropy(ld, targets);
      comm::CommStats before = g->stats();
      Tensor loss_t = parallel::vocab_parallel_cross_entropy(lt, targets, g);
      comm::CommStats after = g->stats();
      expect_near(loss_t, loss_d, dt, "loss");
      CHECK(loss_t.dtype() == loss_d.dtype());
      if (g->size() > 1) {
        // Three all-reduces of one value per row, and no all-gather.
        CHECK(after[comm::OpKind::allgather].calls == before[comm::OpKind::allgather].calls);
        CHECK(after[comm::OpKind::allreduce].calls - before[comm::OpKind::allreduce].calls == 3);
        CHECK(after[comm::OpKind::allreduce].bytes - before[comm::OpKind::allreduce].bytes ==
              uint64_t(3 * 6 * itemsize(dt)));
      }
      (loss_d * 3.0).backward();
      (loss_t * 3.0).backward();
      expect_near(lt.grad(), shard(ld.grad(), {2}, *g), dt, "logits.grad");
    }
}

TEST_CASE("ColumnParallelLinear equals the dense Linear, with and without gather_output", "[parallel][tp]") {
  column_equals_dense(Device::cpu());
}

TEST_CASE("RowParallelLinear equals the dense Linear, parallel input or not", "[parallel][tp]") {
  row_equals_dense(Device::cpu());
}

TEST_CASE("VocabParallelEmbedding equals the dense Embedding", "[parallel][tp]") {
  embedding_equals_dense(Device::cpu());
}

TEST_CASE("vocab_parallel_cross_entropy equals cross_entropy on the whole logits, without gathering them", "[parallel][tp]") {
  cross_entropy_equals_dense(Device::cpu());
}

// Over NCCL (several ranks may share one GPU, as the DDP tests do).
TEST_CASE("Tensor-parallel layers over NCCL equal the dense layers", "[parallel][tp][cuda]") {
  if (!has_cuda()) return;
  Device dev = comm::init().device;
  REQUIRE(dev.is_cuda());
  column_equals_dense(dev);
  row_equals_dense(dev);
  embedding_equals_dense(dev);
  cross_entropy_equals_dense(dev);
}

TEST_CASE("vocab_parallel_cross_entropy checks its inputs", "[parallel][tp]") {
  auto g = tp_groups().front();
  Tensor logits = zeros({2, 3, 4});
  CHECK_THROWS_WITH(parallel::vocab_parallel_cross_entropy(logits, zeros({2, 4}, DType::i64), g),
                    Contains("leading shape [2, 3]"));
  CHECK_THROWS_WITH(parallel::vocab_parallel_cross_entropy(logits, zeros({2, 3}), g),
                    Contains("must be integer"));
  CHECK_THROWS_WITH(parallel::ColumnParallelLinear(parallel::ParallelLinearOptions(4, 3 * g->size() + 1), g),
                    Contains("do not split evenly"));
  parallel::RowParallelLinear row(parallel::ParallelLinearOptions(4 * g->size(), 2), g);
  CHECK_THROWS_WITH(row.forward(zeros({3, 4 * g->size()})), Contains("this rank's slice"));
}

TEST_CASE("shard_of and gather_full invert each other, fused blocks included", "[parallel][tp]") {
  for (auto& g : tp_groups()) {
    Generator gen(15);
    Tensor full = randn({3 * 2 * g->size(), 5}, kFloat32, &gen);
    for (ShardSpec s : {ShardSpec{0, 1}, ShardSpec{0, 3}, ShardSpec{1, 1}, ShardSpec{}}) {
      Tensor f = s.dim == 1 ? ops::contiguous(full.t()) : full;
      Tensor mine = parallel::shard_of(f, s, g->rank(), g->size());
      expect_close(parallel::gather_full(mine, s, *g), f, 0, 0, "round trip");
    }
    // Fused: rank r's rows are block r of each third, in order.
    Tensor mine = parallel::shard_of(full, {0, 3}, g->rank(), g->size());
    int64_t third = 2 * g->size();
    expect_close(ops::narrow(mine, 0, 2, 2), ops::narrow(full, 0, third + 2 * g->rank(), 2), 0, 0, "k rows");
  }
}

TEST_CASE("parallel::grad_norm counts sharded gradients on every rank and replicated ones once", "[parallel][tp]") {
  auto& world = *comm::init().world;
  int w = world.size(), r = world.rank();
  // Over tp = the world: rank r's shard is [r + 1, r + 1] and everyone holds the replicated [3, 4].
  parallel::Mesh tp_mesh(world, 1, 1, w);
  Tensor shard = full({2}, double(r + 1)), rep = from_vector(std::vector<double>{3, 4}, {2});
  double want = 25;  // 3^2 + 4^2, once
  for (int i = 1; i <= w; ++i) want += 2.0 * i * i;
  CHECK(parallel::grad_norm({shard}, {rep}, *tp_mesh.tp_group()) == Approx(std::sqrt(want)));
  // Over pp = the world (tp of one): every rank's lists are its own, all summed.
  parallel::Mesh pp_mesh(world, 1, w, 1);
  double want_pp = 0;
  for (int i = 1; i <= w; ++i) want_pp += 2.0 * i * i + 25;
  CHECK(parallel::grad_norm({shard, Tensor()}, {rep}, *pp_mesh.tp_group(), {pp_mesh.pp_group().get()}) ==
        Approx(std::sqrt(want_pp)));
  // Clipping scales both lists by one coefficient, the same on every rank.
  double norm = parallel::clip_grad_norm_({shard}, {rep}, 1.0, *tp_mesh.tp_group());
  CHECK(norm == Approx(std::sqrt(want)));
  CHECK(to_vector(rep)[0] == Approx(3.0 / (std::sqrt(want) + 1e-6)));
  CHECK(to_vector(shard)[1] == Approx((r + 1) / (std::sqrt(want) + 1e-6)));
  // A non-finite gradient anywhere makes the norm non-finite everywhere.
  Tensor bad = full({1}, r == w - 1 ? NAN : 1.0);
  CHECK(std::isnan(parallel::grad_norm({bad}, {}, *tp_mesh.tp_group())));
}

TEST_CASE("MeshOptimizer's grad_norm splits its parameters by name and skips what is not counted", "[parallel][tp]") {
  auto& world = *comm::init().world;
  int w = world.size(), r = world.rank();
  parallel::Mesh mesh(world, 1, 1, w);
  Tensor a = full({2}, 1.0), b = full({1}, 1.0), c = full({3}, 1.0);
  for (Tensor* t : {&a, &b, &c}) t->requires_grad_(true);
  (sum(a * double(r + 1)) + sum(b * 2.0) + sum(c * 100.0)).backward();  // grads: r + 1, 2, 100
  parallel::MeshNorm norm{[](const std::string& n) { return n == "a"; }, mesh.tp_group(), {},
                          [](const std::string& n) { return n != "c"; }};
  parallel::MeshOptimizer<optim::SGD> opt(optim::NamedParams{{"a", a}, {"b", b}, {"c", c}},
                                          optim::SGDOptions(0.1), norm);
  double want = 4;  // b once
  for (int i = 1; i <= w; ++i) want += 2.0 * i * i;
  CHECK(opt.grad_norm() == Approx(std::sqrt(want)));
  CHECK_THROWS_WITH(parallel::MeshOptimizer<optim::SGD>(optim::NamedParams{{"a", a}}, optim::SGDOptions(0.1),
                                                        parallel::MeshNorm{}),
                    Contains("needs is_sharded and tp_group"));
}

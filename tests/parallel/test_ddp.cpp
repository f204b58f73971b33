// DDP against the single-process run: every rank also trains an unwrapped copy of the model on
// the whole global batch, which is what one process would do; the two must agree.
#include "testing.h"

#include "fathom/comm/comm.h"
#include "fathom/comm/compressor.h"
#include "fathom/optim/optimizer.h"
#include "fathom/parallel/ddp.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

// Registers fc2 before fc1 but runs fc1 first, so the gradient-ready order differs from the
// reverse registration order and the bucket rebuild has something to change.
class Net : public nn::Module {
 public:
  explicit Net(uint64_t seed, bool with_unused = false) : Module("Net") {
    Generator g(seed);
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(nn::LinearOptions(16, 5), &g));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(nn::LinearOptions(12, 16), &g));
    if (with_unused) spare = register_parameter("spare", randn({3}, kFloat32, &g));
  }
  Tensor forward(const Tensor& x) override { return fc2->forward(relu(fc1->forward(x))); }
  std::shared_ptr<nn::Linear> fc1, fc2;
  Tensor spare;
};

std::shared_ptr<comm::ProcessGroup> world() {
  return comm::init().world;
}

// The global batch of step s: inputs [16, 12] and labels [16], the same on every rank.
std::pair<Tensor, Tensor> global_batch(int64_t s) {
  Generator g(1000 + uint64_t(s));
  Tensor x = randn({16, 12}, kFloat32, &g);
  Tensor y = ops::to(ops::to(uniform({16}, 0, 5, kFloat32, &g), kInt64), Device::cpu());
  return {x, y};
}

Tensor shard(const Tensor& t, int rank, int world) {
  int64_t n = t.size(0) / world;
  return ops::contiguous(ops::narrow(t, 0, rank * n, n));
}

void expect_same_params(nn::Module& a, nn::Module& b, double rtol) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].first);
    expect_close(pa[i].second, pb[i].second, rtol, 1e-7, pa[i].first);
  }
}

// DDP over 10 steps of split batches against one process on the whole batch (on `dev`):
// variant 0 SGD with momentum, 1 AdamW, 2 AdamW with every bucket launched after backward.
void split_batch_matches_whole(Device dev, int variant) {
  auto pg = world();
  int r = pg->rank(), w = pg->size();
  INFO("variant " << variant << " on " << dev.str());
  bool adam = variant > 0;
  auto model = std::make_shared<Net>(7), ref = std::make_shared<Net>(7);
  model->to(dev);
  ref->to(dev);
  // ~100 floats a bucket: several buckets
  auto o = parallel::DDPOptions().bucket_cap_mb(0.0004).first_bucket_cap_mb(0.0004).overlap(variant != 2);
  parallel::DistributedDataParallel ddp(model, pg, o);
  auto before = ddp.bucket_layout();
  REQUIRE(before.size() > 1);
  std::unique_ptr<optim::Optimizer> opt, opt_ref;
  if (adam) {
    opt = std::make_unique<optim::AdamW>(model->named_parameters(), optim::AdamWOptions(0.01));
    opt_ref = std::make_unique<optim::AdamW>(ref->named_parameters(), optim::AdamWOptions(0.01));
  } else {
    opt = std::make_unique<optim::SGD>(model->named_parameters(), optim::SGDOptions(0.1).momentum(0.9));
    opt_ref = std::make_unique<optim::SGD>(ref->named_parameters(), optim::SGDOptions(0.1).momentum(0.9));
  }
  ddp.attach(*opt);
  for (int64_t s = 0; s < 10; ++s) {
    auto [x, y] = global_batch(s);
    x = ops::to(x, dev);
    y = ops::to(y, dev);
    opt->zero_grad();
    cross_entropy(ddp.forward(shard(x, r, w)), shard(y, r, w)).backward();
    opt->step();
    opt_ref->zero_grad();
    cross_entropy(ref->forward(x), y).backward();
    opt_ref->step();
    if (s == 0) {
      // p.grad() is the average over ranks: the whole batch's gradient.
      CHECK(model->fc1->weight.grad().device() == dev);
      expect_close(model->fc1->weight.grad(), ref->fc1->weight.grad(), 1e-5, 1e-7, "grad");
    }
  }
  CHECK(ddp.bucket_layout() != before);  // rebuilt from the real gradient order
  CHECK(ddp.bucket_layout().front().front().rfind("fc2.", 0) == 0);
  expect_same_params(*model, *ref, 1e-6);
}

}  // namespace

TEST_CASE("DDP on a split batch equals one process on the whole batch, through a bucket rebuild", "[parallel]") {
  for (int variant : {0, 1, 2}) split_batch_matches_whole(Device::cpu(), variant);
}

// Over NCCL: several ranks can share one GPU for this (NCCL_HOSTID per rank, docs/comm.md).
TEST_CASE("DDP over NCCL on a split batch equals one process on the whole batch", "[parallel][cuda]") {
  if (!has_cuda()) return;
  Device dev = comm::init().device;
  REQUIRE(dev.is_cuda());
  for (int variant : {0, 1, 2}) split_batch_matches_whole(dev, variant);
}

TEST_CASE("DDP buckets close before a parameter would take them past their cap", "[parallel]") {
  auto model = std::make_shared<Net>(5);
  auto o = parallel::DDPOptions()
               .first_bucket_cap_mb(100 * 4 / 1048576.0)  // 100 floats
               .bucket_cap_mb(1000 * 4 / 1048576.0);
  parallel::DistributedDataParallel ddp(model, world(), o);
  // Reverse registration order: fc1.bias (16) fits the first bucket, fc1.weight (192) would
  // overflow it and starts the next, which holds the rest (277 floats).
  using Layout = std::vector<std::vector<std::string>>;
  CHECK(ddp.bucket_layout() == Layout{{"fc1.bias"}, {"fc1.weight", "fc2.bias", "fc2.weight"}});
}

TEST_CASE("DDP no_sync accumulation equals one process on the bigger batch", "[parallel]") {
  auto pg = world();
  int r = pg->rank(), w = pg->size();
  auto model = std::make_shared<Net>(3), ref = std::make_shared<Net>(3);
  parallel::DistributedDataParallel ddp(model, pg);
  optim::SGD opt(model->named_parameters(), optim::SGDOptions(0.05));
  optim::SGD opt_ref(ref->named_parameters(), optim::SGDOptions(0.05));
  uint64_t bytes_before = pg->stats()[comm::OpKind::allreduce].bytes;
  for (int64_t s = 0; s < 3; ++s) {
    auto [x1, y1] = global_batch(2 * s);
    auto [x2, y2] = global_batch(2 * s + 1);
    opt.zero_grad();
    {
      auto guard = ddp.no_sync();
      cross_entropy(ddp.forward(shard(x1, r, w)), shard(y1, r, w)).backward();
    }
    CHECK(pg->stats()[comm::OpKind::allreduce].bytes == bytes_before);  // nothing sent yet
    cross_entropy(ddp.forward(shard(x2, r, w)), shard(y2, r, w)).backward();
    opt.step();
    bytes_before = pg->stats()[comm::OpKind::allreduce].bytes;
    opt_ref.zero_grad();
    cross_entropy(ref->forward(x1), y1).backward();
    cross_entropy(ref->forward(x2), y2).backward();
    opt_ref.step();
  }
  expect_same_params(*model, *ref, 1e-6);
}

TEST_CASE("DDP: a parameter without gradient is an error naming it, unless allowed", "[parallel]") {
  auto pg = world();
  int r = pg->rank(), w = pg->size();
  auto [x, y] = global_batch(0);
  {
    auto model = std::make_shared<Net>(5, true);
    parallel::DistributedDataParallel ddp(model, pg);
    Tensor loss = cross_entropy(ddp.forward(shard(x, r, w)), shard(y, r, w));
    CHECK_THROWS_WITH(loss.backward(), Catch::Contains("no gradient in this backward pass: 'spare'") &&
                                           Catch::Contains("find_unused_parameters"));
  }
  auto model = std::make_shared<Net>(5, true), ref = std::make_shared<Net>(5, true);
  auto o = parallel::DDPOptions().find_unused_parameters(true);
  parallel::DistributedDataParallel ddp(model, pg, o);
  optim::SGD opt(model->named_parameters(), optim::SGDOptions(0.1));
  optim::SGD opt_ref(ref->named_parameters(), optim::SGDOptions(0.1));
  for (int s = 0; s < 3; ++s) {
    auto [xs, ys] = global_batch(s);
    opt.zero_grad();
    cross_entropy(ddp.forward(shard(xs, r, w)), shard(ys, r, w)).backward();
    opt.step();
    opt_ref.zero_grad();
    cross_entropy(ref->forward(xs), ys).backward();
    opt_ref.step();
  }
  expect_same_params(*model, *ref, 1e-6);
}

TEST_CASE("DDP with 2:4 compression: bytes on the wire match the formula", "[parallel]") {
  auto pg = world();
  int r = pg->rank(), w = pg->size();
  for (DType wire : {kFloat32, kBFloat16}) {
    auto model = std::make_shared<Net>(9);
    auto o = parallel::DDPOptions().bucket_cap_mb(0.0004).first_bucket_cap_mb(0.0004).compressor(
        std::make_shared<comm::Sparse24Compressor>(wire));
    parallel::DistributedDataParallel ddp(model, pg, o);
    optim::SGD opt(model->named_parameters(), optim::SGDOptions(0.1));
    ddp.attach(opt);
    for (int s = 0; s < 3; ++s) {
      auto [x, y] = global_batch(s);
      opt.zero_grad();
      cross_entropy(ddp.forward(shard(x, r, w)), shard(y, r, w)).backward();
      opt.step();
      // Each bucket is padded to a multiple of 4 values and sends half of them.
      uint64_t padded = 0;
      for (const auto& b : ddp.last_step().buckets) padded += uint64_t(b.numel);
      CHECK(ddp.last_step().bytes_sent == padded / 2 * itemsize(wire));
      double ratio = double(ddp.last_step().bytes_sent) / double(ddp.last_step().bytes_uncompressed);
      CHECK(ratio <= (wire == kFloat32 ? 0.53 : 0.28));
    }
    // Every rank still holds the same parameters: the decompressed average is identical.
    for (auto& [name, p] : model->named_parameters()) {
      Tensor mine = ops::clone(p), top = ops::clone(p);
      pg->broadcast(top, 0)->wait();
      CHECK(to_vector(mine) == to_vector(top));
    }
  }
}

// A bf16 model's gradient reaches its f32 bucket slot, never autograd's grad; after the
// reduction DDP makes that slot the parameter's grad, so an optimizer that was not attached
// steps exactly what an attached one does (it used to see no gradient and never train).
TEST_CASE("DDP with bf16 parameters trains the same with and without attach", "[parallel]") {
  auto pg = world();
  int r = pg->rank(), w = pg->size();
  std::vector<std::shared_ptr<Net>> models;
  std::vector<std::vector<double>> losses(2);
  for (bool attach : {true, false}) {
    auto model = std::make_shared<Net>(11);
    model->to(kBFloat16);
    parallel::DistributedDataParallel ddp(model, pg);
    optim::AdamW opt(model->named_parameters(), optim::AdamWOptions(0.01));
    if (attach) ddp.attach(opt);
    for (int64_t s = 0; s < 20; ++s) {
      auto [x, y] = global_batch(0);
      opt.zero_grad();
      Tensor loss = cross_entropy(ddp.forward(ops::to(shard(x, r, w), kBFloat16)).to(kFloat32), shard(y, r, w));
      loss.backward();
      if (s == 0) {
        CHECK(model->fc1->weight.grad().dtype() == kFloat32);  // the reduced main grad
        CHECK(model->fc1->weight.grad().shape() == model->fc1->weight.shape());
      }
      opt.step();
      losses[attach ? 0 : 1].push_back(loss.item<double>());
    }
    models.push_back(model);
  }
  auto pa = models[0]->named_parameters(), pb = models[1]->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].first);
    CHECK(to_vector(pa[i].second) == to_vector(pb[i].second));
  }
  CHECK(losses[0] == losses[1]);
  // It trains: the one batch it sees every step is learnt.
  CHECK(losses[1].back() < 0.7 * losses[1].front());
}

TEST_CASE("DDP: settings that differ across ranks are an error on every rank naming each value", "[parallel]") {
  auto pg = world();
  const int r = pg->rank();
  if (pg->size() < 2) return;  // nothing can differ with one rank
  {  // the last rank's model in bf16
    auto model = std::make_shared<Net>(5);
    if (r == pg->size() - 1) model->to(DType::bf16);
    CHECK_THROWS_WITH(parallel::DistributedDataParallel(model, pg),
                      Catch::Contains("the ranks of group 'world' differ") &&
                          Catch::Contains("parameter dtypes: rank 0 f32") && Catch::Contains("bf16"));
  }
  {  // compression on rank 0 only
    auto model = std::make_shared<Net>(5);
    auto o = parallel::DDPOptions().compressor(r == 0 ? comm::make_compressor("24") : nullptr);
    CHECK_THROWS_WITH(parallel::DistributedDataParallel(model, pg, o),
                      Catch::Contains("compression: rank 0 2:4 sparse") && Catch::Contains("rank 1 none"));
  }
  // The group stays usable: the same settings on every rank build a DDP.
  auto model = std::make_shared<Net>(5);
  CHECK_NOTHROW(parallel::DistributedDataParallel(model, pg));
}

// The distributed optimizer (ZeRO-1/2) against the single-process run: every rank also trains an
// unwrapped copy of the model on the whole global batch with the plain optimizer; after 10
// clipped steps the two agree to 1e-6. Buckets of ~100 values cut the blocks across parameters,
// so segments of one parameter are stepped on different ranks.
#include "testing.h"

#include "fathom/comm/comm.h"
#include "fathom/comm/compressor.h"
#include "fathom/optim/grad_scaler.h"
#include "fathom/parallel/distributed_optimizer.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

class Net : public nn::Module {
 public:
  explicit Net(uint64_t seed) : Module("Net") {
    Generator g(seed);
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(nn::LinearOptions(12, 16), &g));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(nn::LinearOptions(16, 5), &g));
  }
  Tensor forward(const Tensor& x) override { return fc2->forward(relu(fc1->forward(x))); }
  std::shared_ptr<nn::Linear> fc1, fc2;
};

std::shared_ptr<comm::ProcessGroup> world() { return comm::init().world; }

std::pair<Tensor, Tensor> global_batch(int64_t s) {
  Generator g(2000 + uint64_t(s));
  Tensor x = randn({16, 12}, kFloat32, &g);
  Tensor y = ops::to(uniform({16}, 0, 5, kFloat32, &g), kInt64);
  return {x, y};
}

Tensor shard(const Tensor& t, int rank, int world) {
  int64_t n = t.size(0) / world;
  return ops::contiguous(ops::narrow(t, 0, rank * n, n));
}

// Weights decay, biases do not: each segment must be stepped with its own group's options.
std::vector<optim::ParamGroup> groups_of(nn::Module& m) {
  optim::NamedParams decay, no_decay;
  for (auto& [name, p] : m.named_parameters())
    (name.find("bias") != std::string::npos ? no_decay : decay).push_back({name, p});
  std::vector<optim::ParamGroup> g;
  g.emplace_back(decay);
  g.emplace_back(no_decay, optim::AdamWOptions().weight_decay(0));
  return g;
}

auto small_buckets() { return parallel::DDPOptions().bucket_cap_mb(0.0004).first_bucket_cap_mb(0.0004); }

void expect_same_params(nn::Module& a, nn::Module& b, double rtol, double atol = 1e-7) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].first);
    expect_close(ops::to(pa[i].second, kFloat32), ops::to(pb[i].second, kFloat32), rtol, atol, pa[i].first);
  }
}

// Every rank holds rank 0's parameters, bit for bit.
void expect_ranks_agree(nn::Module& m, comm::ProcessGroup& pg) {
  for (auto& [name, p] : m.named_parameters()) {
    Tensor mine = ops::contiguous(ops::clone(p)), top = ops::clone(mine);
    pg.broadcast(top, 0)->wait();
    INFO(name);
    CHECK(to_vector(mine) == to_vector(top));
  }
}

// ZeRO `stage` with AdamW in two groups (or SGD with momentum), clipped to max_norm, 10 steps.
void sharded_matches_whole(int stage, bool sgd, bool overlap, Device dev = Device::cpu()) {
  auto pg = world();
  int r = pg->rank(), w = pg->size();
  INFO("ZeRO-" << stage << (sgd ? " SGD" : " AdamW") << (overlap ? " overlapped gather" : "") << " on " << dev.str());
  auto model = std::make_shared<Net>(7), ref = std::make_shared<Net>(7);
  model->to(dev);
  ref->to(dev);
  parallel::DistributedDataParallel ddp(model, pg, small_buckets());
  REQUIRE(ddp.bucket_layout().size() > 1);
  auto z = parallel::ZeroOptions().stage(stage).overlap_param_gather(overlap);
  std::unique_ptr<optim::Optimizer> opt, opt_ref;
  if (sgd) {
    auto o = optim::SGDOptions(0.1).momentum(0.9).weight_decay(0.01);
    opt = std::make_unique<parallel::DistributedOptimizer<optim::SGD>>(ddp, o, z);
    opt_ref = std::make_unique<optim::SGD>(ref->named_parameters(), o);
  } else {
    auto o = optim::AdamWOptions(0.01).weight_decay(0.1);
    opt = std::make_unique<parallel::DistributedOptimizer<optim::AdamW>>(ddp, groups_of(*model), o, z);
    opt_ref = std::make_unique<optim::AdamW>(groups_of(*ref), o);
  }
  CHECK(opt->sharded());
  optim::GradScaler scaler(optim::GradScalerOptions().enabled(false)), scaler_ref(optim::GradScalerOptions().enabled(false));
  const double max_norm = 0.3;
  int clipped = 0;
  for (int64_t s = 0; s < 10; ++s) {
    auto [x, y] = global_batch(s);
    x = ops::to(x, dev);
    y = ops::to(y, dev);
    opt->zero_grad();
    cross_entropy(ddp.forward(shard(x, r, w)), shard(y, r, w)).backward();
    // ZeRO-1 all-reduces: p.grad() is the whole average. ZeRO-2 keeps only this rank's blocks.
    CHECK(model->fc1->weight.grad().defined() == (stage == 1));
    REQUIRE(scaler.step(*opt, max_norm));
    opt_ref->zero_grad();
    cross_entropy(ref->forward(x), y).backward();
    REQUIRE(scaler_ref.step(*opt_ref, max_norm));
    // The norm over all shards is the whole gradient's norm.
    CHECK(scaler.last_grad_norm() == Approx(scaler_ref.last_grad_norm()).epsilon(1e-6));
    if (scaler_ref.last_grad_norm() > max_norm) ++clipped;
  }
  CHECK(clipped > 0);  // the clipping was exercised
  if (overlap) ddp.prepare_forward();  // the next forward waits for the last gather
  expect_same_params(*model, *ref, 1e-6);
  expect_ranks_agree(*model, *pg);
}

}  // namespace

TEST_CASE("ZeRO-1 and ZeRO-2 equal one process on the whole batch, f32, with clipping", "[parallel]") {
  for (int stage : {1, 2}) {
    sharded_matches_whole(stage, false, false);
    sharded_matches_whole(stage, true, false);
  }
  sharded_matches_whole(2, false, true);
}

// Over NCCL (every rank on one GPU through NCCL_HOSTID, as DDP's NCCL test): the reduce-scatter,
// the in-place all-gather and the norm's all-reduce on CUDA tensors.
TEST_CASE("ZeRO-1 and ZeRO-2 over NCCL equal one process on the whole batch", "[parallel][cuda]") {
  if (!has_cuda()) return;
  Device dev = comm::init().device;
  REQUIRE(dev.is_cuda());
  for (int stage : {1, 2}) sharded_matches_whole(stage, false, false, dev);
  sharded_matches_whole(2, false, true, dev);
}

// Each rank's share of the optimizer state is its block of every bucket: 1/world of the
// (padded) values, which the memory ledger counts exactly (requested bytes).
TEST_CASE("ZeRO state per rank is 1/world of the model's, by the ledger", "[parallel]") {
  auto pg = world();
  int r = pg->rank(), w = pg->size();
  for (int stage : {1, 2}) {
    for (DType dt : {kFloat32, kBFloat16}) {
      INFO("ZeRO-" << stage << " " << dtype_name(dt));
      // The comm thread lets go of a collective's tensors just after the caller sees it done; a
      // barrier behind them makes sure it has, so the ledger holds only what is still alive.
      pg->barrier()->wait();
      memory::Stats before = memory::stats(DeviceType::CPU);
      auto model = std::make_shared<Net>(3);
      model->to(dt);
      int64_t total = 0;
      for (auto& [n, p] : model->named_parameters()) total += p.numel();
      parallel::DistributedDataParallel ddp(model, pg, small_buckets());
      parallel::DistributedOptimizer<optim::AdamW> opt(ddp, optim::AdamWOptions(0.01),
                                                       parallel::ZeroOptions().stage(stage));
      int64_t padded = 0;  // every bucket rounded up to 4 x world
      for (const auto& b : ddp.bucket_layout()) {
        int64_t n = 0;
        for (const auto& name : b)
          for (auto& [pn, p] : model->named_parameters()) if (pn == name) n += p.numel();
        padded += (n + 4 * w - 1) / (4 * w) * (4 * w);
      }
      int64_t mine = 0;
      for (const auto& seg : opt.shards().segments()) mine += seg.length;
      // This rank's segments are its blocks minus the padding that falls in them.
      Tensor counts = ops::to(from_vector(std::vector<int64_t>{mine}, {1}), Device::cpu());
      Tensor all = zeros({w}, DType::i64);
      pg->allgather(all, counts)->wait();
      int64_t sum = 0;
      for (double v : to_vector(all)) {
        sum += int64_t(v);
        CHECK(int64_t(v) <= padded / w);
      }
      CHECK(sum == total);

      auto [x, y] = global_batch(0);
      opt.zero_grad();
      cross_entropy(ddp.forward(ops::to(shard(x, r, w), dt)).to(kFloat32), shard(y, r, w)).backward();
      opt.step();
      pg->barrier()->wait();
      memory::Stats after = memory::stats(DeviceType::CPU);
      auto grew = [&](memory::Category c) { return after[c].current - before[c].current; };
      // AdamW's two f32 moments per value of the shard, and an f32 master for a bf16 model.
      int64_t per_value = dt == kFloat32 ? 8 : 12;
      CHECK(grew(memory::Category::optimizer_state) == per_value * mine);
      // The parameters live in the flat buffers, whole on every rank.
      CHECK(grew(memory::Category::parameters) == int64_t(itemsize(dt)) * padded);
      // ZeRO-1 keeps the whole averaged gradient; ZeRO-2 only this rank's blocks.
      CHECK(grew(memory::Category::gradients) == 4 * (stage == 1 ? padded : padded / w));
    }
  }
}

// bf16 model, f32 master shards, a dynamic loss scaler; an inf on rank 0 alone must make every
// rank skip (the norm over all shards carries it). Against plain DDP with the same buckets,
// without clipping, so both step with exactly the same factor.
TEST_CASE("ZeRO with a bf16 model and the loss scaler equals plain DDP, skipping together", "[parallel]") {
  auto pg = world();
  int r = pg->rank(), w = pg->size();
  for (int stage : {1, 2}) {
    INFO("ZeRO-" << stage);
    auto model = std::make_shared<Net>(5), ref = std::make_shared<Net>(5);
    model->to(kBFloat16);
    ref->to(kBFloat16);
    parallel::DistributedDataParallel ddp(model, pg, small_buckets()), ddp_ref(ref, pg, small_buckets());
    auto o = optim::AdamWOptions(0.01).weight_decay(0.1);
    parallel::DistributedOptimizer<optim::AdamW> opt(ddp, o, parallel::ZeroOptions().stage(stage));
    optim::AdamW opt_ref(ref->named_parameters(), o);
    ddp_ref.attach(opt_ref);
    auto so = optim::GradScalerOptions().init_scale(1024).growth_interval(3);
    optim::GradScaler scaler(so), scaler_ref(so);
    for (int64_t s = 0; s < 10; ++s) {
      auto [x, y] = global_batch(s);
      Tensor xs = ops::to(shard(x, r, w), kBFloat16), ys = shard(y, r, w);
      opt.zero_grad();
      scaler.scale(cross_entropy(ddp.forward(xs).to(kFloat32), ys)).backward();
      opt_ref.zero_grad();
      scaler_ref.scale(cross_entropy(ddp_ref.forward(xs).to(kFloat32), ys)).backward();
      if (s == 4) {
        // Sharded: on rank 0's shard only. Plain DDP: every rank holds the whole gradient.
        if (r == 0) ops::fill_(ops::narrow(opt.gradients()[0], 0, 0, 1), INFINITY);
        Tensor g = opt_ref.gradients()[0];
        ops::fill_(ops::narrow(ops::view(g, {g.numel()}), 0, 0, 1), INFINITY);
      }
      bool stepped = scaler.step(opt), stepped_ref = scaler_ref.step(opt_ref);
      CHECK(stepped == stepped_ref);
      CHECK(stepped == (s != 4));
    }
    CHECK(scaler.skipped_steps() == 1);
    CHECK(scaler.get_scale() == scaler_ref.get_scale());
    // The same f32 gradients and the same elementwise update: 2 ranks sum alike whether they
    // all-reduce or reduce-scatter; more may add in another order, a bf16 rounding apart.
    expect_same_params(*model, *ref, w == 2 ? 0 : 1e-2, 0);
    // The f32 masters too: each segment is its slice of the plain optimizer's master.
    auto ref_state = opt_ref.state_dict();
    for (const auto& seg : opt.shards().segments()) {
      Tensor full = ops::view(ref_state.at(seg.name + ".master"), {-1});
      INFO(seg.name);
      expect_close(opt.state_dict().at(seg.name + ".master"),
                   ops::contiguous(ops::narrow(full, 0, seg.start, seg.length)), w == 2 ? 0 : 1e-5, 0);
    }
    expect_ranks_agree(*model, *pg);
  }
}

TEST_CASE("ZeRO-1 with 2:4 compression trains with the ranks in agreement; ZeRO-2 refuses it", "[parallel]") {
  auto pg = world();
  int r = pg->rank(), w = pg->size();
  auto compressed = [] { return small_buckets().compressor(comm::make_compressor("24")); };
  {
    auto model = std::make_shared<Net>(9);
    parallel::DistributedDataParallel ddp(model, pg, compressed());
    CHECK_THROWS_WITH((parallel::DistributedOptimizer<optim::AdamW>(ddp, optim::AdamWOptions(), parallel::ZeroOptions().stage(2))),
                      Catch::Contains("ZeRO-2 reduce-scatters") && Catch::Contains("use ZeRO stage 1"));
  }
  auto model = std::make_shared<Net>(9);
  parallel::DistributedDataParallel ddp(model, pg, compressed());
  parallel::DistributedOptimizer<optim::AdamW> opt(ddp, optim::AdamWOptions(0.01));
  std::vector<double> losses;
  for (int64_t s = 0; s < 30; ++s) {
    auto [x, y] = global_batch(0);
    opt.zero_grad();
    Tensor loss = cross_entropy(ddp.forward(shard(x, r, w)), shard(y, r, w));
    loss.backward();
    opt.step();
    losses.push_back(loss.item<double>());
    CHECK(ddp.last_step().bytes_sent < ddp.last_step().bytes_uncompressed * 6 / 10);
  }
  CHECK(losses.back() < 0.7 * losses.front());
  expect_ranks_agree(*model, *pg);
}

TEST_CASE("DistributedOptimizer: clear errors for what it cannot do", "[parallel]") {
  auto pg = world();
  int r = pg->rank(), w = pg->size();
  {
    auto model = std::make_shared<Net>(1);
    parallel::DistributedDataParallel ddp(model, pg);
    CHECK_THROWS_WITH((parallel::DistributedOptimizer<optim::SGD>(ddp, optim::SGDOptions(), parallel::ZeroOptions().stage(3))),
                      Catch::Contains("stage must be 1 or 2, got 3"));
    // Every parameter must be in a group.
    optim::NamedParams some = {{"fc1.weight", model->fc1->weight}};
    CHECK_THROWS_WITH((parallel::DistributedOptimizer<optim::SGD>(ddp, {optim::ParamGroup(some)}, optim::SGDOptions())),
                      Catch::Contains("'fc1.bias', 'fc2.weight', 'fc2.bias' are in no param group"));
    parallel::DistributedOptimizer<optim::SGD> opt(ddp, optim::SGDOptions());
    optim::SGD plain(model->named_parameters());
    CHECK_THROWS_WITH(ddp.attach(plain), Catch::Contains("a DistributedOptimizer shards this DDP"));
    CHECK_THROWS_WITH((parallel::DistributedOptimizer<optim::SGD>(ddp, optim::SGDOptions())),
                      Catch::Contains("sharded already"));
    // A state saved by another rank (or another world size) is refused, naming the way out.
    auto s = opt.state_dict();
    s["shard.rank"] = from_vector(std::vector<int64_t>{int64_t(r + 1)}, {});
    CHECK_THROWS_WITH(opt.load_state_dict(s), Catch::Contains("is the shard of rank " + std::to_string(r + 1)) &&
                                                  Catch::Contains("restore_resharded"));
    optim::SGD unsharded(model->named_parameters());
    CHECK_THROWS_WITH(unsharded.reshard_state_dict(1, [&](int) { return unsharded.state_dict(); }),
                      Catch::Contains("not sharded"));
  }
  auto model = std::make_shared<Net>(1);
  parallel::DistributedDataParallel ddp(model, pg);
  auto [x, y] = global_batch(0);
  cross_entropy(ddp.forward(shard(x, r, w)), shard(y, r, w)).backward();
  CHECK_THROWS_WITH((parallel::DistributedOptimizer<optim::SGD>(ddp, optim::SGDOptions())),
                    Catch::Contains("before the first training step"));
}

// Gradient accumulation: under no_sync the (ZeRO-2: transient) full buckets keep adding; the
// synchronized backward reduces the sum and only then is the full buffer let go.
TEST_CASE("ZeRO with no_sync accumulation equals one process on the bigger batch", "[parallel]") {
  auto pg = world();
  int r = pg->rank(), w = pg->size();
  for (int stage : {1, 2}) {
    INFO("ZeRO-" << stage);
    auto model = std::make_shared<Net>(3), ref = std::make_shared<Net>(3);
    parallel::DistributedDataParallel ddp(model, pg, small_buckets());
    auto o = optim::SGDOptions(0.05).momentum(0.9);
    parallel::DistributedOptimizer<optim::SGD> opt(ddp, o, parallel::ZeroOptions().stage(stage));
    optim::SGD opt_ref(ref->named_parameters(), o);
    for (int64_t s = 0; s < 3; ++s) {
      auto [x1, y1] = global_batch(2 * s);
      auto [x2, y2] = global_batch(2 * s + 1);
      opt.zero_grad();
      {
        auto guard = ddp.no_sync();
        cross_entropy(ddp.forward(shard(x1, r, w)), shard(y1, r, w)).backward();
      }
      cross_entropy(ddp.forward(shard(x2, r, w)), shard(y2, r, w)).backward();
      opt.step();
      opt_ref.zero_grad();
      cross_entropy(ref->forward(x1), y1).backward();
      cross_entropy(ref->forward(x2), y2).backward();
      opt_ref.step();
    }
    expect_same_params(*model, *ref, 1e-6);
    expect_ranks_agree(*model, *pg);
  }
}

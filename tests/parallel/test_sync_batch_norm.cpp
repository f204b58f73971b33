// SyncBatchNorm over the ranks against BatchNorm2d over the whole batch in one process: every
// rank also runs the unsynchronised layer on the global batch, which is what one process does.
#include <cstring>

#include "testing.h"

#include "fathom/comm/comm.h"
#include "fathom/nn/batch_norm.h"
#include "fathom/nn/conv.h"
#include "fathom/nn/resnet.h"
#include "fathom/parallel/ddp.h"
#include "fathom/parallel/sync_batch_norm.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

std::shared_ptr<comm::ProcessGroup> world() { return comm::init().world; }

// Rank r holds r + 1 images of the global batch (uneven, so the global count matters):
// images [r (r + 1) / 2, (r + 1) (r + 2) / 2).
Tensor my_rows(const Tensor& t, int rank) {
  return ops::contiguous(ops::narrow(t, 0, int64_t(rank) * (rank + 1) / 2, rank + 1));
}

void set_affine(const Tensor& w, const Tensor& b, Generator& g) {
  NoGradGuard no_grad;
  w.copy_(uniform(w.shape(), 0.5, 1.5, w.dtype(), &g));
  b.copy_(uniform(b.shape(), -0.5, 0.5, b.dtype(), &g));
}

}  // namespace

TEST_CASE("SyncBatchNorm equals BatchNorm2d over the whole batch: outputs, gradients, running stats", "[sync_bn]") {
  auto pg = world();
  const int r = pg->rank(), w = pg->size();
  const int64_t n = int64_t(w) * (w + 1) / 2, c = 3;
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    double rtol = dt == DType::f64 ? 1e-12 : 1e-5, atol = dt == DType::f64 ? 1e-12 : 1e-5;
    nn::BatchNorm2d ref{nn::BatchNorm2dOptions(c)};
    parallel::SyncBatchNorm sync(nn::BatchNorm2dOptions(c), pg);
    ref.to(dt);
    sync.to(dt);
    Generator g(5);
    set_affine(ref.weight, ref.bias, g);
    {
      NoGradGuard no_grad;
      sync.weight.copy_(ref.weight);
      sync.bias.copy_(ref.bias);
    }
    for (int step = 0; step < 3; ++step) {
      INFO("step " << step);
      // Channels offset by 20 (mean/std 10): a one-pass E[x^2] - E[x]^2 loses f32 digits here.
      Tensor xg = randn({n, c, 4, 5}, dt, &g) * 2.0 + 20.0;
      Tensor dy = randn({n, c, 4, 5}, dt, &g);
      Tensor x_ref = xg.detach().requires_grad_(true);
      Tensor y_ref = ref.forward(x_ref);
      y_ref.backward(dy);
      Tensor x = my_rows(xg, r).requires_grad_(true);
      sync.zero_grad();
      Tensor y = sync.forward(x);
      y.backward(my_rows(dy, r));
      expect_close(y, my_rows(y_ref, r), rtol, atol, "y");
      expect_close(x.grad(), my_rows(x_ref.grad(), r), rtol, atol, "grad x");
      // Each rank holds its share of the parameter gradients; their sum is the whole batch's.
      Tensor gw = ops::clone(sync.weight.grad()), gb = ops::clone(sync.bias.grad());
      pg->allreduce(gw)->wait();
      pg->allreduce(gb)->wait();
      expect_close(gw, ref.weight.grad(), rtol, atol, "grad weight");
      expect_close(gb, ref.bias.grad(), rtol, atol, "grad bias");
      ref.zero_grad();
      expect_close(sync.running_mean, ref.running_mean, rtol, atol, "running_mean");
      expect_close(sync.running_var, ref.running_var, rtol, atol, "running_var");
      CHECK(sync.num_batches_tracked.item<double>() == double(step + 1));
    }
    // Eval: the running statistics, no collective (a rank alone may call it).
    ref.eval();
    sync.eval();
    Tensor xe = randn({2, c, 3, 3}, dt, &g);
    expect_close(sync.forward(xe), ref.forward(xe), rtol, atol, "eval y");
  }
}

TEST_CASE("SyncBatchNorm: bad input is a clear error before any collective", "[sync_bn]") {
  auto pg = world();
  parallel::SyncBatchNorm sync(nn::BatchNorm2dOptions(3), pg);
  REQUIRE_THROWS_WITH(sync.forward(randn({2, 4, 3, 3})),
                      Catch::Contains("SyncBatchNorm") && Catch::Contains("num_features 3") &&
                          Catch::Contains("[2, 4, 3, 3]"));
  REQUIRE_THROWS_WITH(sync.forward(randn({2, 3, 3, 3}, DType::bf16)),
                      Catch::Contains("f32 and f64") && Catch::Contains("bf16"));
  REQUIRE_THROWS_WITH(parallel::SyncBatchNorm(nn::BatchNorm2dOptions(3), nullptr),
                      Catch::Contains("process group is null"));
}

TEST_CASE("convert_sync_batchnorm keeps names and tensors; with DDP it trains as one process on the whole batch", "[sync_bn]") {
  auto pg = world();
  const int r = pg->rank(), w = pg->size();
  auto make = [] {
    Generator g(11);
    auto m = std::make_shared<nn::Sequential>();
    m->push_back(std::make_shared<nn::Conv2d>(nn::Conv2dOptions(2, 4, 3).padding(1)));
    m->push_back(std::make_shared<nn::BatchNorm2d>(nn::BatchNorm2dOptions(4)));
    m->push_back(std::make_shared<nn::ReLU>());
    m->push_back(std::make_shared<nn::Flatten>());
    m->push_back(std::make_shared<nn::Linear>(nn::LinearOptions(4 * 5 * 5, 3), &g));
    NoGradGuard no_grad;
    Generator gc(12);
    for (auto& [n, p] : m->named_parameters()) p.copy_(randn(p.shape(), p.dtype(), &gc) * 0.3);
    return m;
  };
  auto ref = make();
  auto model = make();
  auto before = model->state_dict();
  Tensor bn_weight = model->named_parameters()[2].second;
  auto converted = parallel::convert_sync_batchnorm(model, pg);
  CHECK(converted == model);
  CHECK((*model)[1]->type_name() == "SyncBatchNorm");
  auto after = model->state_dict();
  REQUIRE(after.size() == before.size());
  for (const auto& [k, t] : before) {
    INFO(k);
    REQUIRE(after.count(k));
    CHECK(after.at(k).data_ptr() == t.data_ptr());  // the same tensors, not copies
  }
  CHECK(model->named_parameters()[2].second.is_same(bn_weight));

  parallel::DistributedDataParallel ddp(model, pg);
  optim::SGD opt(model->named_parameters(), optim::SGDOptions(0.1));
  optim::SGD opt_ref(ref->named_parameters(), optim::SGDOptions(0.1));
  const int64_t per_rank = 2, n = per_rank * w;
  for (int step = 0; step < 3; ++step) {
    INFO("step " << step);
    Generator g(100 + uint64_t(step));
    Tensor x = randn({n, 2, 5, 5}, kFloat32, &g) + 3.0;
    Tensor y = ops::to(uniform({n}, 0, 3, kFloat32, &g), kInt64);
    opt_ref.zero_grad();
    Tensor loss_ref = cross_entropy(ref->forward(x), y);  // mean over the global batch
    loss_ref.backward();
    opt_ref.step();
    opt.zero_grad();
    Tensor xs = ops::contiguous(ops::narrow(x, 0, r * per_rank, per_rank));
    Tensor ys = ops::contiguous(ops::narrow(y, 0, r * per_rank, per_rank));
    Tensor loss = cross_entropy(ddp.forward(xs), ys);  // the local mean; DDP averages
    loss.backward();
    opt.step();
    auto pa = model->named_parameters(), pb = ref->named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
      INFO(pa[i].first);
      expect_close(pa[i].second, pb[i].second, 1e-5, 1e-6, pa[i].first);
    }
    auto ba = model->named_buffers(), bb = ref->named_buffers();
    for (size_t i = 0; i < ba.size(); ++i) expect_close(ba[i].second, bb[i].second, 1e-5, 1e-6, ba[i].first);
  }
}

TEST_CASE("convert_sync_batchnorm on resnet18: every BatchNorm2d becomes a SyncBatchNorm, keys unchanged", "[sync_bn]") {
  auto pg = world();
  auto model = nn::resnet18(nn::ResNetOptions().num_classes(4));
  auto keys = [&] {
    std::vector<std::string> out;
    for (const auto& [k, t] : model->state_dict()) out.push_back(k);
    return out;
  };
  auto before = keys();
  parallel::convert_sync_batchnorm(model, pg);
  CHECK(keys() == before);
  int sync = 0, plain = 0;
  for (auto& [name, m] : model->named_modules()) {
    sync += m->type_name() == "SyncBatchNorm";
    plain += m->type_name() == "BatchNorm2d";
  }
  CHECK(sync == 20);
  CHECK(plain == 0);
  // The blocks call their norms through their members: those were swapped too.
  CHECK(model->bn1->type_name() == "SyncBatchNorm");
  CHECK(model->layer1->at<nn::BasicBlock>(0)->bn2->type_name() == "SyncBatchNorm");
  CHECK(model->layer2->at<nn::BasicBlock>(0)->downsample->at<parallel::SyncBatchNorm>(1) != nullptr);
}

TEST_CASE("convert_sync_batchnorm refuses a parent that cannot swap its children", "[sync_bn]") {
  class Holder : public nn::Module {
   public:
    Holder() : Module("Holder") { bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(nn::BatchNorm2dOptions(2))); }
    std::shared_ptr<nn::BatchNorm2d> bn;
  };
  auto pg = world();
  auto outer = std::make_shared<nn::Sequential>();
  outer->push_back(std::make_shared<Holder>());
  REQUIRE_THROWS_WITH(parallel::convert_sync_batchnorm(outer, pg),
                      Catch::Contains("'0.bn'") && Catch::Contains("override replace_module"));
}

TEST_CASE("DDP broadcast_buffers: each synchronizing forward starts from rank 0's running stats", "[sync_bn]") {
  auto pg = world();
  const int r = pg->rank(), w = pg->size();
  auto make = [] {
    auto m = std::make_shared<nn::Sequential>();
    m->push_back(std::make_shared<nn::Conv2d>(nn::Conv2dOptions(2, 3, 3).padding(1)));
    m->push_back(std::make_shared<nn::BatchNorm2d>(nn::BatchNorm2dOptions(3)));
    m->push_back(std::make_shared<nn::Flatten>());
    return m;
  };
  // Rank 0's buffers, as every rank sees them.
  auto rank0_buffers = [&](nn::Module& m) {
    std::vector<Tensor> out;
    for (auto& [name, b] : m.named_buffers()) {
      Tensor t = ops::clone(b);
      pg->broadcast(t, 0)->wait();
      out.push_back(t);
    }
    return out;
  };
  auto equal_to = [](nn::Module& m, const std::vector<Tensor>& want) {
    auto bufs = m.named_buffers();
    bool same = true;
    for (size_t i = 0; i < bufs.size(); ++i) {
      Tensor a = ops::contiguous(bufs[i].second), b = ops::contiguous(want[i]);
      same = same && a.nbytes() == b.nbytes() &&
             std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0;
    }
    return same;
  };
  // Each rank's own batch, so its running statistics move its own way.
  auto batch = [&](int step) {
    Generator g(200 + uint64_t(step) * 10 + uint64_t(r));
    return randn({2, 2, 4, 4}, kFloat32, &g) * double(r + 1) + double(r);
  };
  for (bool on : {true, false}) {
    INFO("broadcast_buffers " << on);
    auto model = make();
    parallel::DistributedDataParallel ddp(model, pg, parallel::DDPOptions().broadcast_buffers(on));
    for (int step = 0; step < 3; ++step) {
      const std::vector<Tensor> before = rank0_buffers(*model);
      const bool mine_were_rank0s = equal_to(*model, before);
      ddp.prepare_forward();
      // On: every rank now holds rank 0's statistics. Off: a rank other than 0 keeps its own,
      // which its different batches made different after the first step.
      if (on || r == 0 || step == 0) CHECK(equal_to(*model, before));
      else CHECK_FALSE(equal_to(*model, before));
      if (step == 0) CHECK(mine_were_rank0s);  // the constructor broadcast them
      Tensor loss = fathom::sum(model->forward(batch(step)));
      loss.backward();
    }
    if (w > 1 && r > 0) {
      // Without grad (evaluation) and under no_sync nothing is broadcast: rank 0's statistics
      // differ from this rank's after its own training forward.
      const std::vector<Tensor> before = rank0_buffers(*model);
      {
        NoGradGuard no_grad;
        ddp.prepare_forward();
      }
      CHECK(equal_to(*model, before) == false);
      {
        auto guard = ddp.no_sync();
        ddp.prepare_forward();
      }
      CHECK(equal_to(*model, before) == false);
    } else if (w > 1) {
      (void)rank0_buffers(*model);  // rank 0 takes part in the collective
    }
  }
}

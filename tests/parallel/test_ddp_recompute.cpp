// DDP over a GPT with activation recomputation: the rerun during backward fires no
// gradient-ready hook of its own (DDP refuses a gradient that arrives twice), and DDP sees the
// gradients it sees without recomputation, so training ends bitwise where the plain run does.
#include "testing.h"

#include "fathom/comm/comm.h"
#include "fathom/optim/optimizer.h"
#include "fathom/parallel/ddp.h"

using namespace fathom;

namespace {

std::vector<std::vector<double>> train(nn::Recompute mode) {
  auto pg = comm::init().world;
  int rank = pg->rank();
  nn::GPTConfig c;
  c.vocab_size = 17;
  c.block_size = 8;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.dropout = 0.1;
  c.recompute = mode;
  Generator init(3);
  auto model = std::make_shared<nn::GPT>(c, &init);
  // Small buckets: several all-reduces, started from the hooks while backward runs.
  parallel::DistributedDataParallel ddp(
      model, pg, parallel::DDPOptions().bucket_cap_mb(0.002).first_bucket_cap_mb(0.002));
  optim::AdamW opt(model->named_parameters(), optim::AdamWOptions(1e-2));
  ddp.attach(opt);
  for (int step = 0; step < 3; ++step) {
    Generator data(100 + uint64_t(rank) * 10 + uint64_t(step));
    Tensor idx = ops::to(ops::to(uniform({2, 8}, 0, 17, kFloat32, &data), kInt64), Device::cpu());
    Tensor tgt = ops::to(ops::to(uniform({2, 8}, 0, 17, kFloat32, &data), kInt64), Device::cpu());
    manual_seed(7 + uint64_t(rank) * 1000 + uint64_t(step));  // dropout's masks, per rank and step
    opt.zero_grad();
    cross_entropy(ddp.forward(idx), tgt).backward();
    opt.step();
  }
  std::vector<std::vector<double>> out;
  for (const Tensor& p : model->parameters()) out.push_back(to_vector(p));
  return out;
}

}  // namespace

TEST_CASE("DDP with recomputed GPT blocks ends bitwise where the plain model does", "[parallel]") {
  auto plain = train(nn::Recompute::none);
  for (nn::Recompute mode : {nn::Recompute::selective, nn::Recompute::full}) {
    INFO(nn::recompute_name(mode));
    auto got = train(mode);
    REQUIRE(got.size() == plain.size());
    for (size_t i = 0; i < got.size(); ++i) {
      INFO("parameter " << i);
      CHECK(got[i] == plain[i]);
    }
  }
}

// The tensor-parallel GPT against the one-process nn::GPT: every rank also trains the dense
// model on the whole batch, which is what one process would do. Same init for any tp, same
// losses, gradients, clipped norms and final weights, with DDP over the dp axis.
#include "testing.h"

#include "fathom/comm/comm.h"
#include "fathom/optim/clip.h"
#include "fathom/optim/grad_scaler.h"
#include "fathom/optim/optimizer.h"
#include "fathom/parallel/ddp.h"
#include "fathom/parallel/grad_norm.h"
#include "fathom/parallel/mesh.h"
#include "fathom/parallel/tp_gpt.h"

using namespace fathom;
using namespace fathom::testing;
using Catch::Matchers::Contains;

namespace {

nn::GPTConfig small_config() {
  nn::GPTConfig c;
  c.vocab_size = 64;
  c.block_size = 8;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 32;
  return c;
}

// The global batch of step s: idx and targets [4, 8], the same on every rank.
std::pair<Tensor, Tensor> batch(int64_t s) {
  Generator g(500 + uint64_t(s));
  Tensor idx = ops::to(uniform({4, 8}, 0, 64, kFloat32, &g), kInt64);
  Tensor tg = ops::to(uniform({4, 8}, 0, 64, kFloat32, &g), kInt64);
  return {idx, tg};
}

Tensor rows(const Tensor& t, int part, int parts) {
  int64_t n = t.size(0) / parts;
  return ops::contiguous(ops::narrow(t, 0, part * n, n));
}

std::vector<Tensor> grads(nn::Module& m) {
  std::vector<Tensor> out;
  for (auto& [n, p] : m.named_parameters()) out.push_back(p.grad());
  return out;
}

void expect_matches(const nn::StateDict& got, const nn::Module& ref, bool use_grads,
                    double rtol, double atol) {
  for (auto& [name, p] : ref.named_parameters()) {
    auto it = got.find(name);
    if (it == got.end()) continue;  // another stage's
    INFO(name);
    expect_close(it->second, use_grads ? p.grad() : p, rtol, atol, name);
  }
}

// Replicated gradients are bitwise the same on every tp rank (tp_gpt.h says why).
void expect_replicated_identical(parallel::TPGPT& model, comm::ProcessGroup& tp) {
  for (const Tensor& p : model.replicated_parameters()) {
    Tensor g = ops::contiguous(p.grad()).view({-1});
    Tensor all = empty({tp.size(), g.numel()}, g.options());
    tp.allgather(all, g)->wait();
    for (int r = 0; r < tp.size(); ++r) expect_close(ops::select(all, 0, r), g, 0, 0, "replicated grad");
  }
}

struct MeshCase {
  std::shared_ptr<comm::ProcessGroup> base;  // the mesh's "world": the world or half of it
  int dp, tp;
};

std::vector<MeshCase> mesh_cases() {
  auto world = comm::init().world;
  int w = world->size();
  std::vector<MeshCase> out;
  if (w < 4 || w % 4) {
    out.push_back({world, 1, w});
    out.push_back({world, w, 1});
  } else {
    // tp=2 alone on each half of the world, then dp=2 x tp=2 and tp=4 on all of it.
    auto half = world->split(world->rank() / (w / 2), world->rank(), "half");
    out.push_back({half, w / 4, 2});
    out.push_back({world, w / 2, 2});
    out.push_back({world, 1, w});
  }
  return out;
}

}  // namespace

TEST_CASE("TPGPT trains as the one-process GPT for every (dp, tp) mesh, clipped, under DDP", "[parallel][tp][gpt]") {
  nn::GPTConfig cfg = small_config();
  for (const MeshCase& mc : mesh_cases())
    for (DType dt : {DType::f64, DType::f32}) {
    parallel::Mesh mesh(*mc.base, mc.dp, 1, mc.tp);
    INFO(mesh.str() << " " << dtype_name(dt));
    double rtol = dt == DType::f64 ? 1e-10 : 1e-5;
    mesh.check_model(cfg);
    Generator g1(42), g2(42);
    auto ref = std::make_shared<nn::GPT>(cfg, &g1);
    auto model = std::make_shared<parallel::TPGPT>(cfg, mesh.tp_group(), parallel::TPGPTOptions(), &g2);

    // The dense model's names, in its order, and its weights exactly, whatever tp.
    auto names = [](const nn::Module& m) {
      std::vector<std::string> out;
      for (auto& [n, p] : m.named_parameters()) out.push_back(n);
      return out;
    };
    CHECK(names(*model) == names(*ref));
    expect_matches(model->full_state_dict(), *ref, false, 0, 0);
    CHECK(model->wte->weight.size(0) == cfg.vocab_size / mc.tp);
    CHECK(model->blocks[0]->attn->qkv->weight.size(0) == 3 * cfg.n_embd / mc.tp);

    model->to(dt);
    ref->to(dt);
    parallel::DistributedDataParallel ddp(model, mesh.dp_group(), parallel::DDPOptions().grad_dtype(dt));
    double lr = 1e-3;
    // grad_norm() over the mesh, for GradScaler's clipping (the examples' path).
    parallel::MeshOptimizer<optim::AdamW> opt(
        model->named_parameters(), optim::AdamWOptions(lr),
        {[](const std::string& n) { return parallel::TPGPT::shard_spec(n).sharded(); }, mesh.tp_group()});
    optim::AdamW opt_ref(ref->named_parameters(), optim::AdamWOptions(lr));
    optim::GradScaler scaler(optim::GradScalerOptions().enabled(false));
    optim::GradScaler scaler_ref(optim::GradScalerOptions().enabled(false));
    double max_norm = 0;
    for (int64_t s = 0; s < 5; ++s) {
      auto [idx, tg] = batch(s);
      opt.zero_grad();
      ddp.prepare_forward();
      Tensor loss = model->forward(rows(idx, mesh.dp_rank(), mc.dp), rows(tg, mesh.dp_rank(), mc.dp));
      loss.backward();
      opt_ref.zero_grad();
      Tensor loss_ref = ref->forward(idx, tg);
      loss_ref.backward();

      // Equal shards: the mean over dp of the shards' means is the batch's mean.
      Tensor l = ops::clone(loss.detach());
      mesh.dp_group()->allreduce(l, comm::ReduceOp::avg)->wait();
      INFO("step " << s);
      expect_close(l, loss_ref, rtol, 0, "loss");

      double ref_norm = optim::grad_norm(grads(*ref));
      if (s == 0) {
        max_norm = 0.5 * ref_norm;  // so clipping acts
        expect_matches(model->full_grads(), *ref, true, rtol, rtol * 1e-2);
        expect_replicated_identical(*model, *mesh.tp_group());
      }
      double norm = 0;
      if (dt == DType::f32) {  // clipped by GradScaler with MeshOptimizer's grad_norm()
        REQUIRE(scaler.step(opt, max_norm));
        REQUIRE(scaler_ref.step(opt_ref, max_norm));
        norm = scaler.last_grad_norm();
      } else {  // clipped by hand
        norm = parallel::clip_grad_norm_(parallel::grads_of(model->sharded_parameters()),
                                         parallel::grads_of(model->replicated_parameters()),
                                         max_norm, *mesh.tp_group());
        CHECK(opt.grad_norm() == Approx(norm * std::min(1.0, max_norm / (norm + 1e-6))).epsilon(rtol));
        optim::clip_grad_norm_(grads(*ref), max_norm);
        opt.step();
        opt_ref.step();
      }
      CHECK(norm == Approx(ref_norm).epsilon(rtol));
    }
    // AdamW divides by sqrt(v): a parameter whose exact gradient is ~0 moves by up to lr on
    // rounding noise alone (the key bias's is exactly 0: softmax ignores a shift of a row), so
    // in f32 one process and DDP alone differ by that much too. f64 shows the runs agree.
    expect_matches(model->full_state_dict(), *ref, false, rtol, dt == DType::f64 ? 1e-12 : 0.1 * lr);
  }
}

TEST_CASE("TPGPT as two pipeline stages in one process equals the dense GPT", "[parallel][tp][gpt]") {
  auto world = comm::init().world;
  parallel::Mesh mesh(*world, 1, 1, world->size());
  nn::GPTConfig cfg = small_config();
  Generator g0(42), g1(42), g2(42);
  auto ref = std::make_shared<nn::GPT>(cfg, &g0);
  auto first = std::make_shared<parallel::TPGPT>(cfg, mesh.tp_group(), parallel::TPGPTOptions::stage(cfg, 0, 2), &g1);
  auto last = std::make_shared<parallel::TPGPT>(cfg, mesh.tp_group(), parallel::TPGPTOptions::stage(cfg, 1, 2), &g2);
  auto keys = [](const nn::StateDict& d) {
    std::vector<std::string> out;
    for (auto& [k, v] : d) out.push_back(k);
    return out;
  };
  nn::StateDict a = first->full_state_dict(), b = last->full_state_dict();
  CHECK(a.count("blocks.0.attn.qkv.weight") == 1);
  CHECK(a.count("blocks.1.attn.qkv.weight") == 0);
  CHECK(b.count("blocks.1.mlp.proj.bias") == 1);
  CHECK((b.count("ln_f.weight") == 1 && a.count("ln_f.weight") == 0 && b.count("wpe.weight") == 0));
  CHECK(keys(a).size() + keys(b).size() == ref->named_parameters().size() + 1);  // wte twice

  auto [idx, tg] = batch(0);
  Tensor hidden = first->forward(idx);
  CHECK(hidden.shape() == Shape{4, 8, cfg.n_embd});
  Tensor loss = last->forward(hidden, tg);
  Tensor loss_ref = ref->forward(idx, tg);
  expect_close(loss, loss_ref, 1e-5, 0, "loss");
  loss.backward();
  loss_ref.backward();
  nn::StateDict ga = first->full_grads(), gb = last->full_grads();
  // The tied weight's two copies each hold part of its gradient: the embedding's on the first
  // stage, the logits' on the last. A pipeline sums them (Megatron's embedding group).
  Tensor wte = ga.at("wte.weight") + gb.at("wte.weight");
  expect_close(wte, ref->wte->weight.grad(), 1e-5, 1e-7, "wte.grad");
  ga.erase("wte.weight");
  gb.erase("wte.weight");
  expect_matches(ga, *ref, true, 1e-5, 1e-7);
  expect_matches(gb, *ref, true, 1e-5, 1e-7);
  CHECK_THROWS_WITH(first->forward(hidden, tg), Contains("has no head"));
  CHECK_THROWS_WITH(last->embed(idx), Contains("has no embedding"));
}

TEST_CASE("TPGPT with activation recomputation has the dense GPT's gradients", "[parallel][tp][gpt]") {
  auto world = comm::init().world;
  parallel::Mesh mesh(*world, 1, 1, world->size());
  for (nn::Recompute rc : {nn::Recompute::selective, nn::Recompute::full}) {
    INFO(nn::recompute_name(rc));
    nn::GPTConfig cfg = small_config();
    Generator g0(7), g1(7);
    auto ref = std::make_shared<nn::GPT>(cfg, &g0);
    cfg.recompute = rc;
    auto model = std::make_shared<parallel::TPGPT>(cfg, mesh.tp_group(), parallel::TPGPTOptions(), &g1);
    auto [idx, tg] = batch(3);
    Tensor loss = model->forward(idx, tg), loss_ref = ref->forward(idx, tg);
    expect_close(loss, loss_ref, 1e-5, 0, "loss");
    loss.backward();
    loss_ref.backward();
    expect_matches(model->full_grads(), *ref, true, 1e-5, 1e-7);
  }
}

TEST_CASE("TPGPT refuses what it does not support, naming it", "[parallel][tp][gpt]") {
  auto world = comm::init().world;
  parallel::Mesh mesh(*world, 1, 1, world->size());
  nn::GPTConfig cfg = small_config();
  cfg.dropout = 0.1;
  CHECK_THROWS_WITH(parallel::TPGPT(cfg, mesh.tp_group()), Contains("dropout 0.1 is not supported"));
  cfg = small_config();
  cfg.n_head = 1;
  CHECK_THROWS_WITH(parallel::TPGPT(cfg, mesh.tp_group()), Contains("n_head 1 is not divisible by tp"));
  cfg = small_config();
  CHECK_THROWS_WITH(parallel::TPGPT(cfg, mesh.tp_group(), parallel::TPGPTOptions().layer_begin(1).layer_end(3)),
                    Contains("layers [1, 3)"));
  parallel::TPGPT model(cfg, mesh.tp_group());
  nn::StateDict bad;
  CHECK_THROWS_WITH(model.load_full_state_dict(bad), Contains("missing wte.weight"));
}

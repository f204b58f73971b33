// parallel::GPT3D against one process: five AdamW steps of a small GPT, clipped by the global
// norm and with loss scaling on, over every (dp, tp, pp) mesh that fits the world (all eight
// with 8 ranks: parallel_tests_np8) give the one-process nn::GPT's losses, norms and final
// parameters, in f32 and f64; every schedule gives GPipe's; bad meshes are clear errors.
#include "testing.h"

#include "fathom/comm/comm.h"
#include "fathom/optim/grad_scaler.h"
#include "fathom/optim/optimizer.h"
#include "fathom/parallel/gpt_3d.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

constexpr uint64_t kSeed = 5;
constexpr int kSteps = 5, kMicro = 2;
constexpr int64_t kRows = 8, kT = 8;  // the global batch: 8 sequences of 8 tokens
// Small enough that most steps clip: the clip coefficient depends on the mesh-wide norm.
constexpr double kMaxNorm = 0.5;

nn::GPTConfig small_config() {
  nn::GPTConfig c;
  c.vocab_size = 32, c.block_size = kT, c.n_layer = 4, c.n_head = 2, c.n_embd = 16;
  return c;
}

std::pair<Tensor, Tensor> batch(int s) {
  Generator g(700 + uint64_t(s));
  Tensor idx = ops::to(uniform({kRows, kT}, 0, 32, kFloat32, &g), kInt64);
  Tensor tgt = ops::to(uniform({kRows, kT}, 0, 32, kFloat32, &g), kInt64);
  return {idx, tgt};
}

struct Run {
  std::vector<double> losses, norms;
  nn::StateDict params;  // dense; on the mesh's rank 0 only for GPT3D
};

optim::AdamWOptions adamw() { return optim::AdamWOptions(1e-2).eps(1e-6); }
// Exact in binary (a power of two), so the scaled run rounds as the unscaled one would.
optim::GradScaler scaler() { return optim::GradScaler(optim::GradScalerOptions().init_scale(1024)); }

Run train_reference(DType dt) {
  Generator gen(kSeed);
  auto model = std::make_shared<nn::GPT>(small_config(), &gen);
  model->to(dt);
  optim::AdamW opt(model->named_parameters(), adamw());
  optim::GradScaler sc = scaler();
  Run ref;
  for (int s = 0; s < kSteps; ++s) {
    auto [idx, tgt] = batch(s);
    opt.zero_grad();
    Tensor loss = model->forward(idx, tgt);
    sc.scale(loss).backward();
    REQUIRE(sc.step(opt, kMaxNorm));
    ref.losses.push_back(to_vector(loss)[0]);
    ref.norms.push_back(sc.last_grad_norm());
  }
  ref.params = model->state_dict();
  return ref;
}

Run train_3d(const parallel::Mesh& mesh, parallel::ScheduleKind kind, int v, DType dt) {
  int64_t b = kRows / (mesh.dp() * kMicro);
  parallel::GPT3D model(small_config(), mesh,
                        parallel::GPT3DOptions().schedule(kind).microbatches(kMicro)
                            .virtual_stages(v).microbatch_size(b).seq_len(kT).dtype(dt)
                            .ddp(parallel::DDPOptions().grad_dtype(dt)),  // f64 buckets for f64
                        Generator(kSeed));
  parallel::MeshOptimizer<optim::AdamW> opt(model.named_parameters(), adamw(), model.mesh_norm());
  optim::GradScaler sc = scaler();
  Run run;
  for (int s = 0; s < kSteps; ++s) {
    auto [idx, tgt] = batch(s);
    std::vector<Tensor> in, out;
    for (int i = 0; i < kMicro; ++i) {
      int64_t first = (mesh.dp_rank() * kMicro + i) * b;
      in.push_back(ops::contiguous(ops::narrow(idx, 0, first, b)));
      out.push_back(ops::contiguous(ops::narrow(tgt, 0, first, b)));
    }
    opt.zero_grad();
    run.losses.push_back(model.forward_backward(in, out, sc.get_scale()));
    REQUIRE(sc.step(opt, kMaxNorm));
    run.norms.push_back(sc.last_grad_norm());
  }
  // The last stage's copy of wte is bitwise the first stage's.
  int p = mesh.pp(), r = mesh.pp_rank();
  if (p > 1 && (r == 0 || r == p - 1)) {
    Tensor mine = (r == 0 ? model.chunks.front() : model.chunks.back())->wte->weight;
    Tensor theirs = empty(mine.shape(), mine.options());
    int peer = r == 0 ? p - 1 : 0;
    comm::wait_all({mesh.pp_group()->send(ops::contiguous(mine.detach()), peer, 7),
                    mesh.pp_group()->recv(theirs, peer, 7)});
    CHECK(to_vector(mine) == to_vector(theirs));
  }
  run.params = model.full_state_dict_on_root();
  return run;
}

// f32 parameters get an absolute tolerance: every mesh sums the gradients in another order (m
// micro-batches, tp's split sums, dp's halves averaged), and AdamW divides a gradient by its
// own running magnitude, so where a gradient is near eps or cancels (the key third of qkv.bias
// has an exactly zero true gradient: softmax is shift-invariant per query) an absolute rounding
// of the gradient becomes lr * rounding / (|g| + eps) of the parameter, seen here up to 3e-6
// (lr 1e-2) even for dp = tp = pp = 1 with two micro-batches. The same runs in f64 agree to
// 1e-10 everywhere, so the difference is rounding, not a wrong gradient.
void expect_same(const Run& got, const Run& want, double rtol, double atol, bool root) {
  for (size_t s = 0; s < want.losses.size(); ++s) {
    CHECK(got.losses[s] == Approx(want.losses[s]).epsilon(rtol));
    CHECK(got.norms[s] == Approx(want.norms[s]).epsilon(rtol));
  }
  if (!root) return;
  REQUIRE(got.params.size() == want.params.size());
  for (auto& [name, t] : want.params) {
    REQUIRE(got.params.count(name));
    expect_close(got.params.at(name), t, rtol, atol, name);
  }
}

struct Shape3 {
  int dp, tp, pp;
};
const std::vector<Shape3> kMeshes = {{1, 1, 1}, {2, 1, 1}, {1, 2, 1}, {1, 1, 2},
                                     {2, 2, 1}, {2, 1, 2}, {1, 2, 2}, {2, 2, 2}};

// The first dp * tp * pp ranks of the world as their own world (collective over the world).
std::shared_ptr<comm::ProcessGroup> first_ranks(comm::ProcessGroup& world, int n) {
  return world.split(world.rank() < n ? 0 : 1, world.rank(), "first" + std::to_string(n));
}

}  // namespace

TEST_CASE("gpt 3d: every (dp, tp, pp) mesh trains as one process", "[3d][mpi]") {
  auto world = comm::init().world;
  for (DType dt : {kFloat32, kFloat64}) {
    Run ref = train_reference(dt);
    for (Shape3 m : kMeshes) {
      int n = m.dp * m.tp * m.pp;
      if (n > world->size()) {
        WARN("mesh dp=" << m.dp << " tp=" << m.tp << " pp=" << m.pp << " needs " << n
                        << " ranks; skipped with " << world->size());
        continue;
      }
      auto sub = first_ranks(*world, n);
      if (world->rank() >= n) continue;
      parallel::Mesh mesh(*sub, m.dp, m.pp, m.tp);
      INFO(mesh.str() << " " << dtype_name(dt));
      Run got = train_3d(mesh, parallel::ScheduleKind::one_f_one_b, 1, dt);
      if (dt == kFloat32) expect_same(got, ref, 1e-5, 1e-5, mesh.world_rank() == 0);
      else expect_same(got, ref, 1e-10, 1e-10, mesh.world_rank() == 0);
    }
  }
}

TEST_CASE("gpt 3d: every schedule equals GPipe", "[3d][mpi]") {
  auto world = comm::init().world;
  for (Shape3 m : {Shape3{1, 1, 2}, Shape3{2, 2, 2}}) {
    int n = m.dp * m.tp * m.pp;
    if (n > world->size()) continue;
    auto sub = first_ranks(*world, n);
    if (world->rank() >= n) continue;
    parallel::Mesh mesh(*sub, m.dp, m.pp, m.tp);
    Run gpipe = train_3d(mesh, parallel::ScheduleKind::gpipe, 1, kFloat32);
    for (parallel::ScheduleKind kind : parallel::all_schedules()) {
      if (kind == parallel::ScheduleKind::gpipe) continue;
      INFO(mesh.str() << " " << parallel::schedule_name(kind));
      int v = kind == parallel::ScheduleKind::interleaved_1f1b ? 2 : 1;
      // Only the order of the micro-batches' gradient sums differs from GPipe's.
      expect_same(train_3d(mesh, kind, v, kFloat32), gpipe, 1e-5, 1e-5, mesh.world_rank() == 0);
    }
  }
}

TEST_CASE("gpt 3d: bad meshes and splits are errors", "[3d][mpi]") {
  auto world = comm::init().world;
  int n = world->size();
  CHECK_THROWS_WITH(parallel::Mesh(*world, n + 1, 1, 1), Catch::Contains(std::to_string(n)));
  auto alone = world->split(world->rank(), 0, "alone");
  parallel::Mesh one(*alone, 1, 1, 1);
  nn::GPTConfig c = small_config();
  CHECK_THROWS_WITH(parallel::GPT3D(c, one, parallel::GPT3DOptions().virtual_stages(2), Generator(0)),
                    Catch::Contains("virtual_stages 2 with pp = 1"));
  c.n_layer = 3;
  if (n >= 2) {
    auto two = first_ranks(*world, 2);
    if (world->rank() < 2) {
      parallel::Mesh pp2(*two, 1, 2, 1);
      CHECK_THROWS_WITH(parallel::GPT3D(c, pp2, parallel::GPT3DOptions(), Generator(0)),
                        Catch::Contains("n_layer 3 is not a multiple of pp * virtual_stages = 2 * 1"));
      nn::GPTConfig heads = small_config();
      heads.n_head = 1;
      parallel::Mesh tp2(*two, 1, 1, 2);
      CHECK_THROWS_WITH(parallel::GPT3D(heads, tp2, parallel::GPT3DOptions(), Generator(0)),
                        Catch::Contains("n_head"));
    }
  }
}

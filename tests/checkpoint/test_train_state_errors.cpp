// collect/restore without DDP, in one process (no MPI): the keys of each part, exact round trips
// of 64-bit generator states, and the errors for a state that does not fit, after which nothing
// has changed.
#include "testing.h"

#include "fathom/checkpoint/train_state.h"

using namespace fathom;

namespace {

struct Parts {
  Parts(int64_t global_batch = 8) {
    Generator g(1);
    model = std::make_shared<nn::Linear>(nn::LinearOptions(3, 2), &g);
    opt = std::make_unique<optim::SGD>(model->named_parameters(), optim::SGDOptions(0.1).momentum(0.9));
    sched = std::make_unique<optim::StepLR>(*opt, 2);
    Tensor x = randn({32, 3}, kFloat32, &g);
    loader = std::make_unique<data::DataLoader>(
        std::make_shared<data::TensorDataset>(x, arange(32)), data::DataLoaderOptions(global_batch).prefetch(0));
    ts.model = model.get();
    ts.optimizer = opt.get();
    ts.scaler = &scaler;
    ts.scheduler = sched.get();
    ts.loader = loader.get();
    ts.generators = {{"noise", &noise}};
  }
  void step() {
    data::Batch b = loader->next();
    opt->zero_grad();
    Tensor y = model->forward(b.data + randn(b.data.shape(), kFloat32, &noise));
    sum(y * y).backward();
    scaler.step(*opt);
    sched->step();
  }
  std::shared_ptr<nn::Linear> model;
  std::unique_ptr<optim::SGD> opt;
  std::unique_ptr<optim::StepLR> sched;
  optim::GradScaler scaler{optim::GradScalerOptions().enabled(false)};
  std::unique_ptr<data::DataLoader> loader;
  Generator noise{0xFEDCBA9876543210ull, 0x8000000000000001ull};  // all 64 bits in use
  checkpoint::TrainState ts;
};

nn::StateDict owned(const nn::StateDict& d) {
  nn::StateDict out;
  for (const auto& [k, t] : d) out[k] = ops::clone(t);
  return out;
}

}  // namespace

TEST_CASE("collect names every part's keys; restore brings them back exactly", "[checkpoint]") {
  Parts a;
  for (int i = 0; i < 3; ++i) a.step();
  checkpoint::RankState s = checkpoint::collect(a.ts);
  for (const char* k : {"model.weight", "model.bias", "optim.step", "optim.weight.exp_avg",
                        "optim.param_groups.0.options", "scaler.scale", "sched.step", "loader.epoch",
                        "loader.batch", "loader.global_batch", "loader.samples", "loader.seed"})
    CHECK(s.replicated.count(k));
  CHECK(s.per_rank.size() == 3);
  Parts b;
  s.replicated = owned(s.replicated);
  checkpoint::restore(b.ts, s.replicated, s.per_rank);
  CHECK(b.noise.state().seed == a.noise.state().seed);      // 64 bits, not through a double
  CHECK(b.noise.state().stream == a.noise.state().stream);
  CHECK(b.noise.state().offset == a.noise.state().offset);
  CHECK(b.loader->position() == a.loader->position());
  CHECK(b.sched->last_step() == 3);
  CHECK(b.opt->param_groups()[0].lr() == a.opt->param_groups()[0].lr());
  a.step();
  b.step();
  CHECK(to_vector(b.model->weight) == to_vector(a.model->weight));
}

TEST_CASE("restore reports every part that does not fit and changes nothing", "[checkpoint]") {
  Parts a(16);
  a.step();
  checkpoint::RankState s = checkpoint::collect(a.ts);
  s.replicated = owned(s.replicated);
  Parts b;  // global batch 8, not 16
  s.replicated["sched.extra"] = from_vector(std::vector<double>{1}, {}, DType::f64);
  s.replicated["loose"] = zeros({1});
  s.per_rank.erase("rng.noise.stream");
  b.ts.generators["other"] = &b.noise;
  auto before = owned(checkpoint::collect(b.ts).replicated);
  CHECK_THROWS_WITH(checkpoint::restore(b.ts, s.replicated, s.per_rank),
                    Catch::Contains("nothing was changed") &&
                        Catch::Contains("loader: the state was saved with global batch 16, this loader has 8") &&
                        Catch::Contains("sched: StepLR: state has 2 entries besides 'step'") &&
                        Catch::Contains("(no part of a training loop): 'loose'") &&
                        Catch::Contains("generator 'noise': missing key 'rng.noise.stream'"));
  auto after = checkpoint::collect(b.ts).replicated;
  for (const auto& [k, t] : before) CHECK(to_vector(after.at(k)) == to_vector(t));

  // The model is checked (by Module::load_state_dict) once the other parts fit.
  Parts c;
  checkpoint::RankState t = checkpoint::collect(c.ts);
  t.replicated = owned(t.replicated);
  t.replicated["model.weight"] = zeros({5, 5});
  double lr = c.opt->param_groups()[0].lr();
  c.step();
  CHECK_THROWS_WITH(checkpoint::restore(c.ts, t.replicated, t.per_rank),
                    Catch::Contains("model: Linear::load_state_dict") && Catch::Contains("'weight': expected [2, 3]"));
  CHECK(c.sched->last_step() == 1);  // not put back to step 0
  CHECK(c.opt->param_groups()[0].lr() == lr);
}

TEST_CASE("TrainState names must be usable prefixes", "[checkpoint]") {
  Parts a;
  a.ts.generators["a.b"] = &a.noise;
  CHECK_THROWS_WITH(checkpoint::collect(a.ts), Catch::Contains("generator name 'a.b' must be non-empty and without dots"));
  Parts b;
  checkpoint::StateProvider p;
  p.name = "optim";
  p.save = [] { return nn::StateDict(); };
  p.check = p.load = [](const nn::StateDict&) {};
  b.ts.extras.push_back(p);
  CHECK_THROWS_WITH(checkpoint::collect(b.ts), Catch::Contains("extra state name 'optim' is taken"));
}

TEST_CASE("Extra state round-trips, replicated or per rank, and may be empty", "[checkpoint]") {
  int64_t counter = 7;
  bool empty_loaded = false;
  auto providers = [&](checkpoint::TrainState& ts) {
    checkpoint::StateProvider count;
    count.name = "counter";
    count.per_rank = false;
    count.save = [&] { return nn::StateDict{{"n", from_vector(std::vector<int64_t>{counter}, {})}}; };
    count.check = [](const nn::StateDict& s) {
      FATHOM_CHECK(s.size() == 1 && s.count("n"), "counter: expected one key 'n', got ", s.size());
    };
    count.load = [&](const nn::StateDict& s) { counter = s.at("n").item<int64_t>(); };
    checkpoint::StateProvider nothing;
    nothing.name = "nothing";
    nothing.save = [] { return nn::StateDict(); };
    nothing.check = [](const nn::StateDict& s) { FATHOM_CHECK(s.empty(), "nothing: expected no keys"); };
    nothing.load = [&](const nn::StateDict&) { empty_loaded = true; };
    ts.extras = {count, nothing};
  };
  Parts a;
  providers(a.ts);
  checkpoint::RankState s = checkpoint::collect(a.ts);
  CHECK(s.replicated.count("counter.n"));
  CHECK(s.per_rank.size() == 3);  // the generator's only
  s.replicated = owned(s.replicated);
  Parts b;
  providers(b.ts);
  counter = 0;
  checkpoint::restore(b.ts, s.replicated, s.per_rank);
  CHECK(counter == 7);
  CHECK(empty_loaded);
  s.replicated.erase("counter.n");
  CHECK_THROWS_WITH(checkpoint::restore(b.ts, s.replicated, s.per_rank),
                    Catch::Contains("counter: counter: expected one key 'n', got 0"));
}

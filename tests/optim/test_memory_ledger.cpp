// The memory ledger over a training step: parameters, gradients and optimizer state of a small
// model are exactly the formula's bytes (N parameters: f32 4N + 4N + 8N for AdamW; bf16 2N + 2N
// + 12N with the f32 master), activations live from the forward to the end of the backward, and
// a forward with grad mode off keeps none.
#include "testing.h"

using namespace fathom;
using memory::Category;

namespace {

int64_t current(Category c) { return memory::stats(DeviceType::CPU)[c].current; }

struct Ledger {
  int64_t params, grads, state, acts;
  static Ledger now() {
    return {current(Category::parameters), current(Category::gradients),
            current(Category::optimizer_state), current(Category::activations)};
  }
  Ledger operator-(const Ledger& o) const {
    return {params - o.params, grads - o.grads, state - o.state, acts - o.acts};
  }
};

std::shared_ptr<nn::Sequential> mlp(Generator& g) {
  return std::make_shared<nn::Sequential>(nn::Linear(8, 16, &g), nn::ReLU(), nn::Linear(16, 4, &g));
}

}  // namespace

TEST_CASE("memory ledger: model state bytes equal the formula, f32 and bf16", "[optim]") {
  for (DType dt : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dt));
    const int64_t N = 8 * 16 + 16 + 16 * 4 + 4, e = itemsize(dt);
    Ledger base = Ledger::now();
    Generator g(1);
    auto model = mlp(g);
    model->to(dt);
    REQUIRE(model->num_parameters() == N);
    Ledger d = Ledger::now() - base;
    CHECK(d.params == e * N);
    CHECK(d.grads == 0);
    CHECK(d.state == 0);
    CHECK(d.acts == 0);  // construction's temporaries are gone

    optim::AdamW opt(model->named_parameters(), optim::AdamWOptions(1e-3));
    Tensor x, y;
    {
      NoGradGuard data;  // the batch is no activation until a forward records it
      x = ops::to(uniform({5, 8}, -1, 1, kFloat32, &g), dt);
      y = from_vector(std::vector<int64_t>{0, 1, 2, 3, 0}, {5});
    }
    CHECK((Ledger::now() - base).acts == 0);
    Tensor loss = cross_entropy(model->forward(x).to(DType::f32), y);
    CHECK((Ledger::now() - base).acts > 0);  // the graph holds the forward's tensors
    loss.backward();
    d = Ledger::now() - base;
    CHECK(d.grads == e * N);  // gradients in the parameters' dtype
    opt.step();
    d = Ledger::now() - base;
    CHECK(d.params == e * N);
    CHECK(d.grads == e * N);
    // exp_avg and exp_avg_sq in f32, and an f32 master copy of each half-precision parameter.
    CHECK(d.state == (dt == DType::f32 ? 8 : 12) * N);
    opt.zero_grad();
    CHECK((Ledger::now() - base).grads == 0);
  }
}

TEST_CASE("memory ledger: activations live from forward to backward; none under no-grad", "[optim]") {
  Generator g(2);
  auto model = mlp(g);
  Tensor x = uniform({32, 8}, -1, 1, kFloat32, &g);
  int64_t a0 = current(Category::activations);
  {
    NoGradGuard off;
    Tensor out = model->forward(x);
    // The output itself is all that is left, and it is no activation: nothing records it.
    CHECK(current(Category::activations) == a0);
  }
  Tensor loss = sum(model->forward(x));
  // What backward needs: the first Linear's output (ReLU's input) and ReLU's output (the second
  // Linear's input), 32 x 16 floats each; the second Linear's output is gone (sum keeps none).
  CHECK(current(Category::activations) - a0 >= 4 * 32 * (16 + 16));
  loss.backward();
  loss = Tensor();
  CHECK(current(Category::activations) == a0);  // the graph freed, nothing kept
  model->zero_grad();
}

// The differentiable collectives of parallel/collective_ops.h.
#include "testing.h"

#include "fathom/comm/comm.h"
#include "fathom/parallel/collective_ops.h"

using namespace fathom;
using namespace fathom::testing;

TEST_CASE("all_reduce_sum: forward sums over the ranks, backward sums the ranks' gradients", "[collective_ops]") {
  auto pg = comm::init().world;
  const int r = pg->rank(), w = pg->size();
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    // Rank k holds x_k = (k + 1) * base; its loss is sum(y * c_k) with c_k = k + 2.
    Tensor base = from_vector(std::vector<double>{1.5, -2, 0.25, 4, -1, 3}, {2, 3}, dt);
    Tensor x = (base * double(r + 1)).detach().requires_grad_(true);
    Tensor y = parallel::all_reduce_sum(x, pg);
    double ranks_sum = double(w) * (w + 1) / 2;  // sum of (k + 1)
    expect_close(y, base * ranks_sum, 1e-12, 1e-12, "forward");
    expect_close(x, base * double(r + 1), 0, 0, "x is not written");
    Tensor loss = sum(y * double(r + 2));
    loss.backward();
    // d(sum_k loss_k)/dx_r = sum_k c_k: every rank's loss reads every x through y.
    double c_sum = ranks_sum + double(w);
    expect_close(x.grad(), full({2, 3}, c_sum, dt), 1e-12, 1e-12, "grad");
  }
  REQUIRE_THROWS_WITH(parallel::all_reduce_sum(ones({2}), nullptr), Catch::Contains("process group is null"));
}

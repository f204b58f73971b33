#include "fathom/autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "fathom/autograd/engine.h"
#include "fathom/autograd/grad_mode.h"
#include "fathom/core/ops/factory.h"

namespace fathom::autograd {

namespace {

double dot(const Tensor& out, const std::vector<double>& r) {
  std::vector<double> v = to_vector(out);
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * r[i];
  return s;
}

// Address of element `flat` (row-major over the shape) of a strided f64 tensor.
double* element(const Tensor& t, int64_t flat) {
  int64_t off = t.offset();
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    int64_t n = t.shape()[d];
    off += (flat % n) * t.strides()[d];
    flat /= n;
  }
  return static_cast<double*>(t.impl().storage->data()) + off;
}

}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, double eps, double atol,
                          double rtol, uint64_t seed) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    FATHOM_CHECK(x.is_leaf() && x.dtype() == DType::f64 && x.device().is_cpu(),
                 "gradcheck: input ", i, " ", x.desc(),
                 " must be an f64 CPU leaf (finite differences need f64)");
    for (int64_t d = 0; d < x.dim(); ++d)
      FATHOM_CHECK(x.strides()[d] != 0 || x.shape()[d] <= 1, "gradcheck: input ", i, " ",
                   x.desc(), " overlaps itself (stride 0); pass a materialised copy");
    Tensor(x).zero_grad();
  }

  // Analytic: one vector-Jacobian product with a fixed random r.
  Tensor out = f(inputs);
  FATHOM_CHECK(is_floating(out.dtype()), "gradcheck: f returned ", out.desc(),
               "; expected a floating-point tensor");
  Generator gen(seed);
  Tensor r = randn(out.shape(), {DType::f64, out.device()}, &gen);
  std::vector<double> rv = to_vector(r);
  if (out.requires_grad()) backward({out}, {r});

  std::ostringstream report;
  int bad = 0;
  double worst = 0;
  NoGradGuard no_grad;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor g = x.grad();
    std::vector<double> analytic = g.defined() ? to_vector(g) : std::vector<double>(x.numel(), 0.0);
    for (int64_t j = 0; j < x.numel(); ++j) {
      double* p = element(x, j);
      double v = *p;
      *p = v + eps;
      double hi = dot(f(inputs), rv);
      *p = v - eps;
      double lo = dot(f(inputs), rv);
      *p = v;
      double numeric = (hi - lo) / (2 * eps);
      double err = std::fabs(analytic[j] - numeric);
      worst = std::max(worst, err);
      if (!(err <= atol + rtol * std::fabs(numeric)) && bad++ < 8)
        report << "input " << i << " " << x.desc() << " element " << j << ": analytic "
               << analytic[j] << ", numeric " << numeric << "\n";
    }
  }
  GradcheckResult res;
  res.ok = bad == 0;
  if (!res.ok)
    res.message = "gradcheck: " + std::to_string(bad) + " mismatches (largest error " +
                  std::to_string(worst) + ")\n" + report.str();
  return res;
}

}  // namespace fathom::autograd

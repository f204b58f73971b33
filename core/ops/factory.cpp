#include "fathom/core/ops/factory.h"

#include <cmath>
#include <cstring>

#include "fathom/core/backend.h"
#include "fathom/core/ops/shape.h"

namespace fathom {

Tensor empty(const Shape& shape, TensorOptions opts) {
  // Checked before allocating: 2^22 x 2^21 x 2^21 bytes wraps to 0 unchecked.
  size_t nbytes = checked_nbytes(shape, itemsize(opts.dtype), "empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = allocate(nbytes, opts.device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = opts.dtype;
  return Tensor(std::move(impl));
}

Tensor full(const Shape& shape, double value, TensorOptions opts) {
  Tensor t = empty(shape, opts);
  ops::fill_(t, value);
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions opts) { return full(shape, 0.0, opts); }
Tensor ones(const Shape& shape, TensorOptions opts) { return full(shape, 1.0, opts); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.options()); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.options()); }

Tensor arange(int64_t end, TensorOptions opts) { return arange(0, double(end), 1, opts); }

Tensor arange(double start, double end, double step, TensorOptions opts) {
  FATHOM_CHECK(step != 0, "arange: step must be non-zero");
  FATHOM_CHECK(std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
               "arange: start, end and step must be finite, got ", start, ", ", end, ", ", step);
  // Converting a double beyond int64 to int64 is undefined: bound the count first (2^62 is far
  // above any allocatable size; empty() then refuses what does not fit in bytes).
  double count = std::ceil((end - start) / step);
  FATHOM_CHECK(count < 0x1p62, "arange: [", start, ", ", end, ") by ", step, " has ", count,
               " elements, too many to store");
  int64_t n = std::max<int64_t>(0, int64_t(count));
  // Filled in place (not through a std::vector) so the size check in empty() comes first.
  Tensor host = empty({n}, DType::f64);
  double* p = host.data<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = start + double(i) * step;
  return ops::to(ops::to(host, opts.dtype), opts.device);
}

static Tensor random_fill(const Shape& shape, TensorOptions opts, Generator* gen, bool normal_dist,
                          double a, double b) {
  FATHOM_CHECK(is_floating(opts.dtype), normal_dist ? "randn" : "rand",
               ": dtype must be floating point, got ", dtype_name(opts.dtype));
  Tensor t = empty(shape, opts);
  Generator& g = gen ? *gen : default_generator();
  PhiloxState s = g.reserve(uint64_t(t.numel()));
  if (normal_dist) FATHOM_DISPATCH(t.device(), normal, t, s, a, b);
  else FATHOM_DISPATCH(t.device(), uniform, t, s, a, b);
  return t;
}

Tensor rand(const Shape& shape, TensorOptions opts, Generator* gen) {
  return random_fill(shape, opts, gen, false, 0.0, 1.0);
}
Tensor randn(const Shape& shape, TensorOptions opts, Generator* gen) {
  return random_fill(shape, opts, gen, true, 0.0, 1.0);
}
Tensor uniform(const Shape& shape, double low, double high, TensorOptions opts, Generator* gen) {
  FATHOM_CHECK(low <= high, "uniform: low ", low, " > high ", high);
  return random_fill(shape, opts, gen, false, low, high);
}
Tensor normal(const Shape& shape, double mean, double std, TensorOptions opts, Generator* gen) {
  FATHOM_CHECK(std >= 0, "normal: std must be >= 0, got ", std);
  return random_fill(shape, opts, gen, true, mean, std);
}

Tensor from_vector(const std::vector<double>& values, const Shape& shape, TensorOptions opts) {
  FATHOM_CHECK(int64_t(values.size()) == numel_of(shape), "from_vector: ", values.size(),
               " values do not fill shape ", shape_str(shape));
  Tensor host = empty(shape, DType::f64);
  if (!values.empty()) std::memcpy(host.data_ptr(), values.data(), values.size() * sizeof(double));
  return ops::to(ops::to(host, opts.dtype), opts.device);
}

Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape, TensorOptions opts) {
  FATHOM_CHECK(int64_t(values.size()) == numel_of(shape), "from_vector: ", values.size(),
               " values do not fill shape ", shape_str(shape));
  Tensor host = empty(shape, DType::i64);
  if (!values.empty()) std::memcpy(host.data_ptr(), values.data(), values.size() * sizeof(int64_t));
  return ops::to(ops::to(host, opts.dtype), opts.device);
}

std::vector<double> to_vector(const Tensor& t) {
  Tensor h = ops::contiguous(ops::to(ops::to(t, Device::cpu()), DType::f64));
  const double* p = h.data<double>();
  return std::vector<double>(p, p + h.numel());
}

}  // namespace fathom

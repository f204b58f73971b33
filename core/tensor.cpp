#include "fathom/core/tensor.h"

#include <cmath>
#include <cstdio>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "fathom/core/checked.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom {

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Checked (core/checked.h): a wrapped product would be a small, wrong size that passes every
// later bounds check. Factories and views check with their own op name first, so this message
// is only seen for a shape built by hand.
int64_t numel_of(const Shape& s) { return checked_numel(s, "numel"); }

Shape contiguous_strides(const Shape& s) {
  checked_numel(s, "contiguous_strides");  // every partial product below then fits
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape().size(); i-- > 0;) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  return static_cast<char*>(impl().storage->data()) + offset() * int64_t(itemsize(dtype()));
}

int64_t Tensor::wrap_dim(int64_t d, const char* op) const {
  int64_t n = dim();
  FATHOM_CHECK((d >= -n && d < n) || (n == 0 && (d == 0 || d == -1)), op, ": dim ", d,
               " is out of range for a tensor of rank ", n, " (", desc(), ")");
  return d < 0 ? d + std::max<int64_t>(n, 1) : d;
}

std::string Tensor::desc() const {
  if (!defined()) return "(undefined tensor)";
  return shape_str(shape()) + " " + dtype_name(dtype()) + " " + device().str();
}

template <class T>
T Tensor::item() const {
  FATHOM_CHECK(numel() == 1, "item: expected a one-element tensor, got ", desc());
  return static_cast<T>(to_vector(*this)[0]);
}
template float Tensor::item<float>() const;
template double Tensor::item<double>() const;
template int64_t Tensor::item<int64_t>() const;
template int32_t Tensor::item<int32_t>() const;
template bool Tensor::item<bool>() const;

// Printed like PyTorch: nested brackets, 4 decimals for floats, "..." past 1000 elements.
std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> v = to_vector(*this);
  bool fp = is_floating(dtype());
  bool summarize = numel() > 1000;
  bool sci = false;
  for (double x : v)
    if (fp && std::isfinite(x) && x != 0 && (std::fabs(x) >= 1e8 || std::fabs(x) < 1e-4)) sci = true;
  auto fmt = [&](double x) {
    char buf[48];
    if (!fp) std::snprintf(buf, sizeof buf, "%lld", (long long)x);
    else if (sci) std::snprintf(buf, sizeof buf, "%.4e", x);
    else std::snprintf(buf, sizeof buf, "%.4f", x);
    return std::string(buf);
  };
  Shape st = contiguous_strides(shape());
  std::ostringstream os;
  os << "tensor(";
  // Recursive over dims; depth bounded by the rank.
  auto rec = [&](auto&& self, int64_t d, int64_t base) -> void {
    if (d == dim()) { os << fmt(v[base]); return; }
    os << "[";
    int64_t n = shape()[d];
    for (int64_t i = 0; i < n; ++i) {
      if (summarize && n > 6 && i == 3) {
        os << "...";
        i = n - 4;
        os << (d + 1 == dim() ? ", " : ",\n" + std::string(7 + d + 1, ' '));
        continue;
      }
      self(self, d + 1, base + i * st[d]);
      if (i + 1 < n) os << (d + 1 == dim() ? ", " : ",\n" + std::string(7 + d + 1, ' '));
    }
    os << "]";
  };
  rec(rec, 0, 0);
  os << ", shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype())
     << ", device=" << device().str() << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace fathom

#pragma once
// Reads the PyTorch reference files that scripts/torch_reference.py writes into
// tests/reference/data/ (the format is described at the top of that script), and compares
// Fathom's tensors with them, reporting the largest absolute and relative errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fathom.h>

#ifndef FATHOM_REFERENCE_DIR
#error "FATHOM_REFERENCE_DIR (the tests/reference/data directory) must be defined by the build"
#endif

namespace fathom::reference {

class File {
 public:
  // Loads <FATHOM_REFERENCE_DIR>/<case_name>.txt.
  explicit File(const std::string& case_name)
      : path_(std::string(FATHOM_REFERENCE_DIR) + "/" + case_name + ".txt") {
    std::ifstream in(path_);
    if (!in)
      fail("cannot open it; regenerate the reference files with "
           "`$(../shared/anchors/setup-torch.sh) scripts/torch_reference.py`");
    std::string line, name;
    Entry* open = nullptr;  // the tensor whose values are still being read
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.empty() || line[0] == '#') continue;
      std::istringstream ss(line);
      std::string tok;
      if (open && open->values.size() < size_t(open->numel)) {
        while (ss >> tok) {
          char* end = nullptr;
          double v = std::strtod(tok.c_str(), &end);
          if (end == tok.c_str() || *end) fail("line " + std::to_string(lineno) + ": '" + tok + "' is not a number");
          // %.9g names an f32 uniquely but is not its exact value: round back to the f32.
          open->values.push_back(open->dtype == "f32" ? double(float(v)) : v);
        }
        if (open->values.size() > size_t(open->numel))
          fail("line " + std::to_string(lineno) + ": '" + name + "' has more values than its shape holds");
        continue;
      }
      Entry e;
      if (!(ss >> name >> e.dtype) || (e.dtype != "f32" && e.dtype != "f64" && e.dtype != "i64"))
        fail("line " + std::to_string(lineno) + ": expected 'NAME f32|f64|i64 DIM...', got '" + line + "'");
      for (int64_t dim; ss >> dim;) e.shape.push_back(dim);
      for (int64_t dim : e.shape) e.numel *= dim;
      if (entries_.count(name)) fail("'" + name + "' appears twice");
      open = &(entries_[name] = std::move(e));
    }
    if (open && open->values.size() != size_t(open->numel))
      fail("'" + name + "' ends early: the file is truncated");
  }

  bool has(const std::string& name) const { return entries_.count(name) > 0; }

  // The names that start with prefix, in sorted order.
  std::vector<std::string> names(const std::string& prefix) const {
    std::vector<std::string> out;
    for (const auto& [n, e] : entries_)
      if (n.rfind(prefix, 0) == 0) out.push_back(n);
    return out;
  }

  const std::vector<double>& values(const std::string& name) const { return at(name).values; }
  const Shape& shape(const std::string& name) const { return at(name).shape; }

  double scalar(const std::string& name) const {
    const Entry& e = at(name);
    if (e.numel != 1) fail("'" + name + "' is not a single number");
    return e.values[0];
  }

  // The tensor as `dtype`; integer entries become i64 tensors whatever dtype says.
  Tensor tensor(const std::string& name, DType dtype = DType::f64) const {
    const Entry& e = at(name);
    if (e.dtype == "i64") {
      std::vector<int64_t> ints(e.values.begin(), e.values.end());
      return from_vector(ints, e.shape);
    }
    return from_vector(e.values, e.shape, dtype);
  }

  // Row `i` of a stacked entry [N, ...] (one row per step).
  std::vector<double> row(const std::string& name, int64_t i) const {
    const Entry& e = at(name);
    if (e.shape.empty() || i < 0 || i >= e.shape[0]) fail("'" + name + "' has no row " + std::to_string(i));
    int64_t n = e.numel / e.shape[0];
    return {e.values.begin() + i * n, e.values.begin() + (i + 1) * n};
  }

 private:
  struct Entry {
    std::string dtype;
    Shape shape;
    int64_t numel = 1;
    std::vector<double> values;
  };
  const Entry& at(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) fail("has no tensor '" + name + "'");
    return it->second;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("reference file " + path_ + ": " + what);
  }
  std::string path_;
  std::map<std::string, Entry> entries_;
};

// The largest |value| of the finite ones: the scale that absolute tolerances are relative to.
inline double scale_of(const std::vector<double>& v) {
  double m = 0;
  for (double x : v)
    if (std::isfinite(x)) m = std::max(m, std::fabs(x));
  return m;
}

// Passes when every element has |got - want| <= atol + rtol * |want| (non-finite values must
// match: inf of the same sign, or nan for nan). On failure it reports how many elements miss,
// the worst one, and the largest absolute and relative errors over the whole tensor.
inline void expect_near(const std::vector<double>& got, const std::vector<double>& want,
                        double rtol, double atol, const std::string& what) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  int64_t bad = 0, worst = -1;
  double max_abs = 0, max_rel = 0, worst_excess = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double g = got[i], w = want[i];
    if (!std::isfinite(w) || !std::isfinite(g)) {
      bool same = (std::isnan(w) && std::isnan(g)) || g == w;
      if (!same && bad++ == 0) worst = int64_t(i), worst_excess = INFINITY;
      continue;
    }
    double err = std::fabs(g - w);
    max_abs = std::max(max_abs, err);
    if (w != 0) max_rel = std::max(max_rel, err / std::fabs(w));
    double excess = err - (atol + rtol * std::fabs(w));
    if (excess > 0) {
      ++bad;
      if (excess > worst_excess) worst = int64_t(i), worst_excess = excess;
    }
  }
  // FATHOM_REFERENCE_REPORT=1 prints every comparison's errors, for reviewing the tolerances.
  static const bool report = std::getenv("FATHOM_REFERENCE_REPORT") != nullptr;
  if (report)
    std::printf("%-48s max abs %.3g (atol %.3g)  max rel %.3g (rtol %.3g)\n", what.c_str(),
                max_abs, atol, max_rel, rtol);
  if (bad)
    UNSCOPED_INFO(what << ": " << bad << " of " << got.size() << " elements outside atol " << atol
                       << " + rtol " << rtol << "; max abs error " << max_abs << ", max rel error "
                       << max_rel << "; worst element " << worst << ": got " << got[size_t(worst)]
                       << ", want " << want[size_t(worst)]);
  CHECK(bad == 0);
}

inline void expect_near(const Tensor& got, const File& ref, const std::string& name, double rtol,
                        double atol, const std::string& what = "") {
  REQUIRE(got.defined());
  std::string label = what.empty() ? name : what + " " + name;
  INFO(label << ": got " << got.desc());
  REQUIRE(got.shape() == ref.shape(name));
  expect_near(to_vector(got), ref.values(name), rtol, atol, label);
}

}  // namespace fathom::reference

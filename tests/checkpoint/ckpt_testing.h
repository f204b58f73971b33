#pragma once
// Helpers for the checkpointer's tests, which run alone and under mpirun (2 and 4 ranks):
// every rank runs the same cases in the same order, so the collectives inside line up.
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "fathom/checkpoint/checkpointer.h"
#include "fathom/comm/comm.h"
#include "testing.h"

namespace fathom::testing {

namespace fs = std::filesystem;

inline comm::ProcessGroup& world() { return comm::world(); }

// A directory all ranks share: rank 0 makes it and broadcasts its name; removed at the end.
struct SharedDir {
  std::string path;
  explicit SharedDir(comm::ProcessGroup& g = world()) : g_(g) {
    Tensor name = zeros({256}, DType::u8);
    if (g.rank() == 0) {
      std::string tmpl = (fs::temp_directory_path() / "fathom_ckpt_XXXXXX").string();
      REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
      REQUIRE(tmpl.size() < 255);
      std::memcpy(name.data_ptr(), tmpl.data(), tmpl.size());
    }
    g.broadcast(name, 0)->wait();
    path = static_cast<const char*>(name.data_ptr());
  }
  ~SharedDir() {
    g_.barrier()->wait();
    if (g_.rank() == 0) fs::remove_all(path);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }

 private:
  comm::ProcessGroup& g_;
};

// Every rank reaches this point before any goes on (e.g. rank 0 corrupted a file).
inline void sync_ranks() { world().barrier()->wait(); }

// A value pattern that differs by tensor, step and rank, exact in every dtype.
inline Tensor pattern(const Shape& shape, DType t, int64_t salt) {
  int64_t n = numel_of(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int64_t k = (i * 7 + salt * 13) % 101;
    v[size_t(i)] = t == DType::boolean ? double(k % 2)
                   : is_floating(t)     ? double(k) / 4.0 - 9.5
                   : t == DType::u8     ? double(k)
                                        : double(k - 50) * 1000003.0 * (t == DType::i64 ? 1e4 : 1);
  }
  return from_vector(v, shape, t);
}

// A state with every dtype, a 0-dim scalar of each kind, an empty tensor and non-contiguous
// views, distinct per step and rank.
inline checkpoint::RankState make_state(int64_t step, int rank) {
  checkpoint::RankState s;
  const DType dtypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16,
                          DType::i32, DType::i64, DType::u8,   DType::boolean};
  int k = 0;
  for (DType t : dtypes) {
    std::string d = dtype_name(t);
    s.replicated["model." + d + ".w"] = pattern({5, 3}, t, step * 100 + k++);
    s.replicated["model." + d + ".t"] = noncontiguous(pattern({4, 6}, t, step * 100 + k++));
    s.per_rank["rng." + d] = pattern({3 + rank}, t, step * 100 + rank * 1000 + k++);
  }
  s.replicated["big"] = pattern({1 << 16}, DType::f32, step);
  s.replicated["empty"] = zeros({0, 4}, DType::f32);
  s.replicated["sched.step"] = full({}, double(step), DType::i64);
  s.replicated["scaler.scale"] = full({}, 65536.0 / double(step + 1), DType::f64);
  s.per_rank["rank"] = full({}, double(rank), DType::i64);
  s.per_rank["empty"] = zeros({0}, DType::i32);
  return s;
}

// Same dtype, shape and bytes (bitwise: -0.0 and NaN payloads count).
inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  Tensor ca = ops::contiguous(ops::to(a, Device::cpu())), cb = ops::contiguous(ops::to(b, Device::cpu()));
  return a.nbytes() == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), a.nbytes()) == 0;
}

inline void expect_same(const nn::StateDict& got, const nn::StateDict& want) {
  REQUIRE(got.size() == want.size());
  for (auto& [name, t] : want) {
    INFO("tensor " << name);
    REQUIRE(got.count(name) == 1);
    CHECK(got.at(name).device() == Device::cpu());
    CHECK(bitwise_equal(got.at(name), t));
  }
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
inline void write_text(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
}

}  // namespace fathom::testing

#pragma once
// Command-line flags for Fathom's own programs (examples, benchmarks): --name=value or
// --name value, --help; a switch (add_switch) is also given bare, --name meaning true. Internal, not installed. It lives in comm, not core, because a flag
// one rank rejects must end every rank (comm::abort), and examples/ is included by nothing.
// A bad flag prints the usage and exits with code 2 (the convention of command-line tools).
// In a program that called comm::init() first, the rank that rejects a flag also tells the
// others (comm::abort): every rank prints one line naming it and its error, and the job ends
// with code 2 instead of the peers waiting in their first collective.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "fathom/comm/comm.h"
#include "fathom/core/device.h"
#include "fathom/core/dtype.h"
#include "fathom/core/error.h"
#include "fathom/core/ops/factory.h"

namespace fathom::examples {

class Flags {
 public:
  Flags(std::string program, std::string about) : program_(std::move(program)), about_(std::move(about)) {}

  Flags& add(const std::string& name, const std::string& def, const std::string& help) {
    order_.push_back(name);
    values_[name] = def;
    help_[name] = help;
    return *this;
  }

  // A true/false flag that may be given bare: --memory is --memory=true.
  Flags& add_switch(const std::string& name, const std::string& help) {
    switches_.push_back(name);
    return add(name, "false", help);
  }

  void parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        usage(stdout);
        std::exit(0);
      }
      if (a.rfind("--", 0) != 0) fail("unexpected argument '" + a + "'");
      std::string name = a.substr(2), value;
      size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (is_switch(name)) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        fail("flag --" + name + " needs a value");
      }
      if (!values_.count(name)) fail("unknown flag --" + name);
      values_[name] = value;
    }
  }

  const std::string& str(const std::string& name) const { return values_.at(name); }
  int64_t i64(const std::string& name) const {
    try {
      size_t used;
      int64_t v = std::stoll(str(name), &used);
      if (used == str(name).size()) return v;
    } catch (const std::exception&) {}
    fail("--" + name + " expects an integer, got '" + str(name) + "'");
  }
  double f64(const std::string& name) const {
    try {
      size_t used;
      double v = std::stod(str(name), &used);
      if (used == str(name).size()) return v;
    } catch (const std::exception&) {}
    fail("--" + name + " expects a number, got '" + str(name) + "'");
  }
  // Range-checked numbers: std::stod accepts "inf" and "nan", and a negative batch or step count
  // would otherwise reach a size computation or a loop bound. Each names the flag it rejects.
  int64_t positive_i64(const std::string& name) const {
    int64_t v = i64(name);
    if (v <= 0) fail("--" + name + " must be a positive integer, got " + str(name));
    return v;
  }
  int64_t nonneg_i64(const std::string& name) const {
    int64_t v = i64(name);
    if (v < 0) fail("--" + name + " must be zero or positive, got " + str(name));
    return v;
  }
  double finite_f64(const std::string& name) const {
    double v = f64(name);
    if (!std::isfinite(v)) fail("--" + name + " must be a finite number, got " + str(name));
    return v;
  }
  double positive_f64(const std::string& name) const {
    double v = finite_f64(name);
    if (!(v > 0)) fail("--" + name + " must be positive, got " + str(name));
    return v;
  }
  double nonneg_f64(const std::string& name) const {
    double v = finite_f64(name);
    if (v < 0) fail("--" + name + " must be zero or positive, got " + str(name));
    return v;
  }
  // A probability p with 0 <= p < 1 (dropout: 1 would drop everything and scale by 1/0).
  double probability(const std::string& name) const {
    double v = finite_f64(name);
    if (!(v >= 0 && v < 1)) fail("--" + name + " must be in [0, 1), got " + str(name));
    return v;
  }
  bool boolean(const std::string& name) const {
    const std::string& v = str(name);
    if (v == "1" || v == "true" || v == "yes") return true;
    if (v == "0" || v == "false" || v == "no") return false;
    fail("--" + name + " expects true or false, got '" + v + "'");
  }
  // A model dtype flag: f32, bf16 or f16.
  DType model_dtype(const std::string& name) const {
    DType t = DType::f32;
    try {
      t = parse_dtype(str(name));
    } catch (const Error& e) {
      fail(e.what());
    }
    if (!is_floating(t) || t == DType::f64) fail("--" + name + " must be f32, bf16 or f16");
    return t;
  }
  Device device(const std::string& name) const {
    try {
      return Device::parse(str(name));
    } catch (const Error& e) {
      fail(e.what());
    }
  }
  // A device flag in a job under a launcher: plain "cuda" is this rank's GPU (`rank_gpu`,
  // comm::init's choice), "cuda:N" stays as given, and "cuda" on a machine without a GPU is a
  // flag error rather than a run on the CPU.
  Device rank_device(const std::string& name, Device rank_gpu) const {
    Device d = device(name);
    if (!d.is_cuda() || str(name) != "cuda") return d;
    if (!rank_gpu.is_cuda()) fail("--" + name + " cuda, but this machine has no CUDA device");
    return rank_gpu;
  }
  // Collective, after parse. Ends every rank (exit code 2, as fail) when a flag has different values on
  // different ranks, naming each such flag with every rank's value. `may_differ`: flags that are
  // per rank by nature (a device, a path on each node's disk, what to print). Without it a
  // different --batch or --epochs trains on until the ranks' collectives stop lining up, an
  // epoch later, and the error then names a collective rather than the flag.
  void check_same_on_all_ranks(comm::ProcessGroup& g, const std::vector<std::string>& may_differ) const {
    auto shared = [&](const std::string& n) {
      return std::find(may_differ.begin(), may_differ.end(), n) == may_differ.end();
    };
    std::string mine;  // name NUL value NUL ...: a value may hold any byte but NUL, as argv's
    for (const auto& n : order_)
      if (shared(n)) mine += n + '\0' + values_.at(n) + '\0';
    const int world = g.size();
    Tensor lens = empty({world}, DType::i64);
    g.allgather(lens, full({1}, double(mine.size()), DType::i64))->wait();
    int64_t longest = 0;
    for (int r = 0; r < world; ++r) longest = std::max(longest, lens.data<int64_t>()[r]);
    Tensor buf = zeros({longest}, DType::u8), all = empty({world * longest}, DType::u8);
    std::memcpy(buf.data_ptr(), mine.data(), mine.size());
    g.allgather(all, buf)->wait();
    std::vector<std::map<std::string, std::string>> per(static_cast<size_t>(world));
    for (int r = 0; r < world; ++r) {
      const char* p = static_cast<const char*>(all.data_ptr()) + r * longest;
      std::string text(p, size_t(lens.data<int64_t>()[r]));
      for (size_t at = 0; at < text.size();) {
        size_t a = text.find('\0', at), b = text.find('\0', a + 1);
        per[size_t(r)][text.substr(at, a - at)] = text.substr(a + 1, b - a - 1);
        at = b + 1;
      }
    }
    std::string differ;
    for (const auto& n : order_) {
      if (!shared(n)) continue;
      std::vector<std::string> v;
      for (int r = 0; r < world; ++r) v.push_back(per[size_t(r)].count(n) ? per[size_t(r)][n] : "(none)");
      differ += comm::describe_disagreement("--" + n, v);
    }
    if (!differ.empty())  // no usage: every flag is valid, the ranks just got different ones
      comm::abort(program_ + ": the ranks were started with different flags (every rank must get "
                  "the same):" + differ, 2);
  }

  // Reports a bad value found after parsing (e.g. an unknown choice) the same way.
  [[noreturn]] void fail(const std::string& msg) const {
    if (comm::is_initialized()) {
      if (comm::world().rank() == 0) usage(stderr);  // once, not once per rank
      comm::abort(program_ + ": " + msg, 2);
    }
    std::fprintf(stderr, "%s: %s\n\n", program_.c_str(), msg.c_str());
    usage(stderr);
    std::exit(2);
  }

 private:
  bool is_switch(const std::string& name) const {
    for (const auto& n : switches_)
      if (n == name) return true;
    return false;
  }
  void usage(FILE* f) const {
    std::fprintf(f, "usage: %s [flags]\n%s\n\nflags:\n", program_.c_str(), about_.c_str());
    for (const auto& n : order_)
      std::fprintf(f, "  --%-14s %s (default: %s)\n", n.c_str(), help_.at(n).c_str(),
                   values_.at(n).c_str());
  }
  std::string program_, about_;
  std::vector<std::string> order_, switches_;
  std::map<std::string, std::string> values_, help_;
};

}  // namespace fathom::examples

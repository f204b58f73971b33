// A DistributedOptimizer's state is this rank's shard: the optimizer's own keys for its segments
// ("<param>.exp_avg" of the segment's length, ...) plus where the segments lie, so a resume
// checks it is the same layout and a resume on another number of ranks can cut the saved
// segments into the new ones (docs/zero.md).
#include <map>
#include <set>

#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"
#include "fathom/parallel/distributed_optimizer.h"

namespace fathom::parallel {

namespace {

const char kWorld[] = "shard.world";
const char kRank[] = "shard.rank";
const std::string kRange = "shard.range.";
const char* const kFields[] = {"master", "exp_avg", "exp_avg_sq"};

Tensor scalar(int64_t v) { return from_vector(std::vector<int64_t>{v}, {}); }

bool is_layout_key(const std::string& k) { return k == kWorld || k == kRank || k.rfind(kRange, 0) == 0; }

// The i64 values of `key` (numel of them), or a message in `problem`.
std::vector<int64_t> ints(const ZeroShards::State& s, const std::string& key, int64_t numel,
                          std::string& problem) {
  auto it = s.find(key);
  if (it == s.end()) {
    problem = "no '" + key + "' entry";
    return {};
  }
  const Tensor& t = it->second;
  if (!t.defined() || t.dtype() != DType::i64 || t.numel() != numel) {
    problem = "'" + key + "' is " + (t.defined() ? t.desc() : std::string("undefined")) + ", expected " +
              std::to_string(numel) + " i64";
    return {};
  }
  std::vector<int64_t> out;
  for (double v : to_vector(t)) out.push_back(int64_t(v));
  return out;
}

}  // namespace

ZeroShards::State ZeroShards::with_layout(State s) const {
  s[kWorld] = scalar(ddp_.group_->size());
  s[kRank] = scalar(ddp_.group_->rank());
  for (const Segment& seg : segments_)
    s[kRange + seg.name] = from_vector(std::vector<int64_t>{seg.start, seg.length}, {2});
  return s;
}

ZeroShards::State ZeroShards::without_layout(const State& s) const {
  const int world = ddp_.group_->size(), rank = ddp_.group_->rank();
  std::string where = "DistributedOptimizer (rank " + std::to_string(rank) + " of " + std::to_string(world) + ")";
  std::string problem;
  std::vector<int64_t> w = ints(s, kWorld, 1, problem), r = ints(s, kRank, 1, problem);
  FATHOM_CHECK(problem.empty(), where, ": the state has ", problem, "; it was not saved by a "
               "DistributedOptimizer (an optimizer that is not sharded saves no shard layout)");
  FATHOM_CHECK(w[0] == world && r[0] == rank, where, ": the state is the shard of rank ", r[0], " of ",
               w[0], "; load each rank's own shard, or on another number of ranks reshard it "
               "(checkpoint::restore_resharded, DistributedOptimizer::reshard_state_dict)");
  std::set<std::string> mine;
  std::string bad;
  for (const Segment& seg : segments_) {
    mine.insert(kRange + seg.name);
    std::vector<int64_t> got = ints(s, kRange + seg.name, 2, problem);
    if (!problem.empty()) bad += "\n  " + problem, problem.clear();
    else if (got[0] != seg.start || got[1] != seg.length)
      bad += "\n  '" + kRange + seg.name + "' is [" + std::to_string(got[0]) + ", +" + std::to_string(got[1]) +
             "), this rank's segment is [" + std::to_string(seg.start) + ", +" + std::to_string(seg.length) + ")";
  }
  State rest;
  for (const auto& [k, t] : s) {
    if (!is_layout_key(k)) rest[k] = t;
    else if (k != kWorld && k != kRank && !mine.count(k)) bad += "\n  unexpected '" + k + "' (no segment of this rank)";
  }
  FATHOM_CHECK(bad.empty(), where, ": the state's shard layout is not this rank's (other buckets or "
               "another model?):", bad);
  return rest;
}

ZeroShards::State ZeroShards::reshard(int saved_world, const std::function<State(int)>& read,
                                      const State& mine) const {
  const char* who = "DistributedOptimizer::reshard_state_dict";
  FATHOM_CHECK(saved_world >= 1 && read, who, ": needs the saved world size (>= 1, got ", saved_world,
               ") and a reader of the saved ranks' states");
  std::map<std::string, int64_t> numel;  // of each parameter, this model's
  for (const auto& p : ddp_.params_) numel[p.name] = p.tensor.numel();
  Device dev = ddp_.params_[0].tensor.device();
  struct Piece {
    Tensor value;            // this rank's segment of one field, filled from the saved pieces
    int64_t covered = 0;     // elements filled (saved segments of one parameter never overlap)
  };
  std::map<std::string, Piece> pieces;        // "<param>.<field>"
  std::map<std::string, int64_t> steps;       // "<param>" -> its step count
  State out;
  for (int r = 0; r < saved_world; ++r) {
    State d = read(r);
    std::string at = std::string(who) + ": saved rank " + std::to_string(r) + " of " + std::to_string(saved_world);
    std::string problem;
    std::vector<int64_t> w = ints(d, kWorld, 1, problem), rk = ints(d, kRank, 1, problem);
    FATHOM_CHECK(problem.empty(), at, ": ", problem, " (was it saved by a DistributedOptimizer?)");
    FATHOM_CHECK(w[0] == saved_world && rk[0] == r, at, ": the state says it is rank ", rk[0], " of ", w[0]);
    if (r == 0)
      for (const auto& [k, t] : d)
        if (k == "step" || (k.rfind("param_groups.", 0) == 0 && k.size() > 8 && k.compare(k.size() - 8, 8, ".options") == 0))
          out[k] = t;
    for (const auto& [k, t] : d) {
      if (k.rfind(kRange, 0) != 0) continue;
      std::string name = k.substr(kRange.size());
      FATHOM_CHECK(numel.count(name), at, ": a segment of '", name, "', which this model does not have");
      std::vector<int64_t> range = ints(d, k, 2, problem);
      FATHOM_CHECK(problem.empty(), at, ": ", problem);
      int64_t start = range[0], len = range[1];
      FATHOM_CHECK(start >= 0 && len > 0 && start + len <= numel[name], at, ": segment [", start, ", +",
                   len, ") of '", name, "' is outside its ", numel[name], " elements");
      if (auto it = d.find(name + ".step"); it != d.end()) {
        int64_t st = it->second.item<int64_t>();
        auto [s_it, fresh] = steps.emplace(name, st);
        FATHOM_CHECK(fresh || s_it->second == st, at, ": '", name, "' has taken ", st, " steps here but ",
                     s_it->second, " in another saved rank's segment");
      }
      for (const Segment& seg : segments_) {
        if (seg.name != name) continue;
        int64_t a = std::max(start, seg.start), e = std::min(start + len, seg.start + seg.length);
        if (a >= e) continue;
        for (const char* f : kFields) {
          auto it = d.find(name + "." + f);
          if (it == d.end()) continue;
          FATHOM_CHECK(it->second.dtype() == DType::f32 && it->second.dim() == 1 && it->second.numel() == len,
                       at, ": '", it->first, "' is ", it->second.desc(), ", expected [", len, "] f32");
          Piece& p = pieces[name + "." + f];
          if (!p.value.defined()) p.value = zeros({seg.length}, {DType::f32, dev});
          ops::copy_(ops::narrow(p.value, 0, a - seg.start, e - a), ops::narrow(it->second, 0, a - start, e - a));
          p.covered += e - a;
        }
      }
    }
  }
  for (const auto& [k, t] : mine)
    if (is_layout_key(k) || (k.rfind("param_groups.", 0) == 0 && k.compare(k.size() - 7, 7, ".params") == 0))
      out[k] = t;  // this rank's layout and the hashes of its groups' segment names
  for (const Segment& seg : segments_) {
    for (const char* f : kFields) {
      auto it = pieces.find(seg.name + "." + f);
      if (it == pieces.end()) continue;
      FATHOM_CHECK(it->second.covered == seg.length, who, ": the saved ranks hold ", it->second.covered,
                   " of the ", seg.length, " elements of '", seg.name, ".", f, "' in [", seg.start, ", +",
                   seg.length, ") (a saved rank missing, or saved with another layout)");
      out[seg.name + "." + f] = it->second.value;
    }
    if (auto it = steps.find(seg.name); it != steps.end()) out[seg.name + ".step"] = scalar(it->second);
  }
  return out;
}

}  // namespace fathom::parallel

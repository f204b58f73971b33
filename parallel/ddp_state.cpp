// DistributedDataParallel's resume state (keys in ddp.h, reasons in docs/checkpoint_state.md):
// the bucket layout learned at the first step, the step counters, and the compressor's mask
// phase and error-feedback residuals. A fresh DDP built by the same constructor has the initial
// layout, step 0 and zero residuals; without these a resumed run with 2:4 compression would keep
// other positions, forget what the residuals owed, and drift from the uninterrupted one.
#include <algorithm>
#include <set>

#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"
#include "fathom/parallel/ddp.h"

namespace fathom::parallel {

namespace {

Tensor scalar(int64_t v) { return from_vector(std::vector<int64_t>{v}, {}); }

// FNV-1a over the names, kept to 53 bits so it survives any path through f64.
int64_t names_hash(const std::vector<std::string>& names) {
  uint64_t h = 1469598103934665603ull;
  for (const std::string& n : names)
    for (char c : n + '\0') h = (h ^ uint8_t(c)) * 1099511628211ull;
  return int64_t(h >> 11);
}

bool is_permutation(std::vector<double> v, size_t n) {
  if (v.size() != n) return false;
  std::sort(v.begin(), v.end());
  for (size_t i = 0; i < n; ++i)
    if (v[i] != double(i)) return false;
  return true;
}

std::vector<int> as_ints(const Tensor& t) {
  std::vector<int> out;
  for (double v : to_vector(t)) out.push_back(int(v));
  return out;
}

}  // namespace

nn::StateDict DistributedDataParallel::state_dict() const {
  bool accumulating = !reset_pending_ &&
      std::any_of(params_.begin(), params_.end(), [](const Param& p) { return !p.stale; });
  FATHOM_CHECK(!in_backward_ && !accumulating, "DistributedDataParallel::state_dict: gradients "
               "accumulated under no_sync() wait in the buckets for a synchronized backward; save "
               "between steps (after the optimizer step)");
  std::vector<std::string> names;
  for (const Param& p : params_) names.push_back(p.name);
  std::vector<int> layout = bucket_order();
  std::vector<int64_t> order(layout.begin(), layout.end());
  nn::StateDict s;
  s["params"] = scalar(names_hash(names));
  s["order"] = from_vector(order, {int64_t(order.size())});
  s["rebuilt"] = scalar(rebuilt_);
  if (!rebuilt_ && !ready_order_.empty()) {
    std::vector<int64_t> ready(ready_order_.begin(), ready_order_.end());
    s["ready_order"] = from_vector(ready, {int64_t(ready.size())});
  }
  s["step"] = scalar(stats_.step);
  if (const auto& c = o_.compressor()) {
    s["compressor.step"] = scalar(int64_t(c->step()));
    for (size_t k = 0; k < buckets_.size(); ++k) {
      Tensor r = c->residual(int(k));
      for (int i : buckets_[k].params) {
        const Param& p = params_[i];
        // A view, as Module::state_dict's tensors are: the checkpointer copies when it saves.
        s["residual." + p.name] = r.defined() ? ops::narrow(r, 0, p.offset, p.tensor.numel())
                                              : zeros({p.tensor.numel()}, {DType::f32, p.tensor.device()});
      }
    }
  }
  return s;
}

void DistributedDataParallel::check_state_dict(const nn::StateDict& s) const {
  std::vector<std::string> problems, missing;
  std::set<std::string> known;
  // The i64 entry `key` with `numel` values (0: a 0-dim scalar); null when absent or malformed.
  auto ints = [&](const std::string& key, int64_t numel, bool required = true) -> const Tensor* {
    known.insert(key);
    auto it = s.find(key);
    if (it == s.end()) {
      if (required) missing.push_back(key);
      return nullptr;
    }
    const Tensor& t = it->second;
    bool ok = t.defined() && t.dtype() == DType::i64 &&
              (numel == 0 ? t.dim() == 0 : t.dim() == 1 && t.numel() == numel);
    if (!ok) {
      problems.push_back(detail::concat("'", key, "' is ", t.desc(), ", expected ",
                                        numel == 0 ? std::string("a 0-dim i64") : detail::concat("[", numel, "] i64")));
      return nullptr;
    }
    return &t;
  };
  const size_t n = params_.size();
  std::vector<std::string> names;
  for (const Param& p : params_) names.push_back(p.name);
  if (const Tensor* t = ints("params", 0); t && t->item<int64_t>() != names_hash(names))
    problems.push_back("'params': the state was saved for other parameters than this DDP's " +
                       std::to_string(n) + " (another model?)");
  if (const Tensor* t = ints("order", int64_t(n)); t && !is_permutation(to_vector(*t), n))
    problems.push_back("'order' is not a permutation of the " + std::to_string(n) + " parameters");
  else if (t && zero_stage_ && as_ints(*t) != bucket_order())
    problems.push_back("'order': the saved bucket layout is not this DDP's, whose layout is fixed "
                       "because a DistributedOptimizer (ZeRO-" + std::to_string(zero_stage_) +
                       ") cut its shards from it; resume with the same model and DistributedOptimizer");
  const Tensor* rebuilt = ints("rebuilt", 0);
  if (rebuilt && rebuilt->item<int64_t>() != 0 && rebuilt->item<int64_t>() != 1)
    problems.push_back("'rebuilt' must be 0 or 1");
  if (const Tensor* t = ints("ready_order", int64_t(n), false)) {
    if (!is_permutation(to_vector(*t), n))
      problems.push_back("'ready_order' is not a permutation of the " + std::to_string(n) + " parameters");
    else if (rebuilt && rebuilt->item<int64_t>() == 1)
      problems.push_back("'ready_order' is only saved before the bucket rebuild, but 'rebuilt' is 1");
  }
  if (const Tensor* t = ints("step", 0); t && t->item<int64_t>() < 0) problems.push_back("'step' is negative");

  bool saved_compressed = s.count("compressor.step") > 0;
  const auto& c = o_.compressor();
  if (saved_compressed != bool(c)) {
    problems.push_back(saved_compressed
        ? std::string("the state was saved with gradient compression (it holds error-feedback "
                      "residuals), but this DDP has none: resume with the same compression")
        : "the state was saved without gradient compression, but this DDP compresses with " +
              c->name() + ": resume with the same compression");
    for (const auto& [k, t] : s)
      if (k == "compressor.step" || k.rfind("residual.", 0) == 0) known.insert(k);
  } else if (c) {
    if (const Tensor* t = ints("compressor.step", 0); t && t->item<int64_t>() < 0)
      problems.push_back("'compressor.step' is negative");
    for (const Param& p : params_) {
      std::string key = "residual." + p.name;
      known.insert(key);
      auto it = s.find(key);
      if (it == s.end()) {
        missing.push_back(key);
      } else if (!it->second.defined() || it->second.dtype() != DType::f32 || it->second.dim() != 1 ||
                 it->second.numel() != p.tensor.numel()) {
        problems.push_back("'" + key + "' is " + it->second.desc() + ", expected [" +
                           std::to_string(p.tensor.numel()) + "] f32");
      }
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& [k, t] : s)
    if (!known.count(k)) unexpected.push_back(k);
  auto list = [](const char* what, const std::vector<std::string>& keys) {
    std::string out = keys.empty() ? "" : std::string("\n  ") + what + " (" + std::to_string(keys.size()) + "):";
    for (const auto& k : keys) out += " '" + k + "'";
    return out;
  };
  std::string details;
  for (const auto& p : problems) details += "\n  " + p;
  details += list("missing keys", missing) + list("unexpected keys", unexpected);
  FATHOM_CHECK(details.empty(), "DistributedDataParallel::load_state_dict: the state does not fit "
               "this DDP (", n, " parameters, ", c ? c->name() : std::string("no compression"), "):",
               details);
}

void DistributedDataParallel::load_state_dict(const nn::StateDict& s) {
  check_state_dict(s);
  bool accumulating = !reset_pending_ &&
      std::any_of(params_.begin(), params_.end(), [](const Param& p) { return !p.stale; });
  FATHOM_CHECK(!in_backward_ && !accumulating, "DistributedDataParallel::load_state_dict: "
               "gradients accumulated under no_sync() are in the buckets; load between steps");
  ready_order_.clear();
  if (zero_stage_) {
    // The same layout (checked): the buffers, and the shards cut from them, stay as they are.
    rebuilt_ = true;
  } else {
    build_buckets(as_ints(s.at("order")));
    rebuilt_ = s.at("rebuilt").item<int64_t>() == 1;
    if (auto it = s.find("ready_order"); it != s.end()) ready_order_ = as_ints(it->second);
  }
  stats_.step = s.at("step").item<int64_t>();
  if (const auto& c = o_.compressor()) {
    c->set_step(uint64_t(s.at("compressor.step").item<int64_t>()));
    for (size_t k = 0; k < buckets_.size(); ++k) {
      const Bucket& b = buckets_[k];
      Tensor r = zeros({b.buffer.numel()}, {DType::f32, b.buffer.device()});  // padding stays 0
      for (int i : b.params)
        ops::copy_(ops::narrow(r, 0, params_[i].offset, params_[i].tensor.numel()),
                   s.at("residual." + params_[i].name));
      c->set_residual(int(k), r);
    }
  }
  if (optimizer_) attach(*optimizer_);
}

nn::StateDict DistributedDataParallel::reshard_state_dict(
    int saved_world, const std::function<nn::StateDict(int)>& read) const {
  FATHOM_CHECK(saved_world >= 1 && read, "DistributedDataParallel::reshard_state_dict: needs the "
               "saved world size (>= 1, got ", saved_world, ") and a reader of the saved ranks' states");
  nn::StateDict out;
  std::map<std::string, Tensor> sums;  // residual key -> sum over the saved ranks, f32 on the CPU
  for (int r = 0; r < saved_world; ++r) {
    nn::StateDict d = read(r);
    try {
      check_state_dict(d);
    } catch (const Error& e) {
      detail::fail("DistributedDataParallel::reshard_state_dict: saved rank ", r, " of ",
                   saved_world, ": ", e.what());
    }
    if (r == 0) {
      for (const auto& [k, t] : d)
        if (k.rfind("residual.", 0) != 0) out[k] = t;
    } else {
      // Replicated parts must agree, or the saved ranks were not one job's.
      for (const char* k : {"order", "compressor.step"})
        if (out.count(k))
          FATHOM_CHECK(to_vector(d.at(k)) == to_vector(out.at(k)), "DistributedDataParallel::"
                       "reshard_state_dict: saved rank ", r, "'s '", k, "' differs from saved rank 0's");
    }
    for (const auto& [k, t] : d) {
      if (k.rfind("residual.", 0) != 0) continue;
      Tensor v = ops::to(t, Device::cpu());
      if (r == 0) sums[k] = ops::contiguous(ops::clone(v));
      else ops::add_(sums[k], v);
    }
  }
  for (auto& [k, t] : sums) {
    ops::binary_out(BinaryOp::div, t, double(saved_world), t);
    out[k] = t;
  }
  return out;
}

}  // namespace fathom::parallel

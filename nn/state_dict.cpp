// Module::state_dict and load_state_dict: the names are named_parameters() and named_buffers(),
// so a checkpoint written by one process is read by name in another.
#include <set>
#include <sstream>

#include "fathom/core/ops/shape.h"
#include "fathom/nn/module.h"
#include "fathom/core/snapshot.h"

namespace fathom::nn {

StateDict Module::state_dict() const {
  StateDict out;
  for (auto& [name, t] : named_parameters()) out.emplace(name, t.detach());
  for (auto& [name, t] : named_buffers()) out.emplace(name, t.detach());
  return out;
}

namespace {
void list_keys(std::ostringstream& msg, const char* what, const std::vector<std::string>& keys) {
  if (keys.empty()) return;
  msg << "\n  " << what << " (" << keys.size() << "):";
  for (const auto& k : keys) msg << " '" << k << "'";
}
}  // namespace

LoadStateDictResult Module::load_state_dict(const StateDict& dict, bool strict) {
  NamedTensors own = named_parameters();
  for (auto& nt : named_buffers()) own.push_back(std::move(nt));

  LoadStateDictResult result;
  std::vector<std::string> mismatches;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (destination, source), applied only when all is well
  for (const auto& [name, dst] : own) {
    auto it = dict.find(name);
    if (it == dict.end()) {
      result.missing_keys.push_back(name);
      continue;
    }
    const Tensor& src = it->second;
    // Device may differ (a CPU checkpoint into a CUDA model); shape and dtype may not, because
    // a silent cast would hide a checkpoint written for another precision.
    if (!src.defined() || src.shape() != dst.shape() || src.dtype() != dst.dtype()) {
      mismatches.push_back("'" + name + "': expected " + dst.desc() + ", got " +
                           (src.defined() ? src.desc() : std::string("an undefined tensor")));
      continue;
    }
    copies.emplace_back(dst, src);
  }
  std::set<std::string> own_names;
  for (const auto& nt : own) own_names.insert(nt.first);
  for (const auto& [name, src] : dict)
    if (!own_names.count(name)) result.unexpected_keys.push_back(name);

  bool key_errors = strict && (!result.missing_keys.empty() || !result.unexpected_keys.empty());
  if (key_errors || !mismatches.empty()) {
    std::ostringstream msg;
    msg << type_name() << "::load_state_dict: the state dict (" << dict.size()
        << " tensors) does not fit this module (" << own.size() << " tensors)";
    if (strict) {
      list_keys(msg, "missing keys", result.missing_keys);
      list_keys(msg, "unexpected keys", result.unexpected_keys);
    }
    if (!mismatches.empty()) {
      msg << "\n  shape/dtype mismatches (" << mismatches.size() << "):";
      for (const auto& m : mismatches) msg << "\n    " << m;
    }
    if (strict && mismatches.empty()) msg << "\n  (pass strict = false to load the keys that match)";
    detail::fail(msg.str());
  }

  NoGradGuard no_grad;
  if (!copies.empty()) await_snapshots();  // an async checkpoint may still be copying them
  for (const auto& [dst, src] : copies) ops::copy_(dst, src);  // copy_ moves across devices
  return result;
}

}  // namespace fathom::nn

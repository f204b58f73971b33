// collect / restore: a training loop's parts to and from a RankState, by key prefix (the table
// is in train_state.h). restore checks every part before it changes any, so a checkpoint that
// does not fit leaves the freshly built parts as they were.
#include "fathom/checkpoint/train_state.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"

namespace fathom::checkpoint {

namespace {

const char* const kParts[] = {"model", "optim", "scaler", "sched", "loader", "rng"};
const char* const kRngFields[] = {"seed", "stream", "offset"};

Tensor i64(int64_t v) { return from_vector(std::vector<int64_t>{v}, {}); }
Tensor f64(double v) { return from_vector(std::vector<double>{v}, {}, DType::f64); }

// An i64 scalar read without a trip through double (seeds use all 64 bits).
int64_t read_i64(const std::string& key, const Tensor& t) {
  FATHOM_CHECK(t.defined() && t.dtype() == DType::i64 && t.numel() == 1, "'", key, "' is ",
               t.desc(), ", expected one i64");
  Tensor h = ops::contiguous(ops::to(t, Device::cpu()));
  int64_t v;
  std::memcpy(&v, h.data_ptr(), sizeof v);
  return v;
}

std::map<std::string, double> to_doubles(const std::string& prefix, const nn::StateDict& d) {
  std::map<std::string, double> out;
  for (const auto& [k, t] : d) {
    FATHOM_CHECK(t.defined() && t.numel() == 1 && (is_floating(t.dtype()) || t.dtype() == DType::i64),
                 "'", prefix, k, "' is ", t.desc(), ", expected one number");
    out[k] = t.item<double>();
  }
  return out;
}

void check_name(const std::string& name, const char* what) {
  FATHOM_CHECK(!name.empty() && name.find('.') == std::string::npos, "checkpoint::TrainState: ",
               what, " name '", name, "' must be non-empty and without dots (its keys are '", name,
               ".<key>')");
}

void check_names(const TrainState& ts) {
  for (const auto& [name, g] : ts.generators) {
    check_name(name, "generator");
    FATHOM_CHECK(g, "checkpoint::TrainState: generator '", name, "' is null; erase it instead");
  }
  std::set<std::string> seen(std::begin(kParts), std::end(kParts));
  for (const StateProvider& p : ts.extras) {
    check_name(p.name, "extra state");
    FATHOM_CHECK(seen.insert(p.name).second, "checkpoint::TrainState: extra state name '", p.name,
                 "' is taken (by a part or another extra)");
    FATHOM_CHECK(p.save && p.check && p.load, "checkpoint::TrainState: extra state '", p.name,
                 "' needs save, check and load callbacks");
  }
}

// The keys of `d` under "<part>.", with the prefix removed, by part.
std::map<std::string, nn::StateDict> by_part(const nn::StateDict& d) {
  std::map<std::string, nn::StateDict> out;
  for (const auto& [k, t] : d) {
    size_t dot = k.find('.');
    if (dot == std::string::npos) out[""][k] = t;  // matches no part: reported as unexpected
    else out[k.substr(0, dot)][k.substr(dot + 1)] = t;
  }
  return out;
}

void put(nn::StateDict& into, const std::string& part, const nn::StateDict& d) {
  for (const auto& [k, t] : d) into[part + "." + k] = t;
}

std::string key_list(const std::string& prefix, const nn::StateDict& d) {
  std::string s;
  for (const auto& [k, t] : d) s += (s.empty() ? "'" : ", '") + prefix + k + "'";
  return s;
}

// What restore needs to know about one dict (replicated or per_rank) while it checks: its
// parts, the problems found so far, and which parts were claimed.
struct Checked {
  const char* dict;
  std::map<std::string, nn::StateDict> parts;
  std::set<std::string> claimed;
  // The part's keys; a problem when it has none, unless `required` is false (an extra's own
  // check decides whether an empty state is one).
  const nn::StateDict& take(const std::string& part, std::vector<std::string>& problems,
                            bool required = true) {
    claimed.insert(part);
    static const nn::StateDict empty;
    auto it = parts.find(part);
    if (it != parts.end()) return it->second;
    if (required) problems.push_back(std::string("the ") + dict + " state has no '" + part + ".' keys");
    return empty;
  }
  void unclaimed(std::vector<std::string>& problems) const {
    for (const auto& [part, d] : parts)
      if (!claimed.count(part))
        problems.push_back(std::string("unexpected keys in the ") + dict + " state (" +
                           (part.empty() ? std::string("no part of a training loop") :
                                           "this TrainState has no '" + part + "'") +
                           "): " + key_list(part.empty() ? "" : part + ".", d));
  }
};

void check_rng(const std::string& name, const nn::StateDict& rng, std::set<std::string>& used) {
  for (const char* f : kRngFields) {
    std::string k = name + "." + f;
    auto it = rng.find(k);
    FATHOM_CHECK(it != rng.end(), "generator '", name, "': missing key 'rng.", k, "'");
    read_i64("rng." + k, it->second);
    used.insert(k);
  }
}

PhiloxState rng_state(const std::string& name, const nn::StateDict& rng) {
  auto get = [&](const char* f) { return uint64_t(read_i64("rng." + name + "." + f, rng.at(name + "." + f))); };
  return {get("seed"), get("stream"), get("offset")};
}

}  // namespace

RankState collect(const TrainState& ts) {
  check_names(ts);
  RankState rs;
  if (ts.model) put(rs.replicated, "model", ts.model->state_dict());
  // A sharded optimizer's state is this rank's shard (parallel::DistributedOptimizer).
  if (ts.optimizer) put(ts.optimizer->sharded() ? rs.per_rank : rs.replicated, "optim", ts.optimizer->state_dict());
  if (ts.scaler)
    for (const auto& [k, v] : ts.scaler->state_dict()) rs.replicated["scaler." + k] = f64(v);
  if (ts.scheduler)
    for (const auto& [k, v] : ts.scheduler->state_dict()) rs.replicated["sched." + k] = f64(v);
  if (const data::DataLoader* l = ts.loader) {
    rs.replicated["loader.epoch"] = i64(l->position().epoch);
    rs.replicated["loader.batch"] = i64(l->position().batch);
    rs.replicated["loader.global_batch"] = i64(l->options().global_batch());
    rs.replicated["loader.samples"] = i64(l->dataset().size());
    rs.replicated["loader.seed"] = i64(int64_t(l->options().seed()));
  }
  for (const auto& [name, g] : ts.generators) {
    const PhiloxState& s = g->state();
    rs.per_rank["rng." + name + ".seed"] = i64(int64_t(s.seed));
    rs.per_rank["rng." + name + ".stream"] = i64(int64_t(s.stream));
    rs.per_rank["rng." + name + ".offset"] = i64(int64_t(s.offset));
  }
  for (const StateProvider& p : ts.extras) put(p.per_rank ? rs.per_rank : rs.replicated, p.name, p.save());
  return rs;
}

void restore(TrainState& ts, const nn::StateDict& replicated, const nn::StateDict& per_rank) {
  check_names(ts);
  Checked rep{"replicated", by_part(replicated), {}}, mine{"per-rank", by_part(per_rank), {}};
  std::vector<std::string> problems;
  // Each part's own check; its message is collected, not thrown, so all are reported at once.
  auto check = [&](const char* part, const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      problems.push_back(std::string(part) + ": " + e.what());
    }
  };
  nn::StateDict none;
  const nn::StateDict& model = ts.model ? rep.take("model", problems) : none;
  const nn::StateDict& optim =
      ts.optimizer ? (ts.optimizer->sharded() ? mine : rep).take("optim", problems) : none;
  std::map<std::string, double> scaler, sched;
  if (ts.scaler) check("scaler", [&] {
    const nn::StateDict& d = rep.take("scaler", problems);
    if (d.empty()) return;
    scaler = to_doubles("scaler.", d);
    ts.scaler->check_state_dict(scaler);
  });
  if (ts.scheduler) check("sched", [&] {
    const nn::StateDict& d = rep.take("sched", problems);
    if (d.empty()) return;
    sched = to_doubles("sched.", d);
    ts.scheduler->check_state_dict(sched);
  });
  if (ts.optimizer && !optim.empty()) check("optim", [&] { ts.optimizer->check_state_dict(optim); });
  data::LoaderPosition pos;
  if (const data::DataLoader* l = ts.loader) check("loader", [&] {
    const nn::StateDict& d = rep.take("loader", problems);
    if (d.empty()) return;
    auto get = [&](const char* k) {
      auto it = d.find(k);
      FATHOM_CHECK(it != d.end(), "missing key 'loader.", k, "'");
      return read_i64(std::string("loader.") + k, it->second);
    };
    FATHOM_CHECK(d.size() == 5, "the state has ", d.size(), " 'loader.' keys (", key_list("loader.", d),
                 "), expected epoch, batch, global_batch, samples and seed");
    auto same = [&](const char* k, int64_t mine_v, const char* what) {
      int64_t saved = get(k);
      FATHOM_CHECK(saved == mine_v, "the state was saved with ", what, " ", saved, ", this loader has ",
                   mine_v, ": its (epoch, batch) position would name other samples");
    };
    same("global_batch", l->options().global_batch(), "global batch");
    same("samples", l->dataset().size(), "a dataset of");
    same("seed", int64_t(l->options().seed()), "seed");
    pos = {get("epoch"), get("batch")};
    l->check_position(pos);
  });
  if (!ts.generators.empty()) check("rng", [&] {
    const nn::StateDict& rng = mine.take("rng", problems);
    if (rng.empty()) return;
    std::set<std::string> used;
    std::string names;
    for (const auto& [name, g] : ts.generators) {
      check_rng(name, rng, used);
      names += (names.empty() ? "'" : ", '") + name + "'";
    }
    for (const auto& [k, t] : rng)
      FATHOM_CHECK(used.count(k), "unexpected key 'rng.", k, "' (this TrainState's generators: ",
                   names, ")");
  });
  std::vector<const nn::StateDict*> extra;
  for (const StateProvider& p : ts.extras) {
    extra.push_back(&(p.per_rank ? mine : rep).take(p.name, problems, false));
    check(p.name.c_str(), [&] { p.check(*extra.back()); });
  }
  rep.unclaimed(problems);
  mine.unclaimed(problems);
  if (problems.empty() && ts.model)
    check("model", [&] { ts.model->load_state_dict(model); });  // writes only when all fits
  if (!problems.empty()) {
    std::string msg = "checkpoint::restore: the saved state does not fit this training loop "
                      "(nothing was changed):";
    for (const auto& p : problems) msg += "\n  - " + p;
    detail::fail(msg);
  }
  // Everything fits: apply (the model is loaded already). The optimizer before the scheduler,
  // which sets the lrs of the restored step.
  if (ts.optimizer) ts.optimizer->load_state_dict(optim);
  if (ts.scaler) ts.scaler->load_state_dict(scaler);
  if (ts.scheduler) ts.scheduler->load_state_dict(sched);
  if (ts.loader) ts.loader->set_position(pos);
  if (!ts.generators.empty()) {
    const nn::StateDict& rng = mine.parts.at("rng");
    for (auto& [name, g] : ts.generators) g->set_state(rng_state(name, rng));
  }
  for (size_t i = 0; i < ts.extras.size(); ++i) ts.extras[i].load(*extra[i]);
}

void restore_resharded(TrainState& ts, const nn::StateDict& replicated, int saved_world,
                       const std::function<nn::StateDict(int saved_rank)>& read_per_rank) {
  check_names(ts);
  FATHOM_CHECK(saved_world >= 1 && read_per_rank, "checkpoint::restore_resharded: needs the saved "
               "world size (>= 1, got ", saved_world, ") and a reader of the saved ranks' per-rank states");
  // A part of saved rank r's state, its prefix removed.
  auto read_part = [&](int r, const std::string& part) {
    nn::StateDict d = read_per_rank(r);
    auto parts = by_part(d);
    return parts[part];
  };
  nn::StateDict per_rank;
  if (!ts.generators.empty()) {
    std::map<std::string, uint64_t> offset;
    for (int r = 0; r < saved_world; ++r) {
      nn::StateDict rng = read_part(r, "rng");
      for (const auto& [name, g] : ts.generators) {
        std::string k = name + ".offset";
        FATHOM_CHECK(rng.count(k), "checkpoint::restore_resharded: saved rank ", r, " has no 'rng.", k,
                     "' (generator '", name, "' was not saved)");
        offset[name] = std::max(offset[name], uint64_t(read_i64("rng." + k, rng.at(k))));
      }
    }
    for (const auto& [name, g] : ts.generators) {
      PhiloxState s = g->state();
      per_rank["rng." + name + ".seed"] = i64(int64_t(s.seed));
      per_rank["rng." + name + ".stream"] = i64(int64_t(s.stream));
      per_rank["rng." + name + ".offset"] = i64(int64_t(std::max(s.offset, offset[name])));
    }
  }
  if (ts.optimizer && ts.optimizer->sharded())
    put(per_rank, "optim", ts.optimizer->reshard_state_dict(saved_world, [&](int r) {
      FATHOM_CHECK(r >= 0 && r < saved_world, "checkpoint::restore_resharded: the optimizer asked "
                   "for saved rank ", r, " of ", saved_world);
      return read_part(r, "optim");
    }));
  for (const StateProvider& p : ts.extras) {
    if (!p.per_rank) continue;
    FATHOM_CHECK(p.reshard, "checkpoint::restore_resharded: extra state '", p.name, "' cannot be "
                 "resumed on another world size (its provider has no reshard callback)");
    put(per_rank, p.name, p.reshard(saved_world, [&](int r) {
      FATHOM_CHECK(r >= 0 && r < saved_world, "checkpoint::restore_resharded: extra state '", p.name,
                   "' asked for saved rank ", r, " of ", saved_world);
      return read_part(r, p.name);
    }));
  }
  restore(ts, replicated, per_rank);
}

}  // namespace fathom::checkpoint

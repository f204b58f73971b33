// The Checkpointer: the agreeing between ranks (always on the caller's thread) around the file
// work of io.h. See checkpointer.h for the protocol.
#include "fathom/checkpoint/checkpointer.h"

#include "fathom/core/snapshot.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>

#include "fathom/checkpoint/file_io.h"
#include "fathom/checkpoint/io.h"
#include "fathom/checkpoint/json.h"
#include "fathom/comm/comm.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/snapshot.h"

namespace fathom::checkpoint {

using namespace internal;

namespace {

// Error texts travel between ranks; a runaway one is cut here.
constexpr size_t kMaxErrorBytes = 16 << 10;

struct Exchange {
  std::vector<std::vector<int64_t>> values;  // [rank][i]
  std::vector<std::string> errors;           // [rank], "" when fine
  bool failed = false;
};

// One allgather of every rank's `mine` (the same length everywhere) and error length, and a
// second one of the error texts only when some rank has one (every rank sees the lengths, so
// all make the same calls).
Exchange exchange(comm::ProcessGroup& g, const std::vector<int64_t>& mine, std::string error) {
  if (error.size() > kMaxErrorBytes) error = error.substr(0, kMaxErrorBytes) + "...";
  const int n = g.size();
  const int64_t k = int64_t(mine.size()) + 1;
  std::vector<int64_t> v = mine;
  v.push_back(int64_t(error.size()));
  Tensor in = from_vector(v, {k}, DType::i64);
  Tensor out = empty({n * k}, DType::i64);
  g.allgather(out, in)->wait();
  const int64_t* all = out.data<int64_t>();
  Exchange x;
  int64_t longest = 0;
  for (int r = 0; r < n; ++r) {
    x.values.emplace_back(all + r * k, all + r * k + k - 1);
    longest = std::max(longest, all[r * k + k - 1]);
  }
  x.errors.assign(size_t(n), "");
  if (longest == 0) return x;
  x.failed = true;
  Tensor ein = zeros({longest}, DType::u8);
  std::memcpy(ein.data_ptr(), error.data(), error.size());
  Tensor eout = empty({n * longest}, DType::u8);
  g.allgather(eout, ein)->wait();
  const char* text = static_cast<const char*>(eout.data_ptr());
  for (int r = 0; r < n; ++r)
    x.errors[size_t(r)].assign(text + r * longest, size_t(all[r * k + k - 1]));
  return x;
}

// "rank 1: <why>" lines; ranks with the same text share a line ("ranks 0, 1: <why>").
std::string describe_errors(const std::vector<std::string>& errors) {
  std::vector<std::pair<std::string, std::vector<int>>> groups;
  for (int r = 0; r < int(errors.size()); ++r) {
    if (errors[size_t(r)].empty()) continue;
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](auto& g) { return g.first == errors[size_t(r)]; });
    if (it == groups.end()) groups.push_back({errors[size_t(r)], {r}});
    else it->second.push_back(r);
  }
  std::string s;
  for (auto& [text, ranks] : groups) {
    s += s.empty() ? "" : "\n  ";
    s += ranks.size() > 1 ? "ranks " : "rank ";
    for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
    s += ": " + text;
  }
  return s;
}

std::string check_state(int64_t step, const RankState& s) {
  if (step < 0) return "step " + std::to_string(step) + " is negative";
  for (const auto* dict : {&s.replicated, &s.per_rank}) {
    const char* kind = dict == &s.replicated ? "replicated" : "per_rank";
    for (auto& [name, t] : *dict) {
      std::string why = name_problem(name);
      if (!why.empty())
        return std::string(kind) + " tensor " +
               json::quote(json::valid_utf8(name) ? name : "<not UTF-8>") + ": " + why;
      if (!t.defined())
        return std::string(kind) + " tensor " + json::quote(name) + " is undefined";
    }
  }
  return "";
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string tmp_dir_for(const std::string& dir, int64_t step, int64_t pid) {
  return dir + "/" + kTmpPrefix + step_dir_name(step) + "." + std::to_string(pid);
}

}  // namespace

Checkpointer::Checkpointer(std::string dir, comm::ProcessGroup& group, CheckpointerOptions options)
    : dir_(std::move(dir)), group_(group), options_(options) {
  FATHOM_CHECK(!dir_.empty(), "Checkpointer: the directory is empty");
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  FATHOM_CHECK(options_.keep() >= 0, "Checkpointer: keep(", options_.keep(),
               ") must be >= 0 (0 keeps every checkpoint)");
  FATHOM_CHECK(options_.timeout() >= 0, "Checkpointer: timeout(", options_.timeout(),
               ") must be >= 0 seconds (0: the group's timeout)");
  if (group_.rank() == 0) {
    make_dirs(dir_, "Checkpointer");
    remove_stale_tmp(dir_);
  }
}

Checkpointer::~Checkpointer() {
  std::string e = join_pending();
  if (!e.empty())
    std::fprintf(stderr, "[rank %d] Checkpointer '%s': %s\n", group_.rank(), dir_.c_str(), e.c_str());
}

std::string Checkpointer::join_pending() {
  if (worker_.joinable()) worker_.join();
  if (!pending_) return "";
  pending_ = false;
  if (pending_error_.empty()) return "";
  std::string e = "the save of step " + std::to_string(pending_step_) + " failed: " + pending_error_;
  pending_error_.clear();
  return e;
}

void Checkpointer::save(int64_t step, const RankState& state) {
  const auto t0 = std::chrono::steady_clock::now();
  waited_at_save_ = snapshot_wait_seconds();
  const int rank = group_.rank(), world = group_.size();
  std::string previous = join_pending();
  std::string error = check_state(step, state);

  SaveJob job;
  job.dir = dir_;
  job.step = step;
  job.rank = rank;
  job.world = world;
  job.mesh.set_dp(world);
  job.mesh.set_pp(1);
  job.mesh.set_tp(1);
  job.keep = options_.keep();
  job.timeout = options_.timeout() > 0 ? options_.timeout() : group_.timeout();
  uint64_t fingerprint = 0;
  if (previous.empty() && error.empty()) {
    try {
      job.kill = kill_point_from_env(rank);
      fingerprint = replicated_fingerprint(state.replicated);
      plan_save(job, state, options_.async(), &arena_);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  // Rank 0 names the temporary directory (its pid) and creates it before the others look.
  const int64_t pid = ::getpid();
  if (rank == 0 && previous.empty() && error.empty()) {
    try {
      make_dirs(dir_, "Checkpointer::save");
      const std::string tmp = tmp_dir_for(dir_, step, pid);
      std::string why;
      remove_tree(tmp, &why);
      make_dirs(tmp, "Checkpointer::save");
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  const std::string head = "Checkpointer::save(step " + std::to_string(step) + ") to '" + dir_ + "'";
  Exchange x = exchange(group_, {step, int64_t(fingerprint), pid},
                        !previous.empty() ? previous : error);
  job.tmp_dir = tmp_dir_for(dir_, step, x.values[0][2]);
  auto fail = [&](const std::string& why) {
    if (rank == 0) remove_tree(job.tmp_dir, nullptr);
    job.arena.reset();
    last_blocking_ = seconds_since(t0);
    detail::fail(head, ": ", why);
  };
  if (x.failed) fail(describe_errors(x.errors));
  std::vector<std::string> steps, prints;
  for (int r = 0; r < world; ++r) {
    steps.push_back(std::to_string(x.values[size_t(r)][0]));
    prints.push_back(hex64(uint64_t(x.values[size_t(r)][1])));
  }
  std::string differ = comm::describe_disagreement("step", steps);
  if (differ.empty())
    differ = comm::describe_disagreement(
        "fingerprint of the replicated tensors' names, dtypes and shapes", prints);
  if (!differ.empty())
    fail("the ranks of group '" + group_.name() + "' do not save the same thing:" + differ);

  // Shared filesystem check: every rank must see the directory rank 0 just made.
  std::string unseen;
  if (rank != 0 && !is_dir(job.tmp_dir))
    unseen = "cannot see '" + job.tmp_dir + "', made by rank 0: the ranks must share '" + dir_ +
             "' (one filesystem)";
  Exchange y = exchange(group_, {}, unseen);
  if (y.failed) fail(describe_errors(y.errors));

  pending_ = true;
  pending_step_ = step;
  pending_error_.clear();
  if (options_.async()) {
    worker_ = std::thread([this, job = std::move(job)]() mutable {
      try {
        copy_deferred(job);
        run_save_job(job);
      } catch (const std::exception& e) {
        pending_error_ = e.what();
      }
    });
    last_blocking_ = seconds_since(t0);
    return;
  }
  try {
    run_save_job(job);
  } catch (const std::exception& e) {
    pending_error_ = e.what();
  }
  job.items.clear();
  try {
    wait();
  } catch (...) {
    last_blocking_ = seconds_since(t0);
    throw;
  }
  last_blocking_ = seconds_since(t0);
}

double Checkpointer::last_save_blocking_seconds() const {
  return last_blocking_ + (snapshot_wait_seconds() - waited_at_save_);
}

void Checkpointer::wait() {
  const int64_t step = pending_ ? pending_step_ : -1;
  std::string e = join_pending();
  Exchange x = exchange(group_, {}, e);
  if (x.failed)
    detail::fail("Checkpointer '", dir_, "'", step >= 0 ? ": step " + std::to_string(step) : "",
                 ": a save failed:\n  ", describe_errors(x.errors));
}

Loaded Checkpointer::load_local(const std::string& path) {
  pb::Manifest m = read_manifest(path);
  Loaded l;
  l.step = m.step();
  l.path = path;
  l.saved_world_size = m.world_size();
  l.saved_mesh = {m.mesh().dp(), m.mesh().pp(), m.mesh().tp()};
  l.replicated = read_tensors(path, m, pb::REPLICATED, -1);
  if (m.world_size() == group_.size())
    l.per_rank = read_tensors(path, m, pb::PER_RANK, group_.rank());
  return l;
}

Loaded Checkpointer::load(const std::string& path) {
  wait();
  std::string error;
  Loaded l;
  try {
    l = load_local(path);
  } catch (const std::exception& e) {
    error = e.what();
  }
  Exchange x = exchange(group_, {l.step}, error);
  if (x.failed)
    detail::fail("Checkpointer::load('", path, "'): ", describe_errors(x.errors));
  std::vector<std::string> steps;
  for (auto& v : x.values) steps.push_back(std::to_string(v[0]));
  std::string differ = comm::describe_disagreement("step", steps);
  FATHOM_CHECK(differ.empty(), "Checkpointer::load('", path, "'): the ranks read different ",
               "checkpoints (different paths?):", differ);
  return l;
}

std::optional<Loaded> Checkpointer::load_latest() {
  wait();
  // Rank 0's listing is the one all ranks try, so they walk the same candidates in order.
  std::vector<int64_t> steps;
  std::string error;
  if (group_.rank() == 0) {
    try {
      steps = list_steps(dir_);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  Exchange x = exchange(group_, {int64_t(steps.size())}, error);
  if (x.failed) detail::fail("Checkpointer::load_latest('", dir_, "'): ", describe_errors(x.errors));
  const int64_t count = x.values[0][0];
  if (count == 0) return std::nullopt;
  Tensor list = empty({count}, DType::i64);
  if (group_.rank() == 0) std::memcpy(list.data_ptr(), steps.data(), size_t(count) * 8);
  group_.broadcast(list, 0)->wait();
  steps.assign(list.data<int64_t>(), list.data<int64_t>() + count);

  std::vector<std::string> skipped;
  const bool talk = options_.verbose() && group_.rank() == 0;
  for (int64_t step : steps) {
    const std::string name = step_dir_name(step);
    std::string why;
    Loaded l;
    try {
      l = load_local(dir_ + "/" + name);
    } catch (const std::exception& e) {
      why = e.what();
    }
    Exchange y = exchange(group_, {}, why);
    if (!y.failed) {
      l.skipped = skipped;
      if (talk) {
        std::fprintf(stderr, "Checkpointer: resuming from '%s' (step %lld, saved by %d rank%s)\n",
                     l.path.c_str(), static_cast<long long>(l.step), l.saved_world_size,
                     l.saved_world_size == 1 ? "" : "s");
      }
      return l;
    }
    skipped.push_back(name + ": " + describe_errors(y.errors));
    if (talk) std::fprintf(stderr, "Checkpointer: skipping %s\n", skipped.back().c_str());
  }
  std::string all;
  for (auto& s : skipped) all += "\n  " + s;
  detail::fail("Checkpointer::load_latest: no valid checkpoint in '", dir_, "' (", skipped.size(),
               " step director", skipped.size() == 1 ? "y" : "ies",
               " tried; move or delete them to start afresh):", all);
}

nn::StateDict Checkpointer::load_rank_state(const Loaded& loaded, int saved_rank) {
  FATHOM_CHECK(saved_rank >= 0 && saved_rank < loaded.saved_world_size,
               "Checkpointer::load_rank_state: rank ", saved_rank, " is not in [0, ",
               loaded.saved_world_size, ") (the checkpoint '", loaded.path, "' was saved by ",
               loaded.saved_world_size, " ranks)");
  pb::Manifest m = read_manifest(loaded.path);
  FATHOM_CHECK(m.step() == loaded.step && m.world_size() == loaded.saved_world_size,
               "Checkpointer::load_rank_state: '", loaded.path, "' now holds step ", m.step(),
               " of ", m.world_size(), " ranks, not the step ", loaded.step, " of ",
               loaded.saved_world_size, " ranks it was loaded as");
  return read_tensors(loaded.path, m, pb::PER_RANK, saved_rank);
}

}  // namespace fathom::checkpoint

// The launch environment: which launcher started this process, its rank, size and local rank,
// fathomrun's attempt number, and SLURM's node list (launch_env.h lists the variables).
#include "fathom/comm/launch_env.h"

#include <cctype>
#include <climits>
#include <cstdlib>

#include "fathom/core/error.h"

namespace fathom::comm {
namespace {

// One launcher's view of this process, read from its own variables.
struct Source {
  const char* launcher;  // "openmpi", ...
  const char* what;      // for messages: "Open MPI's mpirun"
  const char *rank_var, *size_var, *local_rank_var, *local_size_var;
  bool is_mpi;  // an MPI launcher (mpirun, mpiexec): SLURM's variables beside it are stale
  int rank = -1, size = -1, local_rank = -1, local_size = -1;
};

int parse_count(const EnvLookup& env, const char* name) {
  if (!name) return -1;
  std::optional<std::string> v = env(name);
  if (!v) return -1;
  const std::string& s = *v;
  bool digits = !s.empty() && s.size() <= 9;
  for (char c : s) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  FATHOM_CHECK(digits, "comm: environment variable ", name, "='", s,
               "' is not a non-negative integer");
  return std::atoi(s.c_str());
}

bool present(const EnvLookup& env, const char* name) { return name && env(name).has_value(); }

void read_source(const EnvLookup& env, Source& s) {
  s.rank = parse_count(env, s.rank_var);
  s.size = parse_count(env, s.size_var);
  s.local_rank = parse_count(env, s.local_rank_var);
  s.local_size = parse_count(env, s.local_size_var);
  FATHOM_CHECK(s.size >= 1, "comm: ", s.size_var, "=", s.size, " (", s.what,
               "): a job has at least one process");
  FATHOM_CHECK(s.rank < s.size, "comm: ", s.rank_var, "=", s.rank, " but ", s.size_var, "=",
               s.size, " (", s.what, "): the rank must be below the number of processes");
  FATHOM_CHECK(s.local_size < 0 || s.local_size >= 1, "comm: ", s.local_size_var, "=0 (", s.what,
               "): a node runs at least one process of the job");
  FATHOM_CHECK(s.local_rank < 0 || s.local_size < 0 || s.local_rank < s.local_size, "comm: ",
               s.local_rank_var, "=", s.local_rank, " but ", s.local_size_var, "=", s.local_size,
               " (", s.what, "): the local rank must be below the processes on the node");
}

// Two launchers that both describe this process must say the same.
void check_agree(const Source& a, const Source& b) {
  auto same = [&](int va, const char* na, int vb, const char* nb) {
    FATHOM_CHECK(va < 0 || vb < 0 || va == vb, "comm: the launch environment disagrees: ", na, "=",
                 va, " (", a.what, ") but ", nb, "=", vb, " (", b.what,
                 "). A stale variable from another launcher (a wrapper script, an exported "
                 "shell variable)? Unset it, or start the job with one launcher");
  };
  same(a.rank, a.rank_var, b.rank, b.rank_var);
  same(a.size, a.size_var, b.size, b.size_var);
  same(a.local_rank, a.local_rank_var, b.local_rank, b.local_rank_var);
  same(a.local_size, a.local_size_var, b.local_size, b.local_size_var);
}

std::string join(const std::vector<std::string>& v, size_t max) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < max; ++i) out += (i ? "," : "") + v[i];
  if (v.size() > max) out += ",...";
  return out;
}

}  // namespace

LaunchEnv read_launch_env(const EnvLookup& env) {
  // In precedence order (launch_env.h says why).
  std::vector<Source> sources = {
      {"openmpi", "Open MPI's mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
       "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", true},
      {"mpich", "MPICH's mpiexec", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", true},
      {"slurm", "an srun step", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", nullptr, false},
      {"torchrun", "torchrun-style", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", false},
  };
  std::vector<Source> found;
  for (Source& s : sources) {
    if (!present(env, s.rank_var) || !present(env, s.size_var)) continue;
    read_source(env, s);
    found.push_back(s);
  }
  if (found.empty() && present(env, "SLURM_PROCID") && present(env, "SLURM_NTASKS")) {
    Source s{"slurm", "a SLURM allocation without srun", "SLURM_PROCID", "SLURM_NTASKS",
             "SLURM_LOCALID", nullptr, false};
    read_source(env, s);
    found.push_back(s);
  }
  for (size_t i = 0; i < found.size(); ++i)
    for (size_t j = i + 1; j < found.size(); ++j) {
      bool slurm_beside_mpi = (found[i].is_mpi && std::string(found[j].launcher) == "slurm") ||
                              (found[j].is_mpi && std::string(found[i].launcher) == "slurm");
      if (!slurm_beside_mpi) check_agree(found[i], found[j]);
    }

  LaunchEnv out;
  if (!found.empty()) {
    const Source& s = found.front();
    out.launcher = s.launcher;
    out.rank = s.rank;
    out.size = s.size;
    out.local_rank = s.local_rank;
    out.local_size = s.local_size;
    out.rank_var = s.rank_var;
    out.size_var = s.size_var;
  }
  if (auto list = env("SLURM_JOB_NODELIST")) out.nodes = expand_nodelist(*list);
  else if (auto old = env("SLURM_NODELIST")) out.nodes = expand_nodelist(*old);
  if (present(env, "FATHOM_RESTART_COUNT")) out.restart_count = parse_count(env, "FATHOM_RESTART_COUNT");
  if (auto sup = env("FATHOM_LAUNCHER")) out.supervisor = *sup;
  out.srun_step = present(env, "SLURM_PROCID") && present(env, "SLURM_STEP_NUM_TASKS");
  out.pmi = present(env, "PMIX_RANK") ? "pmix" : present(env, "PMI_FD") ? "pmi2" : "";
  if (auto t = env("SLURM_MPI_TYPE")) out.srun_mpi_type = *t;
  return out;
}

void check_srun_pmi(const LaunchEnv& env, bool pmix_only) {
  // mpirun inside a step: its ranks inherit the step's variables, but mpirun gave them PMIx.
  if (!env.srun_step || env.launcher == "openmpi" || env.pmi == "pmix") return;
  if (env.pmi == "pmi2" && !pmix_only) return;
  std::string type = env.srun_mpi_type.empty() ? "none" : env.srun_mpi_type;
  std::string who = env.rank >= 0 ? "task " + std::to_string(env.rank) + " of " + std::to_string(env.size)
                                  : "a task";
  detail::fail("comm::init: this process is ", who, " of an srun step started with srun's MPI type '",
               type, "' (", env.pmi.empty() ? "no PMI" : "PMI-2 only", ": no PMIX_RANK in the environment), "
               "but this Open MPI starts under srun only through PMIx",
               pmix_only ? "" : " (or PMI-2 if it was built --with-pmi)",
               ". Run srun --mpi=pmix (fathomrun passes it by default), or set MpiDefault=pmix in "
               "slurm.conf; `srun --mpi=list` shows the types this SLURM has. Or start the ranks "
               "with mpirun inside the allocation");
}

LaunchEnv launch_env() {
  return read_launch_env([](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v || !*v) return std::nullopt;
    return std::string(v);
  });
}

std::string LaunchEnv::describe() const {
  std::string out = launcher + ":";
  if (rank >= 0) out += " rank " + std::to_string(rank);
  if (size >= 0) out += (rank >= 0 ? " of " : " ") + std::to_string(size) + (rank >= 0 ? "" : " processes");
  if (rank < 0 && size < 0) out += " one process";
  if (local_rank >= 0) {
    out += " (local rank " + std::to_string(local_rank);
    if (local_size >= 0) out += " of " + std::to_string(local_size);
    out += ")";
  }
  if (!nodes.empty())
    out += ", " + std::to_string(nodes.size()) + " node(s) " + join(nodes, 4);
  if (!supervisor.empty()) out += ", under " + supervisor;
  if (restart_count > 0 || !supervisor.empty()) out += ", restart " + std::to_string(restart_count);
  return out;
}

namespace {

constexpr size_t kMaxNodes = 1000000;

[[noreturn]] void bad_list(const std::string& list, const std::string& why) {
  detail::fail("comm: cannot expand the SLURM node list '", list, "': ", why);
}

// "01-03,07" -> {"01", "02", "03", "07"}.
std::vector<std::string> expand_ranges(const std::string& list, const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    size_t comma = body.find(',', pos);
    std::string r = body.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t dash = r.find('-');
    std::string lo = r.substr(0, dash), hi = dash == std::string::npos ? lo : r.substr(dash + 1);
    auto number = [&](const std::string& s) {
      bool ok = !s.empty() && s.size() <= 9;
      for (char c : s) ok = ok && std::isdigit(static_cast<unsigned char>(c));
      if (!ok) bad_list(list, "'[" + body + "]' holds '" + r + "', not a number or a range a-b of numbers");
      return std::atol(s.c_str());
    };
    long a = number(lo), b = number(hi);
    if (a > b) bad_list(list, "the range '" + r + "' runs backwards");
    if (out.size() + size_t(b - a + 1) > kMaxNodes)
      bad_list(list, "more than " + std::to_string(kMaxNodes) + " names");
    for (long x = a; x <= b; ++x) {
      std::string s = std::to_string(x);
      if (s.size() < lo.size()) s.insert(0, lo.size() - s.size(), '0');  // "01-03": width 2
      out.push_back(s);
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

// One name pattern, "rack[1-2]-n[01-02]": every combination, the first bracket slowest.
void expand_one(const std::string& list, const std::string& item, std::vector<std::string>& out) {
  if (item.empty()) bad_list(list, "an empty name (two commas in a row, or one at an end)");
  std::vector<std::string> names = {""};
  size_t pos = 0;
  while (pos < item.size()) {
    size_t open = item.find('[', pos);
    std::string text = item.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    if (text.find(']') != std::string::npos) bad_list(list, "a ']' without its '['");
    for (auto& n : names) n += text;
    if (open == std::string::npos) break;
    size_t close = item.find(']', open);
    if (close == std::string::npos) bad_list(list, "a '[' without its ']'");
    std::string body = item.substr(open + 1, close - open - 1);
    if (body.find('[') != std::string::npos) bad_list(list, "brackets inside brackets");
    std::vector<std::string> parts = expand_ranges(list, body);
    if (names.size() * parts.size() + out.size() > kMaxNodes)
      bad_list(list, "more than " + std::to_string(kMaxNodes) + " names");
    std::vector<std::string> next;
    next.reserve(names.size() * parts.size());
    for (const auto& n : names)
      for (const auto& p : parts) next.push_back(n + p);
    names = std::move(next);
    pos = close + 1;
  }
  out.insert(out.end(), names.begin(), names.end());
}

}  // namespace

std::vector<std::string> expand_nodelist(const std::string& list) {
  for (char c : list)
    if (std::isspace(static_cast<unsigned char>(c))) bad_list(list, "it contains white space");
  std::vector<std::string> out;
  if (list.empty()) return out;
  // Split at the commas outside brackets.
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i <= list.size(); ++i) {
    if (i < list.size() && list[i] == '[') ++depth;
    if (i < list.size() && list[i] == ']') --depth;
    if (depth < 0) bad_list(list, "a ']' without its '['");
    if (i == list.size() || (list[i] == ',' && depth == 0)) {
      expand_one(list, list.substr(start, i - start), out);
      start = i + 1;
    }
  }
  if (depth != 0) bad_list(list, "a '[' without its ']'");
  return out;
}

}  // namespace fathom::comm

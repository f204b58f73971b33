// Bootstrap: how was this job started, MPI initialization, the world group, settings from the
// environment, the group registry, tracing, and finalization.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <vector>

#include "fathom/comm/comm.h"
#include "fathom/comm/group_state.h"
#include "fathom/comm/launch_env.h"
#include "fathom/comm/mpi_agreement.h"
#include "fathom/comm/mpi_util.h"
#include "fathom/comm/side_channel.h"
#include "fathom/comm/watchdog.h"

namespace fathom::comm {
namespace internal {
namespace {

struct Runtime {
  std::recursive_mutex mu;  // init/finalize; recursive: finalize's barrier may call world()
  bool initialized = false, finalized = false, owns_mpi = false;
  InitInfo info;
  int world_rank = 0;
  double timeout_s = 600;
  std::atomic<bool> debug{false};
  std::atomic<bool> finalizing{false};

  std::mutex groups_mu;  // separate from `mu`: the watchdog must never wait on finalize
  std::vector<std::weak_ptr<GroupState>> states;
  std::vector<std::weak_ptr<ProcessGroup>> groups;

  std::mutex trace_mu;
  std::FILE* trace = nullptr;
  std::atomic<bool> tracing{false};
};

Runtime& rt() {
  static Runtime* r = new Runtime;  // never destroyed: used from atexit and the watchdog
  return *r;
}

double env_seconds(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  double x = std::strtod(v, &end);
  FATHOM_CHECK(end && *end == '\0' && x > 0, "comm::init: ", name, "='", v,
               "' must be a positive number of seconds");
  return x;
}

// FATHOM_COMM_THREAD_NICE: an integer from -20 to 19, or "off"; unset keeps the default.
CommThreadNice env_thread_nice() {
  CommThreadNice n;
  const char* v = std::getenv("FATHOM_COMM_THREAD_NICE");
  if (!v || !*v) return n;
  n.explicit_value = true;
  if (std::string(v) == "off") {
    n.apply = false;
    return n;
  }
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  FATHOM_CHECK(*end == '\0' && x >= -20 && x <= 19, "comm::init: FATHOM_COMM_THREAD_NICE='", v,
               "' must be an integer from -20 to 19, or 'off'");
  n.nice = int(x);
  return n;
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

std::shared_ptr<ProcessGroup> make_world(int rank, int size, double timeout) {
  auto st = std::make_shared<GroupState>();
  st->name = "world";
  st->rank = rank;
  st->size = size;
  st->timeout_s = timeout;
  for (int r = 0; r < size; ++r) st->world_ranks.push_back(r);
  // Own duplicates: DeepComm's messages never mix with the application's on MPI_COMM_WORLD.
  FATHOM_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &st->comm), "comm::init: MPI_Comm_dup");
  FATHOM_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &st->side), "comm::init: MPI_Comm_dup");
  MPI_Comm_set_errhandler(st->comm, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(st->side, MPI_ERRORS_RETURN);
  st->shm_check = ShmAgreement::open(st->comm, rank, size);
  auto pg = std::make_shared<ProcessGroup>(st);
  register_group(pg);
  return pg;
}

void finalize_at_exit() { finalize(); }

// An exception nobody caught: tell the peers before the process dies (comm::abort), so they
// end now with its message instead of waiting out the timeout in their next collective.
void on_terminate() {
  std::string what = "terminate called without an active exception";
  if (auto e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      what = std::string("uncaught exception: ") + x.what();
    } catch (...) {
      what = "uncaught exception of a type not derived from std::exception";
    }
  }
  comm::abort(what);
}

// Settings that every rank must share, checked once at init: a rank alone in debug mode
// would run an extra fingerprint exchange per collective, and a different thread level a
// different protocol, so the job would hang or fail later with a misleading message.
struct Settings {
  int32_t debug = 0, thread_level = 0;
};
void check_settings_agree(const Settings& mine, int size) {
  std::vector<Settings> all(static_cast<size_t>(size));
  FATHOM_MPI_CHECK(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE,
                                 MPI_COMM_WORLD),
                   "comm::init: settings exchange");
  std::string bad;
  auto field = [&](const char* name, auto get, auto show) {
    std::vector<std::string> per_rank;
    for (const auto& s : all) per_rank.push_back(show(get(s)));
    bad += describe_disagreement(name, per_rank);
  };
  field("FATHOM_COMM_DEBUG", [](const Settings& s) { return s.debug; },
        [](int v) { return std::string(v ? "on" : "off"); });
  field("MPI thread level (FATHOM_COMM_MPI_THREADS)", [](const Settings& s) { return s.thread_level; },
        [](int v) {
          return v == MPI_THREAD_MULTIPLE     ? std::string("multiple")
                 : v == MPI_THREAD_SERIALIZED ? std::string("serialized")
                                              : "other (" + std::to_string(v) + ")";
        });
  FATHOM_CHECK(bad.empty(), "comm::init: settings that must be the same on every rank differ:",
               bad, "\nSet them alike in every rank's environment.");
}

}  // namespace

int world_rank() { return rt().world_rank; }
bool finalizing() { return rt().finalizing.load(std::memory_order_relaxed); }

void register_group(const std::shared_ptr<ProcessGroup>& pg) {
  auto& r = rt();
  std::lock_guard<std::mutex> lk(r.groups_mu);
  // Forget groups that are gone, so a program making many sub-groups does not grow this list.
  std::erase_if(r.states, [](const auto& w) { return w.expired(); });
  std::erase_if(r.groups, [](const auto& w) { return w.expired(); });
  r.states.push_back(pg->state());
  r.groups.push_back(pg);
}

std::vector<std::shared_ptr<GroupState>> live_groups() {
  auto& r = rt();
  std::lock_guard<std::mutex> lk(r.groups_mu);
  std::vector<std::shared_ptr<GroupState>> out;
  for (auto& w : r.states)
    if (auto s = w.lock()) out.push_back(std::move(s));
  return out;
}

bool tracing() { return rt().tracing.load(std::memory_order_relaxed); }

void trace_line(const std::string& line) {
  auto& r = rt();
  std::lock_guard<std::mutex> lk(r.trace_mu);
  if (!r.trace) return;
  std::fputs(line.c_str(), r.trace);
  std::fputc('\n', r.trace);
  // Flushed per line: a trace is most useful for a job that is about to be aborted.
  std::fflush(r.trace);
}

}  // namespace internal

std::string describe_disagreement(const std::string& what, const std::vector<std::string>& per_rank) {
  bool differ = false;
  for (const auto& v : per_rank) differ = differ || v != per_rank[0];
  if (!differ) return "";
  std::string out = "\n  " + what + ":";
  for (size_t r = 0; r < per_rank.size(); ++r)
    out += (r ? ", rank " : " rank ") + std::to_string(r) + " " + per_rank[r];
  return out;
}

using internal::rt;

const InitInfo& init() {
  auto& r = rt();
  std::lock_guard<std::recursive_mutex> lk(r.mu);
  if (r.initialized) return r.info;
  FATHOM_CHECK(!r.finalized, "comm::init: called after comm::finalize(); MPI cannot be "
                             "initialized twice in one process");
  // Before MPI_Init: a malformed or self-contradicting environment is reported as such, not
  // as whatever MPI makes of it.
  LaunchEnv env = launch_env();
  r.timeout_s = internal::env_seconds("FATHOM_COMM_TIMEOUT", 600);
  r.debug = internal::env_flag("FATHOM_COMM_DEBUG");
  internal::set_comm_thread_nice(internal::env_thread_nice());
  const char* level_env = std::getenv("FATHOM_COMM_MPI_THREADS");
  std::string level_name = level_env ? level_env : "multiple";
  FATHOM_CHECK(level_name == "multiple" || level_name == "serialized",
               "comm::init: FATHOM_COMM_MPI_THREADS='", level_name,
               "' must be 'multiple' or 'serialized'");
  int want = level_name == "multiple" ? MPI_THREAD_MULTIPLE : MPI_THREAD_SERIALIZED;

  int already = 0, provided = 0;
  MPI_Initialized(&already);
  if (!already) {
#ifdef OPEN_MPI
    // Open MPI aborts inside MPI_Init of an srun task without PMIx, naming SLURM's build.
    check_srun_pmi(env, /*pmix_only=*/OMPI_MAJOR_VERSION >= 5);
#endif
    // Open MPI spins in its progress loop while a collective waits for a peer. The CPU backend's
    // collectives run on the comm thread, which shares the rank's cores with the training
    // thread (one core each for the main job's two ranks): spinning there took ~1 ms of CPU per
    // step from the training thread. Yielding when idle hands the core back; the main job's
    // two-rank step went from 27-28K to 31-32K samples/s (docs/comm.md). A value the user set
    // (environment or mpirun -mca) wins.
    ::setenv("OMPI_MCA_mpi_yield_when_idle", "1", /*overwrite=*/0);
    FATHOM_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, want, &provided), "comm::init: MPI_Init_thread");
    r.owns_mpi = true;
  } else {
    MPI_Query_thread(&provided);
  }
  FATHOM_CHECK(provided >= MPI_THREAD_SERIALIZED, "comm::init: MPI provides thread level ",
               provided, ", but DeepComm calls MPI from its communication threads and needs at "
               "least MPI_THREAD_SERIALIZED (initialize MPI with MPI_Init_thread, or let "
               "comm::init() do it)");
  internal::set_thread_level(std::min(provided, want));
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  internal::create_mpi_types();

  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  r.world_rank = rank;
  internal::check_settings_agree({int32_t(r.debug.load()), int32_t(std::min(provided, want))}, size);
  // A launcher that promised N processes while MPI sees another number means each process
  // would silently train alone (e.g. torchrun or srun without PMI starting MPI singletons).
  FATHOM_CHECK(env.size < 0 || env.size == size, "comm::init: ", env.size_var, "=", env.size,
               " (launcher: ", env.launcher, ") but MPI sees ", size,
               " process(es). DeepComm bootstraps over MPI: start the job with mpirun, or srun "
               "with PMI/PMIx (srun --mpi=pmix), not with a launcher MPI does not know about");
  FATHOM_CHECK(env.rank < 0 || env.rank == rank, "comm::init: ", env.rank_var, "=", env.rank,
               " (launcher: ", env.launcher, ") but MPI says rank ", rank,
               "; the launcher and MPI disagree about this process");

  // Processes on this node: from MPI's shared-memory split, which every launcher supports.
  MPI_Comm node = MPI_COMM_NULL;
  FATHOM_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node),
                   "comm::init: MPI_Comm_split_type");
  int node_rank = 0, node_size = 1;
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_size(node, &node_size);
  MPI_Comm_free(&node);

  InitInfo& info = r.info;
  info.rank = rank;
  info.world_size = size;
  info.local_rank = env.local_rank >= 0 ? env.local_rank : node_rank;
  info.local_size = node_size;
  info.launcher = env.launcher;
  info.mpi_thread_level = std::min(provided, want);
  if (cuda_available() && cuda_device_count() > 0)
    info.device = Device::cuda(info.local_rank % cuda_device_count());
  info.world = internal::make_world(rank, size, r.timeout_s);
  internal::open_side_channel(MPI_COMM_WORLD);

  r.initialized = true;
  internal::start_watchdog();
  if (const char* t = std::getenv("FATHOM_COMM_TRACE"); t && *t) set_trace(t);
  static bool hooked = false;
  if (!hooked) {
    std::atexit(internal::finalize_at_exit);
    std::set_terminate(internal::on_terminate);
    hooked = true;
  }
  return info;
}

ProcessGroup& world() { return *init().world; }

bool is_initialized() {
  auto& r = rt();
  std::lock_guard<std::recursive_mutex> lk(r.mu);
  return r.initialized && !r.finalized;
}

void finalize() {
  auto& r = rt();
  std::lock_guard<std::recursive_mutex> lk(r.mu);
  if (!r.initialized || r.finalized) return;
  // A last world barrier, watched like any collective: a rank that finishes early keeps
  // answering the watchdog's questions until every rank is here, instead of vanishing into
  // MPI_Finalize while a peer is stuck.
  // It is marked (kFinalBarrier): a peer still in a collective gets, at once from the
  // agreement check, an error saying this rank is exiting.
  r.finalizing = true;
  // And it says so over the side channel: a peer blocked in a call this rank never made (a
  // recv from it, a sub-group's collective) asks it, and fails naming it instead of waiting
  // for the timeout (watchdog.cpp). Not confirmed: queued on each socket is enough.
  if (r.info.world_size > 1 && internal::side_channel_open()) {
    internal::Notice exiting;
    exiting.kind = internal::NoticeKind::exiting;
    internal::notify_peers(exiting, 1.0, false);
  }
  try {
    r.info.world->barrier()->wait();
  } catch (const std::exception& e) {
    // The ranks are out of step (a peer is in another collective): MPI_Finalize would wait
    // for it forever, so end the job now with the reason.
    r.finalizing = false;
    comm::abort(std::string("comm::finalize: the final barrier failed: ") + e.what());
  }
  r.finalizing = false;
  std::vector<std::shared_ptr<ProcessGroup>> groups;
  {
    std::lock_guard<std::mutex> g(r.groups_mu);
    for (auto& w : r.groups)
      if (auto pg = w.lock()) groups.push_back(std::move(pg));
  }
  for (auto& pg : groups) pg->shutdown();
  groups.clear();
  internal::stop_watchdog();
  internal::close_side_channel();
  set_trace("");
  internal::free_mpi_types();
  r.finalized = true;
  if (r.owns_mpi) {
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
  }
}

void set_trace(const std::string& prefix) {
  auto& r = rt();
  std::lock_guard<std::mutex> lk(r.trace_mu);
  if (r.trace) std::fclose(r.trace);
  r.trace = nullptr;
  r.tracing = false;
  if (prefix.empty()) return;
  std::string path = prefix + ".rank" + std::to_string(r.world_rank) + ".jsonl";
  r.trace = std::fopen(path.c_str(), "w");
  FATHOM_CHECK(r.trace, "comm: cannot open the trace file '", path,
               "' for writing (FATHOM_COMM_TRACE or set_trace prefix '", prefix, "')");
  r.tracing = true;
}

void set_debug(bool on) { rt().debug = on; }
bool debug_enabled() { return rt().debug.load(std::memory_order_relaxed); }

}  // namespace fathom::comm

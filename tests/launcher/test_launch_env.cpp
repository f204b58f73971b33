// comm::launch_env: each launcher's variables, their cross-checks, fathomrun's attempt number,
// and SLURM node-list expansion. One process; environments are maps, except one case that
// sets the real environment (and puts it back).
#include <cstdlib>
#include <map>
#include <optional>

#include "fathom/comm/launch_env.h"
#include "testing.h"

using namespace fathom;
using comm::LaunchEnv;
using Env = std::map<std::string, std::string>;

namespace {

LaunchEnv read(const Env& env) {
  return comm::read_launch_env([&](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end() || it->second.empty()) return std::nullopt;
    return it->second;
  });
}

const Env kOmpi = {{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}};

Env with(Env base, const Env& more) {
  for (auto& [k, v] : more) base[k] = v;
  return base;
}

}  // namespace

TEST_CASE("launch_env: no launcher is one process") {
  LaunchEnv e = read({});
  CHECK(e.launcher == "single");
  CHECK(e.rank == -1);
  CHECK(e.size == -1);
  CHECK(e.local_rank == -1);
  CHECK(e.restart_count == 0);
  CHECK(e.supervisor.empty());
  CHECK(e.nodes.empty());
  CHECK(e.describe() == "single: one process");
}

TEST_CASE("launch_env: Open MPI's mpirun") {
  LaunchEnv e = read(kOmpi);
  CHECK(e.launcher == "openmpi");
  CHECK(e.rank == 1);
  CHECK(e.size == 4);
  CHECK(e.local_rank == 1);
  CHECK(e.local_size == 2);
  CHECK(e.rank_var == "OMPI_COMM_WORLD_RANK");
  CHECK(e.size_var == "OMPI_COMM_WORLD_SIZE");
  CHECK(e.describe() == "openmpi: rank 1 of 4 (local rank 1 of 2)");
}

TEST_CASE("launch_env: MPICH's mpiexec") {
  LaunchEnv e = read({{"PMI_RANK", "2"}, {"PMI_SIZE", "3"}, {"MPI_LOCALRANKID", "0"}});
  CHECK(e.launcher == "mpich");
  CHECK(e.rank == 2);
  CHECK(e.size == 3);
  CHECK(e.local_rank == 0);
  CHECK(e.local_size == -1);
}

TEST_CASE("launch_env: an srun step, with its nodes") {
  LaunchEnv e = read({{"SLURM_PROCID", "5"}, {"SLURM_STEP_NUM_TASKS", "8"}, {"SLURM_NTASKS", "16"},
                      {"SLURM_LOCALID", "1"}, {"SLURM_JOB_NODELIST", "node[01-03,07]"},
                      {"SLURM_NODELIST", "ignored"}});
  CHECK(e.launcher == "slurm");
  CHECK(e.rank == 5);
  CHECK(e.size == 8);  // the step's tasks, not the allocation's
  CHECK(e.size_var == "SLURM_STEP_NUM_TASKS");
  CHECK(e.local_rank == 1);
  CHECK(e.nodes == std::vector<std::string>{"node01", "node02", "node03", "node07"});
  CHECK(e.describe() == "slurm: rank 5 of 8 (local rank 1), 4 node(s) node01,node02,node03,node07");
  // SLURM_NODELIST, the older name, when SLURM_JOB_NODELIST is not there.
  CHECK(read({{"SLURM_NODELIST", "a,b[1-2]"}}).nodes == std::vector<std::string>{"a", "b1", "b2"});
}

TEST_CASE("launch_env: a SLURM allocation without srun counts only when nothing else is there") {
  Env batch = {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}};
  LaunchEnv e = read(batch);
  CHECK(e.launcher == "slurm");
  CHECK(e.size == 4);
  CHECK(e.size_var == "SLURM_NTASKS");
  // torchrun-style variables beside it win, and are not compared with it.
  LaunchEnv t = read(with(batch, {{"RANK", "0"}, {"WORLD_SIZE", "1"}}));
  CHECK(t.launcher == "torchrun");
  CHECK(t.size == 1);
}

TEST_CASE("launch_env: torchrun-style") {
  LaunchEnv e = read({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"}});
  CHECK(e.launcher == "torchrun");
  CHECK(e.rank == 3);
  CHECK(e.size == 4);
  CHECK(e.local_rank == 1);
  CHECK(e.local_size == 2);
  // WORLD_SIZE alone (no RANK) describes no process.
  CHECK(read({{"WORLD_SIZE", "4"}}).launcher == "single");
}

TEST_CASE("launch_env: several launchers must agree") {
  // A wrapper that exports RANK=$OMPI_COMM_WORLD_RANK: fine, mpirun's are used.
  LaunchEnv ok = read(with(kOmpi, {{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}}));
  CHECK(ok.launcher == "openmpi");
  // A stale RANK: an error naming both variables and both launchers.
  CHECK_THROWS_WITH(read(with(kOmpi, {{"RANK", "0"}, {"WORLD_SIZE", "4"}})),
                    Catch::StartsWith("comm: the launch environment disagrees: OMPI_COMM_WORLD_RANK=1 "
                                      "(Open MPI's mpirun) but RANK=0 (torchrun-style)"));
  CHECK_THROWS_WITH(read(with(kOmpi, {{"RANK", "1"}, {"WORLD_SIZE", "2"}})),
                    Catch::Contains("OMPI_COMM_WORLD_SIZE=4 (Open MPI's mpirun) but WORLD_SIZE=2"));
  CHECK_THROWS_WITH(read(with(kOmpi, {{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}})),
                    Catch::Contains("OMPI_COMM_WORLD_LOCAL_RANK=1 (Open MPI's mpirun) but LOCAL_RANK=0"));
  // An srun step and torchrun-style variables are compared too.
  Env step = {{"SLURM_PROCID", "2"}, {"SLURM_STEP_NUM_TASKS", "4"}};
  CHECK(read(with(step, {{"RANK", "2"}, {"WORLD_SIZE", "4"}})).launcher == "slurm");
  CHECK_THROWS_WITH(read(with(step, {{"RANK", "3"}, {"WORLD_SIZE", "4"}})),
                    Catch::Contains("SLURM_PROCID=2 (an srun step) but RANK=3 (torchrun-style)"));
}

TEST_CASE("launch_env: SLURM's variables beside mpirun's describe another step and are not compared") {
  // mpirun -n 4 inside an sbatch script (or its daemons' srun step): every rank inherits
  // the step's SLURM_PROCID and task count.
  LaunchEnv e = read(with(kOmpi, {{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "1"}, {"SLURM_NTASKS", "2"},
                                  {"SLURM_JOB_NODELIST", "n[1-2]"}}));
  CHECK(e.launcher == "openmpi");
  CHECK(e.rank == 1);
  CHECK(e.size == 4);
  CHECK(e.nodes == std::vector<std::string>{"n1", "n2"});
}

TEST_CASE("check_srun_pmi: Open MPI under srun needs PMIx, and says so before MPI_Init") {
  // What srun -n 2 gives task 1 under each --mpi (as SLURM 22.05 sets them).
  Env step = {{"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_NTASKS", "2"},
              {"SLURM_STEP_ID", "0"}, {"SLURM_LOCALID", "1"}};
  Env pmix = with(step, {{"SLURM_MPI_TYPE", "pmix"}, {"PMIX_RANK", "1"}, {"PMIX_NAMESPACE", "slurm.pmix.7.0"}});
  Env pmi2 = with(step, {{"SLURM_MPI_TYPE", "pmi2"}, {"PMI_FD", "11"}, {"PMI_RANK", "1"}, {"PMI_SIZE", "2"}});
  LaunchEnv none_env = read(step), pmix_env = read(pmix), pmi2_env = read(pmi2);
  CHECK(none_env.srun_step);
  CHECK(none_env.pmi.empty());
  CHECK(none_env.srun_mpi_type.empty());
  CHECK(pmix_env.pmi == "pmix");
  CHECK(pmix_env.srun_mpi_type == "pmix");
  CHECK(pmi2_env.pmi == "pmi2");
  CHECK(pmi2_env.launcher == "mpich");  // PMI_RANK and PMI_SIZE, agreeing with SLURM's
  CHECK(pmi2_env.rank == 1);

  CHECK_NOTHROW(comm::check_srun_pmi(pmix_env, true));
  CHECK_NOTHROW(comm::check_srun_pmi(pmix_env, false));
  CHECK_THROWS_WITH(comm::check_srun_pmi(none_env, false),
                    Catch::StartsWith("comm::init: this process is task 1 of 2 of an srun step started "
                                      "with srun's MPI type 'none' (no PMI: no PMIX_RANK in the environment)") &&
                        Catch::Contains("Run srun --mpi=pmix (fathomrun passes it by default), or set "
                                        "MpiDefault=pmix in slurm.conf"));
  // PMI-2 is enough for an Open MPI 4 built --with-pmi; Open MPI 5 has only PMIx.
  CHECK_NOTHROW(comm::check_srun_pmi(pmi2_env, false));
  CHECK_THROWS_WITH(comm::check_srun_pmi(pmi2_env, true),
                    Catch::Contains("srun's MPI type 'pmi2' (PMI-2 only") &&
                        !Catch::Contains("built --with-pmi"));
  // Not srun tasks: mpirun (also inside a step: mpirun gives PMIx), a batch script, no launcher.
  CHECK_NOTHROW(comm::check_srun_pmi(read(with(kOmpi, step)), true));
  CHECK_NOTHROW(comm::check_srun_pmi(read({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}), true));
  CHECK_NOTHROW(comm::check_srun_pmi(read({}), true));
  CHECK_NOTHROW(comm::check_srun_pmi(read({{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}, {"PMI_FD", "5"}}), true));
}

TEST_CASE("launch_env: malformed values name the variable") {
  CHECK_THROWS_WITH(read({{"RANK", "abc"}, {"WORLD_SIZE", "2"}}),
                    "comm: environment variable RANK='abc' is not a non-negative integer");
  CHECK_THROWS_WITH(read({{"RANK", "-1"}, {"WORLD_SIZE", "2"}}),
                    "comm: environment variable RANK='-1' is not a non-negative integer");
  CHECK_THROWS_WITH(read({{"RANK", "1"}, {"WORLD_SIZE", " 2"}}),
                    "comm: environment variable WORLD_SIZE=' 2' is not a non-negative integer");
  CHECK_THROWS_WITH(read({{"RANK", "1"}, {"WORLD_SIZE", "99999999999"}}),
                    Catch::Contains("WORLD_SIZE='99999999999' is not a non-negative integer"));
  CHECK_THROWS_WITH(read({{"OMPI_COMM_WORLD_RANK", "4"}, {"OMPI_COMM_WORLD_SIZE", "4"}}),
                    Catch::StartsWith("comm: OMPI_COMM_WORLD_RANK=4 but OMPI_COMM_WORLD_SIZE=4 (Open MPI's "
                                      "mpirun): the rank must be below the number of processes"));
  CHECK_THROWS_WITH(read({{"RANK", "0"}, {"WORLD_SIZE", "0"}}), Catch::Contains("WORLD_SIZE=0"));
  CHECK_THROWS_WITH(read({{"RANK", "0"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}}),
                    Catch::Contains("LOCAL_RANK=2 but LOCAL_WORLD_SIZE=2"));
  CHECK_THROWS_WITH(read({{"FATHOM_RESTART_COUNT", "one"}}),
                    "comm: environment variable FATHOM_RESTART_COUNT='one' is not a non-negative integer");
  CHECK_THROWS_WITH(read({{"SLURM_JOB_NODELIST", "node[1-"}}),
                    Catch::StartsWith("comm: cannot expand the SLURM node list 'node[1-'"));
}

TEST_CASE("launch_env: fathomrun's attempt number") {
  LaunchEnv e = read(with(kOmpi, {{"FATHOM_RESTART_COUNT", "2"}, {"FATHOM_LAUNCHER", "fathomrun"}}));
  CHECK(e.restart_count == 2);
  CHECK(e.supervisor == "fathomrun");
  CHECK(e.describe() == "openmpi: rank 1 of 4 (local rank 1 of 2), under fathomrun, restart 2");
}

TEST_CASE("launch_env: reads the process environment") {
  // Put back whatever was there (under mpirun the OMPI_ variables are real).
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "FATHOM_RESTART_COUNT", "OMPI_COMM_WORLD_SIZE",
                        "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "SLURM_PROCID", "SLURM_JOB_NODELIST"}) {
    const char* old = std::getenv(v);
    saved.emplace_back(v, old ? std::optional<std::string>(old) : std::nullopt);
    unsetenv(v);
  }
  setenv("RANK", "0", 1);
  setenv("WORLD_SIZE", "1", 1);
  setenv("FATHOM_RESTART_COUNT", "4", 1);
  setenv("SLURM_JOB_NODELIST", "gpu[7-8]", 1);
  LaunchEnv e = comm::launch_env();
  setenv("FATHOM_RESTART_COUNT", "", 1);  // empty is unset
  LaunchEnv empty = comm::launch_env();
  for (auto& [k, v] : saved) {
    if (v) setenv(k.c_str(), v->c_str(), 1);
    else unsetenv(k.c_str());
  }
  CHECK(e.launcher == "torchrun");
  CHECK(e.rank == 0);
  CHECK(e.size == 1);
  CHECK(e.restart_count == 4);
  CHECK(e.nodes == std::vector<std::string>{"gpu7", "gpu8"});
  CHECK(empty.restart_count == 0);
}

TEST_CASE("expand_nodelist: ranges, padding, several brackets, suffixes") {
  using V = std::vector<std::string>;
  CHECK(comm::expand_nodelist("") == V{});
  CHECK(comm::expand_nodelist("gpu5") == V{"gpu5"});
  CHECK(comm::expand_nodelist("node[01-03,07],gpu5") == V{"node01", "node02", "node03", "node07", "gpu5"});
  CHECK(comm::expand_nodelist("n[8-10]") == V{"n8", "n9", "n10"});
  CHECK(comm::expand_nodelist("n[08-10]") == V{"n08", "n09", "n10"});
  CHECK(comm::expand_nodelist("n[098-101]") == V{"n098", "n099", "n100", "n101"});
  CHECK(comm::expand_nodelist("n[3]") == V{"n3"});
  CHECK(comm::expand_nodelist("x[1-2]-ib") == V{"x1-ib", "x2-ib"});
  CHECK(comm::expand_nodelist("rack[1-2]-n[1-2]") == V{"rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"});
  CHECK(comm::expand_nodelist("a[1,3],b.example.org,c[5-6]") == V{"a1", "a3", "b.example.org", "c5", "c6"});
  CHECK(comm::expand_nodelist("n[0-999]").size() == 1000);
}

TEST_CASE("expand_nodelist: malformed lists are errors naming the problem") {
  auto err = [](const std::string& list, const std::string& why) {
    CHECK_THROWS_WITH(comm::expand_nodelist(list), "comm: cannot expand the SLURM node list '" + list + "': " + why);
  };
  err("node[01-03", "a '[' without its ']'");
  err("node01]", "a ']' without its '['");
  err("node]1[", "a ']' without its '['");
  err("node[3-1]", "the range '3-1' runs backwards");
  err("node[a-b]", "'[a-b]' holds 'a-b', not a number or a range a-b of numbers");
  err("node[]", "'[]' holds '', not a number or a range a-b of numbers");
  err("node[1-]", "'[1-]' holds '1-', not a number or a range a-b of numbers");
  err("node[1,,2]", "'[1,,2]' holds '', not a number or a range a-b of numbers");
  err("a,,b", "an empty name (two commas in a row, or one at an end)");
  err("a,", "an empty name (two commas in a row, or one at an end)");
  err("n[[1]]", "brackets inside brackets");
  err("a b", "it contains white space");
  err("n[0-1000000]", "more than 1000000 names");
  err("r[0-999]-n[0-9999]", "more than 1000000 names");
}

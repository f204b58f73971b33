// Which launcher starts the ranks, and its command line.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "process.h"
#include "supervisor.h"

namespace fathomrun {
namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

}  // namespace

Plan make_plan(const Options& o) {
  Plan p;
  bool slurm = !env_or("SLURM_JOB_ID", "").empty();
  std::string launcher = o.launcher;
  if (launcher == "auto") {
    if (!o.mpirun.empty()) launcher = "mpirun";
    else if (slurm) launcher = "srun";
    else if (o.nprocs <= 1) launcher = "local";
    else launcher = "mpirun";
  }
  p.nprocs = o.nprocs;
  if (p.nprocs == 0) {
    std::string tasks = env_or("SLURM_NTASKS", "1");
    p.nprocs = launcher == "srun" ? std::max(1, std::atoi(tasks.c_str())) : 1;
  }
  if (launcher == "local" && p.nprocs > 1)
    throw UsageError("--launcher local runs one process, but -n is " + std::to_string(p.nprocs) +
                     ": use mpirun or srun for more (see fathomrun --help)");
  if (!o.hostfile.empty() && launcher != "mpirun")
    throw UsageError("--hostfile is for mpirun, but the ranks are started by " + launcher +
                     " (see fathomrun --help)");

  std::string program = find_executable(o.command[0]);
  if (program.empty())
    throw LaunchError("fathomrun: cannot find the program '" + o.command[0] + "'" +
                          (o.command[0].find('/') == std::string::npos ? " on the PATH"
                                                                        : " (no such executable file)"),
                      127);
  p.env = {"FATHOM_LAUNCHER=fathomrun"};
  if (launcher == "mpirun") {
    p.via = Via::mpirun;
    std::string mpirun = find_executable(o.mpirun.empty() ? "mpirun" : o.mpirun);
    if (mpirun.empty())
      throw LaunchError(
          o.mpirun.empty()
              ? "fathomrun: cannot find mpirun on the PATH, and -n " + std::to_string(p.nprocs) +
                    " needs an MPI launcher. Install Open MPI (apt-get install openmpi-bin), pass "
                    "--mpirun PATH, run inside a SLURM job (srun is used when SLURM_JOB_ID is set), "
                    "or use -n 1"
              : "fathomrun: --mpirun '" + o.mpirun + "' is not an executable file",
          127);
    if (geteuid() == 0)  // Open MPI refuses root unless told, and a container often is root
      for (const char* name : {"OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"})
        if (env_or(name, "").empty()) p.env.push_back(std::string(name) + "=1");
    p.argv = {mpirun, "-n", std::to_string(p.nprocs), "--tag-output", "--bind-to", "none"};
    if (o.hostfile.empty()) p.argv.push_back("--oversubscribe");
    else p.argv.insert(p.argv.end(), {"--hostfile", o.hostfile});
    // mpirun gives remote ranks only the variables it is told to.
    p.argv.insert(p.argv.end(), {"-x", "FATHOM_RESTART_COUNT", "-x", "FATHOM_LAUNCHER"});
  } else if (launcher == "srun") {
    p.via = Via::srun;
    std::string srun = find_executable(o.srun.empty() ? "srun" : o.srun);
    if (srun.empty())
      throw LaunchError(o.srun.empty() ? std::string("fathomrun: ") +
                                             (slurm ? "SLURM_JOB_ID is set (a SLURM job), but " : "") +
                                             "srun is not on the PATH; pass --srun PATH, or "
                                             "--launcher mpirun"
                                       : "fathomrun: --srun '" + o.srun + "' is not an executable file",
                        127);
    p.argv = {srun, "-n", std::to_string(p.nprocs), "--label", "--kill-on-bad-exit=1"};
    // Open MPI starts under srun only through PMIx (Debian's SLURM defaults to MpiDefault=none,
    // which makes every rank abort in MPI_Init). An --mpi the user gives, as --launcher-arg or
    // srun's own SLURM_MPI_TYPE, wins.
    bool mpi_given = !env_or("SLURM_MPI_TYPE", "").empty();
    for (const auto& a : o.launcher_args) mpi_given = mpi_given || a == "--mpi" || a.rfind("--mpi=", 0) == 0;
    if (!mpi_given) p.argv.push_back("--mpi=pmix");
  } else {
    p.via = Via::local;
  }
  p.argv.insert(p.argv.end(), o.launcher_args.begin(), o.launcher_args.end());
  if (p.via == Via::local && !o.launcher_args.empty())
    throw UsageError("--launcher-arg is for mpirun or srun, but -n 1 runs the program itself "
                     "(pass --launcher mpirun to use mpirun; see fathomrun --help)");
  p.argv.push_back(p.via == Via::local ? program : o.command[0]);
  p.argv.insert(p.argv.end(), o.command.begin() + 1, o.command.end());
  return p;
}

}  // namespace fathomrun

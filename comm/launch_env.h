#pragma once
// Where the launcher put this process, as the environment says (before or without MPI):
//
//   comm::LaunchEnv env = comm::launch_env();
//   std::printf("%s\n", env.describe().c_str());   // "openmpi: rank 1 of 4, local rank 1, ..."
//   if (env.restart_count > 0) ...                  // fathomrun restarted the job
//
// Sources, in the order one is chosen as *the* launcher:
//   openmpi   mpirun:            OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE
//   mpich     Hydra (mpiexec):   PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS
//   slurm     an srun step:      SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID
//   torchrun  torchrun-style:    RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE
//   slurm     a batch script or salloc shell without srun: SLURM_PROCID, SLURM_NTASKS
//             (the allocation's task count; used only when nothing else is there)
//   single    none of these: one process.
// Several may be present at once. torchrun-style variables next to another source must agree
// with it (a wrapper that exports RANK=$SLURM_PROCID is fine; a stale RANK is an error naming
// both). SLURM's variables next to mpirun's are not compared: mpirun inside an allocation
// leaves the batch step's SLURM_PROCID (or its daemons' step's) in every rank's environment,
// describing that step, not the ranks.
//
// Also read: FATHOM_RESTART_COUNT and FATHOM_LAUNCHER (set by fathomrun on each attempt) and
// the job's nodes, SLURM_JOB_NODELIST (or SLURM_NODELIST) expanded: "node[01-03,07],gpu5" is
// node01, node02, node03, node07, gpu5. comm::init() reads the same LaunchEnv and checks it
// against MPI's own rank and size.
//
// And what srun gave the task for MPI to start with: PMIX_RANK (srun --mpi=pmix) or PMI_FD
// (--mpi=pmi2, or MPICH's Hydra). Open MPI started by srun without PMIx aborts inside
// MPI_Init with a message about rebuilding SLURM; check_srun_pmi() says what to run instead.
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace fathom::comm {

struct LaunchEnv {
  std::string launcher = "single";  // "openmpi", "mpich", "slurm", "torchrun" or "single"
  // -1 where the launcher does not say. The names are the variables they came from, for
  // messages ("OMPI_COMM_WORLD_SIZE").
  int rank = -1, size = -1, local_rank = -1, local_size = -1;
  std::string rank_var, size_var;
  std::vector<std::string> nodes;  // the job's nodes (SLURM), in SLURM's order; else empty
  // fathomrun's attempt number: 0 for the first run, k after k restarts (0 when unset).
  int restart_count = 0;
  std::string supervisor;  // FATHOM_LAUNCHER: "fathomrun" under fathomrun, else ""
  // A task of an srun step (SLURM_PROCID and SLURM_STEP_NUM_TASKS), whichever source was
  // chosen; also true for mpirun run inside a step, whose ranks inherit the step's variables.
  bool srun_step = false;
  // The process-management interface the launcher gave: "pmix" (PMIX_RANK), "pmi2" (PMI_FD:
  // srun --mpi=pmi2, MPICH's Hydra) or "" (none: srun --mpi=none, or no launcher).
  std::string pmi;
  std::string srun_mpi_type;  // SLURM_MPI_TYPE, srun's --mpi (unset under --mpi=none)

  // One line for logs: "openmpi: rank 1 of 4 (local 1 of 2), restart 2 under fathomrun".
  std::string describe() const;
};

// Looks an environment variable up: nullopt when unset. Empty values count as unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// Reads this process's environment. Throws fathom::Error naming the variable when a value is
// malformed (RANK=abc), out of range (rank >= size), or when two sources disagree.
LaunchEnv launch_env();
// The same from any lookup (tests; programs that vet another process's environment).
LaunchEnv read_launch_env(const EnvLookup& env);

// Open MPI under srun: MPI_Init of an srun task works only through PMIx (Open MPI 5, and
// Debian's 4.1), or PMI-2 for an Open MPI 4 built --with-pmi. Throws fathom::Error, before
// MPI_Init aborts the process with a less useful message, when `env` is an srun task with no
// PMIx and either no PMI at all or `pmix_only` (the MPI has no PMI-2 support). The message
// names srun's MPI type and says what to run: srun --mpi=pmix (fathomrun passes it) or
// MpiDefault=pmix in slurm.conf. Anything but an srun task passes.
void check_srun_pmi(const LaunchEnv& env, bool pmix_only);

// Expands a SLURM host list: "node[01-03,07],gpu5,rack[1-2]-n[1-2]" gives node01 node02
// node03 node07 gpu5 rack1-n1 rack1-n2 rack2-n1 rack2-n2. A range keeps its zero padding
// (the width of its first number). Throws fathom::Error naming the list on unbalanced
// brackets, an empty name, a reversed or malformed range, or more than 1,000,000 names.
std::vector<std::string> expand_nodelist(const std::string& list);

}  // namespace fathom::comm

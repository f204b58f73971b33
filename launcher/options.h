#pragma once
// fathomrun's command line: what to run, how many ranks, and the restart policy.
#include <stdexcept>
#include <string>
#include <vector>

namespace fathomrun {

// A command line fathomrun cannot use; main prints it and exits with status 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  int nprocs = 0;              // -n; 0: not given (SLURM_NTASKS under SLURM, else 1)
  int max_restarts = 0;        // restarts after the first attempt fails
  double hang_timeout = 0;     // seconds without output before the job counts as hung; 0: off
  double stop_timeout = 10;    // seconds a stopping job may take before every process is killed
  double restart_delay = 1;    // seconds between a failed attempt and the next
  std::string launcher = "auto";  // auto, mpirun, srun or local
  std::string mpirun, srun;       // explicit paths (--mpirun, --srun)
  std::string hostfile;           // mpirun --hostfile
  std::vector<std::string> launcher_args;  // --launcher-arg, passed to mpirun or srun
  bool dry_run = false;
  bool help = false;
  std::vector<std::string> command;  // the program and its arguments
};

// Parses argv[1..]. Options end at "--" or at the first argument that is not an option.
// Throws UsageError naming the bad argument.
Options parse_options(const std::vector<std::string>& args);

// The text of --help.
std::string usage();

}  // namespace fathomrun

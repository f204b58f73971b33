#pragma once
// The supervisor: runs the job attempt after attempt until it succeeds, is stopped, or has
// failed --max-restarts + 1 times, then prints a summary.
#include <stdexcept>
#include <string>
#include <vector>

#include "options.h"
#include "output.h"

namespace fathomrun {

// A job that cannot be started at all (no mpirun, no program); main exits with `status`.
class LaunchError : public std::runtime_error {
 public:
  LaunchError(const std::string& msg, int status) : std::runtime_error(msg), status(status) {}
  int status;
};

// What each attempt runs.
struct Plan {
  Via via = Via::local;
  int nprocs = 1;
  std::vector<std::string> argv;  // mpirun/srun and its flags, then the program and its args
  std::vector<std::string> env;   // NAME=value added for every attempt
};

// Chooses the launcher and builds its command line from the options and this process's
// environment. Throws UsageError (status 2) or LaunchError (status 127).
Plan make_plan(const Options& opts);

// The environment of attempt k: plan.env plus FATHOM_RESTART_COUNT=k.
std::vector<std::string> attempt_env(const Plan& plan, int attempt);

// Runs the job; returns fathomrun's exit status (options.cpp's usage() lists them).
int supervise(const Options& opts, const Plan& plan);

}  // namespace fathomrun

// fathomrun's flags and --help.
#include "options.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace fathomrun {
namespace {

[[noreturn]] void bad(const std::string& msg) {
  throw UsageError(msg + " (see fathomrun --help)");
}

int parse_int(const std::string& flag, const std::string& v, int min) {
  bool digits = !v.empty() && v.size() <= 9;
  for (char c : v) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  if (!digits) bad(flag + " '" + v + "' is not a whole number");
  int x = std::atoi(v.c_str());
  if (x < min) bad(flag + " " + v + " must be at least " + std::to_string(min));
  return x;
}

double parse_seconds(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  double x = v.empty() ? NAN : std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno != 0 || !std::isfinite(x) || x < 0 || x > 1e7)
    bad(flag + " '" + v + "' is not a number of seconds from 0 to 10000000");
  return x;
}

}  // namespace

Options parse_options(const std::vector<std::string>& args) {
  Options o;
  size_t i = 0;
  // "--flag value" or "--flag=value"; -n also as "-n4" and -np (mpirun's spelling).
  auto value = [&](const std::string& flag, std::string& inline_value, bool has_inline) {
    if (has_inline) return inline_value;
    if (i + 1 >= args.size()) bad(flag + " needs a value");
    return args[++i];
  };
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a.empty() || a[0] != '-' || a == "-") break;  // the program
    std::string flag = a, v;
    bool has_inline = false;
    if (size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      flag = a.substr(0, eq);
      v = a.substr(eq + 1);
      has_inline = true;
    } else if (a.rfind("-n", 0) == 0 && a.size() > 2 && a != "-np" &&
               std::isdigit(static_cast<unsigned char>(a[2]))) {
      flag = "-n";
      v = a.substr(2);
      has_inline = true;
    }
    if (flag == "-h" || flag == "--help") {
      o.help = true;
    } else if (flag == "-n" || flag == "-np" || flag == "--nprocs") {
      o.nprocs = parse_int(flag, value(flag, v, has_inline), 1);
    } else if (flag == "--max-restarts") {
      o.max_restarts = parse_int(flag, value(flag, v, has_inline), 0);
    } else if (flag == "--hang-timeout") {
      o.hang_timeout = parse_seconds(flag, value(flag, v, has_inline));
    } else if (flag == "--stop-timeout") {
      o.stop_timeout = parse_seconds(flag, value(flag, v, has_inline));
    } else if (flag == "--restart-delay") {
      o.restart_delay = parse_seconds(flag, value(flag, v, has_inline));
    } else if (flag == "--launcher") {
      o.launcher = value(flag, v, has_inline);
      if (o.launcher != "auto" && o.launcher != "mpirun" && o.launcher != "srun" && o.launcher != "local")
        bad("--launcher '" + o.launcher + "' must be auto, mpirun, srun or local");
    } else if (flag == "--mpirun") {
      o.mpirun = value(flag, v, has_inline);
      if (o.mpirun.empty()) bad("--mpirun needs a path");
    } else if (flag == "--srun") {
      o.srun = value(flag, v, has_inline);
      if (o.srun.empty()) bad("--srun needs a path");
    } else if (flag == "--hostfile") {
      o.hostfile = value(flag, v, has_inline);
      if (o.hostfile.empty()) bad("--hostfile needs a path");
    } else if (flag == "--launcher-arg") {
      o.launcher_args.push_back(value(flag, v, has_inline));
    } else if (flag == "--dry-run") {
      if (has_inline) bad("--dry-run takes no value");
      o.dry_run = true;
    } else {
      bad("unknown option '" + a + "'");
    }
    if (has_inline && (flag == "-h" || flag == "--help")) bad(flag + " takes no value");
  }
  o.command.assign(args.begin() + long(std::min(i, args.size())), args.end());
  if (!o.help && o.command.empty()) bad("no program to run: fathomrun [options] [--] PROGRAM [ARGS...]");
  return o;
}

std::string usage() {
  return R"(Usage: fathomrun [options] [--] PROGRAM [ARGS...]

Runs PROGRAM as a job of N ranks and supervises it: each rank's output is shown with a
"[rank R]" prefix; when a rank dies (nonzero exit, a signal, kill -9) the whole job is
stopped within seconds and started again, up to --max-restarts times. The program resumes
from its own newest checkpoint (fathomrun only restarts it). It ends with a summary.

The ranks are started by
  srun              under SLURM (SLURM_JOB_ID is set): srun -n N --label --kill-on-bad-exit=1
                    --mpi=pmix (Open MPI needs PMIx under srun; an --mpi given with
                    --launcher-arg, or SLURM_MPI_TYPE in the environment, replaces it)
  mpirun            otherwise: mpirun -n N --tag-output --bind-to none --oversubscribe
                    (Open MPI; --oversubscribe only without --hostfile)
  fathomrun itself  for -n 1 outside SLURM (the program starts MPI alone, as a singleton)

Options:
  -n, -np, --nprocs N   number of ranks (default: SLURM_NTASKS under SLURM, else 1)
  --max-restarts K      restart the job at most K times after a failure (default 0)
  --hang-timeout S      a job that prints nothing for S seconds counts as hung: it is
                        stopped and restarted (default 0: off). DeepComm's own watchdog
                        (FATHOM_COMM_TIMEOUT) already turns a stuck collective into an exit.
  --stop-timeout S      after a rank fails or a stop signal arrives, the job may take S
                        seconds to end before fathomrun kills all its processes (default 10)
  --restart-delay S     wait S seconds before restarting (default 1)
  --launcher L          auto (default), mpirun, srun or local (one process, no MPI launcher)
  --mpirun PATH         the mpirun to use (default: mpirun on the PATH); implies mpirun
  --srun PATH           the srun to use (default: srun on the PATH)
  --hostfile FILE       passed to mpirun (then no --oversubscribe)
  --launcher-arg ARG    one more argument for mpirun or srun (repeatable), e.g.
                        --launcher-arg=--mca --launcher-arg=btl_tcp_if_include --launcher-arg=eth0
  --dry-run             print the command each attempt would run, and exit
  -h, --help            this text

Signals: SIGINT, SIGTERM and SIGHUP are forwarded to the job, which is then not restarted;
fathomrun exits with 128+signal (a second one kills every process of the job at once).
SIGUSR1 and SIGUSR2 are forwarded too (SLURM's warning before the time limit: sbatch
--signal=B:USR1@60); the program should save a checkpoint and exit, and the job is then not
restarted: fathomrun exits with the job's status. See docs/launcher.md.

Environment given to every rank:
  FATHOM_RESTART_COUNT  the attempt: 0 first, k after k restarts
  FATHOM_LAUNCHER       fathomrun
  OMPI_ALLOW_RUN_AS_ROOT, OMPI_ALLOW_RUN_AS_ROOT_CONFIRM  =1 when run as root (mpirun)
Read: SLURM_JOB_ID, SLURM_NTASKS, SLURM_MPI_TYPE (SLURM), PATH (to find mpirun, srun and PROGRAM).

Exit status: 0 when the job succeeded; the job's status after SIGUSR1/SIGUSR2; 128+signal
after SIGINT/SIGTERM/SIGHUP; 1 after the last allowed attempt failed; 2 for a bad command
line; 127 when mpirun, srun or PROGRAM cannot be found.

Examples:
  fathomrun -n 2 --max-restarts 3 -- ./build/examples/fashion_mnist --epochs 5
  fathomrun -n 8 --hostfile hosts --hang-timeout 600 -- ./train --config big
  sbatch examples/slurm/fashion_mnist.sbatch     (fathomrun inside a SLURM job: srun)
)";
}

}  // namespace fathomrun

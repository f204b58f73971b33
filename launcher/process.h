#pragma once
// Linux process plumbing for fathomrun: starting the job with its output on pipes, signals as
// a file descriptor, and killing every process the job left behind.
#include <sys/types.h>

#include <csignal>
#include <string>
#include <vector>

namespace fathomrun {

// Blocks the signals fathomrun handles and returns a signalfd for them (SIGCHLD, SIGINT,
// SIGTERM, SIGHUP, SIGUSR1, SIGUSR2); ignores SIGPIPE. Makes this process the child
// subreaper, so a rank whose mpirun died is re-parented here and can still be found.
int setup_signals();

struct Child {
  pid_t pid = -1;
  int out = -1, err = -1;  // read ends of its stdout and stderr
};

// Starts argv in a process group of its own (a terminal's Ctrl-C reaches fathomrun only, which
// forwards it), stdin from /dev/null, `env` added to fathomrun's environment, the signal mask
// and SIGPIPE as they were before setup_signals(). Throws std::runtime_error when argv cannot
// be executed.
Child spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env);

// Every living process below this one (children, theirs, ...), read from /proc.
std::vector<pid_t> descendants();
// Sends SIGKILL to every descendant until none is left (or `seconds` have passed), reaping
// what dies. Returns how many it killed. Does not reap `keep_status_of`: its wait status
// is stored in *status instead (when it dies here).
int kill_all_descendants(double seconds, pid_t keep_status_of, int* status, bool* reaped);

// The executable `name` resolves to: itself when it holds a '/', else the first match on the
// PATH; "" when there is none.
std::string find_executable(const std::string& name);

// A command line as a shell would read it back (for messages and --dry-run).
std::string shell_quote(const std::vector<std::string>& argv);

// Monotonic seconds.
double now_s();

}  // namespace fathomrun

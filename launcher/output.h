#pragma once
// What fathomrun makes of the job's output: each rank's lines get a "[rank R] " prefix (the
// launcher's own tags, mpirun's "[1,R]<stdout>:" and srun's "R: ", are replaced), and the
// launcher's own messages are scanned for the first rank that failed, and how.
#include <optional>
#include <string>

namespace fathomrun {

enum class Via { mpirun, srun, local };

// One line of the job's output (without its newline), as fathomrun prints it. A line that
// already starts with its rank's "[rank R]" (DeepComm's messages) is not prefixed twice.
// `rank` is set to the line's rank, or -1 for a line of the launcher itself (mpirun's own
// messages), which is printed as it is.
std::string rewrite_line(Via via, const std::string& line, int& rank);

// "killed by signal 9 (SIGKILL)".
std::string describe_signal(int sig);
// From a waitpid status: "exited with code 3", "killed by signal 9 (SIGKILL)".
std::string describe_status(int wait_status);

struct Failure {
  int rank = -1;    // -1: not named
  std::string how;  // "killed by signal 9 (SIGKILL)", "exited with code 3", "called MPI_Abort ..."
};

// Reads the launcher's own lines (rank -1 from rewrite_line) for its report of the first rank
// that failed: Open MPI's "mpirun noticed that process rank 1 ... exited on signal 9",
// "Process name: [[J,1],R]" + "Exit code: N", "MPI_ABORT was invoked on rank R ...", and
// srun's "srun: error: NODE: task R: Exited with exit code N".
class FailureScanner {
 public:
  void feed(const std::string& line);
  // The first failure reported, if any.
  const std::optional<Failure>& first() const { return first_; }

 private:
  void found(int rank, const std::string& how);
  std::optional<Failure> first_;
  int pending_rank_ = -1;  // "Process name: [[J,1],R]" seen; its "Exit code:" line is next
  int abort_rank_ = -1;    // "MPI_ABORT was invoked on rank R"; "with errorcode N." is next
};

}  // namespace fathomrun

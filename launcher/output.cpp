// Rank prefixes for the job's output, and the launcher's report of the first failed rank.
#include "output.h"

#include <sys/wait.h>

#include <cctype>
#include <csignal>
#include <cstdlib>
#include <cstring>

namespace fathomrun {
namespace {

bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

// Reads digits at s[pos...]; -1 when there are none (or too many to be a rank).
int read_number(const std::string& s, size_t& pos) {
  size_t start = pos;
  while (pos < s.size() && is_digit(s[pos]) && pos - start < 9) ++pos;
  if (pos == start) return -1;
  return std::atoi(s.substr(start, pos - start).c_str());
}

std::string prefixed(int rank, const std::string& text) {
  std::string tag = "[rank " + std::to_string(rank) + "]";
  if (text.rfind(tag, 0) == 0) return text;  // DeepComm's messages carry it already
  return tag + " " + text;
}

// Open MPI's --tag-output: "[1,3]<stdout>:text" (also <stderr>, <stddiag>).
bool strip_mpirun_tag(const std::string& line, int& rank, std::string& text) {
  size_t pos = 0;
  if (line.empty() || line[0] != '[') return false;
  ++pos;
  if (read_number(line, pos) < 0 || pos >= line.size() || line[pos] != ',') return false;
  ++pos;
  int r = read_number(line, pos);
  if (r < 0 || pos >= line.size() || line[pos] != ']') return false;
  ++pos;
  for (const char* stream : {"<stdout>:", "<stderr>:", "<stddiag>:"}) {
    if (line.compare(pos, std::strlen(stream), stream) == 0) {
      rank = r;
      text = line.substr(pos + std::strlen(stream));
      return true;
    }
  }
  return false;
}

// srun --label: "3: text", right-aligned to the widest rank (" 3: text").
bool strip_srun_label(const std::string& line, int& rank, std::string& text) {
  size_t pos = 0;
  while (pos < line.size() && line[pos] == ' ') ++pos;
  int r = read_number(line, pos);
  if (r < 0 || line.compare(pos, 2, ": ") != 0) return false;
  rank = r;
  text = line.substr(pos + 2);
  return true;
}

}  // namespace

std::string rewrite_line(Via via, const std::string& line, int& rank) {
  std::string text;
  rank = -1;
  switch (via) {
    case Via::local:
      rank = 0;
      return prefixed(0, line);
    case Via::mpirun:
      if (strip_mpirun_tag(line, rank, text)) return prefixed(rank, text);
      return line;
    case Via::srun:
      if (strip_srun_label(line, rank, text)) return prefixed(rank, text);
      return line;
  }
  return line;
}

std::string describe_signal(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return "killed by signal " + std::to_string(sig) +
         (abbrev ? std::string(" (SIG") + abbrev + ")" : std::string());
}

std::string describe_status(int st) {
  if (WIFEXITED(st)) return "exited with code " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return describe_signal(WTERMSIG(st));
  return "ended with wait status " + std::to_string(st);
}

void FailureScanner::found(int rank, const std::string& how) {
  if (!first_) first_ = Failure{rank, how};
}

void FailureScanner::feed(const std::string& raw) {
  // Open MPI indents and pads its help messages; compare from the first non-blank.
  size_t b = raw.find_first_not_of(" \t");
  std::string line = b == std::string::npos ? "" : raw.substr(b);
  auto after = [&](const std::string& key, size_t& pos) {
    size_t at = line.find(key);
    if (at == std::string::npos) return false;
    pos = at + key.size();
    return true;
  };
  size_t pos = 0;
  if (pending_rank_ >= 0 && after("Exit code:", pos)) {
    while (pos < line.size() && line[pos] == ' ') ++pos;
    int code = read_number(line, pos);
    found(pending_rank_, code >= 0 ? "exited with code " + std::to_string(code) : "exited with an error");
    pending_rank_ = -1;
    return;
  }
  if (abort_rank_ >= 0) {
    int rank = abort_rank_;
    abort_rank_ = -1;
    if (after("with errorcode ", pos)) {
      found(rank, "called MPI_Abort (error code " + std::to_string(read_number(line, pos)) + ")");
      return;
    }
    found(rank, "called MPI_Abort");
  }
  // "mpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 (Killed)."
  if (after("noticed that process rank ", pos)) {
    int rank = read_number(line, pos);
    size_t p2 = 0;
    if (after("exited on signal ", p2)) found(rank, describe_signal(read_number(line, p2)));
    else found(rank, "died");
    return;
  }
  // "mpirun has exited due to process rank 1 with PID 123 on / node vm exiting improperly."
  if (after("has exited due to process rank ", pos)) {
    found(read_number(line, pos), "exited without calling MPI_Finalize");
    return;
  }
  // "Process name: [[18921,1],1]", then "Exit code:    3".
  if (after("Process name: [[", pos)) {
    size_t close = line.find("],", pos);
    if (close != std::string::npos) {
      size_t p2 = close + 2;
      pending_rank_ = read_number(line, p2);
    }
    return;
  }
  // "MPI_ABORT was invoked on rank 1 in communicator MPI_COMM_WORLD", then "with errorcode 1."
  if (after("MPI_ABORT was invoked on rank ", pos)) {
    abort_rank_ = read_number(line, pos);
    return;
  }
  // srun: "srun: error: node7: task 1: Exited with exit code 3", "...: tasks 0-3: Killed".
  if (line.rfind("srun: error: ", 0) == 0 && (after(": task ", pos) || after(": tasks ", pos))) {
    int rank = read_number(line, pos);
    size_t colon = line.find(": ", pos);
    if (rank >= 0 && colon != std::string::npos) {
      std::string how = line.substr(colon + 2);
      size_t p2 = 0;
      if (how.rfind("Exited with exit code ", 0) == 0) {
        p2 = std::strlen("Exited with exit code ");
        how = "exited with code " + std::to_string(read_number(how, p2));
      }
      found(rank, how);
    }
  }
}

}  // namespace fathomrun

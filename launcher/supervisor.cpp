// fathomrun's supervisor: one attempt is one run of mpirun (or srun, or the program itself)
// watched through its output pipes and a signalfd; a failed attempt is cleaned up (every
// process of it killed) and, while restarts are left, run again.
#include "supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "process.h"

namespace fathomrun {
namespace {

void write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a closed pipe (| head): the job goes on, its output is lost
    done += size_t(n);
  }
}

void say(const std::string& msg) { write_all(2, "fathomrun: " + msg + "\n"); }

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

std::string signal_name(int sig) {
  const char* a = sigabbrev_np(sig);
  return a ? std::string("SIG") + a : "signal " + std::to_string(sig);
}

// Splits one output stream into lines, rewrites them (rank prefixes) and prints them.
class Stream {
 public:
  Stream(int in, int out, Via via, FailureScanner& scanner) : in_(in), out_(out), via_(via), scanner_(scanner) {}
  bool open() const { return in_ >= 0; }
  int fd() const { return in_; }
  // Reads what is there; returns the bytes read (0 at EOF, which closes the stream).
  size_t drain() {
    size_t total = 0;
    char buf[65536];
    while (in_ >= 0) {
      ssize_t n = read(in_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;  // EAGAIN: nothing more now
      if (n == 0) {
        close_stream();
        break;
      }
      total += size_t(n);
      partial_.append(buf, size_t(n));
      size_t start = 0, nl;
      while ((nl = partial_.find('\n', start)) != std::string::npos) {
        emit(partial_.substr(start, nl - start));
        start = nl + 1;
      }
      partial_.erase(0, start);
      // A line without an end (a progress bar using '\r') is shown in pieces, not hoarded.
      if (partial_.size() > 65536) {
        emit(partial_);
        partial_.clear();
      }
    }
    return total;
  }
  void close_stream() {
    if (in_ < 0) return;
    if (!partial_.empty()) emit(partial_);
    partial_.clear();
    ::close(in_);
    in_ = -1;
  }

 private:
  void emit(const std::string& line) {
    int rank = -1;
    std::string shown = rewrite_line(via_, line, rank);
    scanner_.feed(rank < 0 ? line : shown);
    write_all(out_, shown + "\n");
  }
  int in_, out_;
  Via via_;
  FailureScanner& scanner_;
  std::string partial_;
};

struct Attempt {
  int index = 0;
  double seconds = 0;
  bool success = false;
  int user_signal = 0;      // SIGINT/SIGTERM/SIGHUP forwarded: stop, no restart
  int graceful_signal = 0;  // SIGUSR1/SIGUSR2 forwarded: the job's own status, no restart
  int job_status = 0;       // the launcher's (or the program's) wait status
  std::string outcome;      // for the summary
};

int exit_code_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

Attempt run_attempt(const Options& opts, const Plan& plan, int index, int sigfd) {
  Attempt a;
  a.index = index;
  double start = now_s();
  Child child;
  try {
    child = spawn(plan.argv, attempt_env(plan, index));
  } catch (const std::exception& e) {
    throw LaunchError(e.what(), 127);
  }
  FailureScanner scanner;
  Stream out(child.out, 1, plan.via, scanner), err(child.err, 2, plan.via, scanner);
  const char* who = plan.via == Via::mpirun ? "mpirun" : plan.via == Via::srun ? "srun" : "the program";

  std::optional<int> status;     // the child's wait status, once it ended
  double ended_at = 0;
  double last_output = start;
  std::optional<double> kill_at;  // when every process of the job gets SIGKILL
  bool hung = false, killed = false, failure_seen = false;

  auto kill_everything = [&](const std::string& why) {
    if (killed) return;
    killed = true;
    say(why);
    int st = 0;
    bool reaped = false;
    kill_all_descendants(5, child.pid, &st, &reaped);
    if (reaped && !status) {
      status = st;
      ended_at = now_s();
    }
  };
  auto forward = [&](int sig) {
    if (!status) kill(child.pid, sig);
  };

  while (true) {
    pollfd fds[3] = {{sigfd, POLLIN, 0}, {out.fd(), POLLIN, 0}, {err.fd(), POLLIN, 0}};
    int n = poll(fds, 3, 100);
    if (n < 0 && errno != EINTR) throw LaunchError(std::string("fathomrun: poll failed"), 1);
    double now = now_s();
    if (out.drain() + err.drain() > 0) last_output = now;

    signalfd_siginfo si;
    while (read(sigfd, &si, sizeof si) == ssize_t(sizeof si)) {
      int sig = int(si.ssi_signo);
      if (sig == SIGCHLD) {
        int st = 0;
        pid_t p;
        while ((p = waitpid(-1, &st, WNOHANG)) > 0)
          if (p == child.pid) {
            status = st;
            ended_at = now;
          }
      } else if (sig == SIGUSR1 || sig == SIGUSR2) {
        if (!a.graceful_signal)
          say("got " + signal_name(sig) + ": forwarding it to the job, which will not be restarted");
        a.graceful_signal = sig;
        forward(sig);
      } else if (!a.user_signal) {  // SIGINT, SIGTERM, SIGHUP
        a.user_signal = sig;
        say("got " + signal_name(sig) + ": stopping the job (no restart; a second one kills it at once)");
        // srun needs SIGINT twice to stop a step (once only prints its status); SIGTERM stops it.
        forward(plan.via == Via::srun && sig == SIGINT ? SIGTERM : sig);
        kill_at = now + opts.stop_timeout;
      } else {
        kill_everything("got " + signal_name(sig) + " again: killing every process of the job");
      }
    }

    if (!failure_seen && scanner.first()) {
      failure_seen = true;
      // mpirun and srun stop the other ranks themselves; this is the backstop if they do not.
      if (!kill_at) kill_at = now + opts.stop_timeout;
    }
    if (!status && !hung && opts.hang_timeout > 0 && now - last_output >= opts.hang_timeout) {
      hung = true;
      say("no output from the job for " + seconds(now - last_output) + " (--hang-timeout " +
          seconds(opts.hang_timeout) + "): taking it as hung, stopping it");
      forward(SIGTERM);
      if (!kill_at) kill_at = now + std::min(opts.stop_timeout, 5.0);
    }
    if (!status && kill_at && now >= *kill_at)
      kill_everything("the job did not end within " + seconds(opts.stop_timeout) +
                      " (--stop-timeout): killing every process of it");
    if (status && !out.open() && !err.open()) break;
    // Ended, but something it started still holds the pipes open: that is left of the job.
    if (status && now - ended_at > 2) {
      if (!descendants().empty())
        kill_everything(std::string(who) + " ended but processes of the job are left: killing them");
      out.drain();
      err.drain();
      out.close_stream();
      err.close_stream();
      break;
    }
  }
  // Nothing of this attempt may survive into the next one.
  if (!descendants().empty()) {
    int left = kill_all_descendants(5, -1, nullptr, nullptr);
    if (left > 0) say("killed " + std::to_string(left) + " process(es) left over from the job");
  }

  a.seconds = now_s() - start;
  a.job_status = *status;
  const std::optional<Failure>& f = scanner.first();
  if (hung) {
    a.outcome = "hung: no output for " + seconds(opts.hang_timeout) + ", stopped";
  } else if (a.user_signal) {
    a.outcome = "stopped by " + signal_name(a.user_signal);
  } else if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) {
    a.success = true;
    a.outcome = "succeeded";
  } else if (plan.via == Via::local) {
    a.outcome = "rank 0 " + describe_status(*status);
  } else if (f) {
    a.outcome = (f->rank >= 0 ? "rank " + std::to_string(f->rank) + " " : std::string("a rank ")) + f->how +
                " (" + who + " " + describe_status(*status) + ")";
  } else {
    a.outcome = std::string(who) + " " + describe_status(*status) + " (it named no failed rank)";
  }
  if (a.graceful_signal && !a.success) a.outcome += " after " + signal_name(a.graceful_signal);
  return a;
}

// Sleeps `s` seconds unless a stop signal comes; returns that signal (0: none).
int wait_before_restart(double s, int sigfd) {
  double until = now_s() + s;
  while (true) {
    double left = until - now_s();
    if (left <= 0) return 0;
    pollfd p = {sigfd, POLLIN, 0};
    poll(&p, 1, int(left * 1000) + 1);
    signalfd_siginfo si;
    while (read(sigfd, &si, sizeof si) == ssize_t(sizeof si)) {
      int sig = int(si.ssi_signo);
      if (sig == SIGCHLD) {
        while (waitpid(-1, nullptr, WNOHANG) > 0) {
        }
      } else {
        return sig;
      }
    }
  }
}

}  // namespace

std::vector<std::string> attempt_env(const Plan& plan, int attempt) {
  std::vector<std::string> env = plan.env;
  env.push_back("FATHOM_RESTART_COUNT=" + std::to_string(attempt));
  return env;
}

int supervise(const Options& opts, const Plan& plan) {
  int sigfd = setup_signals();
  fcntl(sigfd, F_SETFL, fcntl(sigfd, F_GETFL) | O_NONBLOCK);
  double start = now_s();
  std::vector<Attempt> attempts;
  auto summary = [&](const std::string& head) {
    std::string s = head + " (" + std::to_string(attempts.size()) + " attempt(s), " +
                    seconds(now_s() - start) + "):";
    for (const Attempt& a : attempts)
      s += "\n  attempt " + std::to_string(a.index) + ": " + a.outcome + " after " + seconds(a.seconds);
    say(s);
  };
  for (int k = 0;; ++k) {
    if (k > 0) say("restarting the job: attempt " + std::to_string(k) + " of at most " +
                   std::to_string(opts.max_restarts + 1) + " (FATHOM_RESTART_COUNT=" + std::to_string(k) + ")");
    attempts.push_back(run_attempt(opts, plan, k, sigfd));
    const Attempt& a = attempts.back();
    if (a.success) {
      if (k > 0) summary("the job succeeded after " + std::to_string(k) + " restart(s)");
      return 0;
    }
    if (a.user_signal) {
      summary("stopped by " + signal_name(a.user_signal));
      return 128 + a.user_signal;
    }
    if (a.graceful_signal) {
      summary("the job ended after " + signal_name(a.graceful_signal) + "; not restarting it");
      return exit_code_of(a.job_status);
    }
    if (k >= opts.max_restarts) {
      summary("giving up: the job failed and " +
              (opts.max_restarts == 0 ? std::string("--max-restarts is 0")
                                      : "all " + std::to_string(opts.max_restarts) + " restart(s) are used"));
      return 1;
    }
    say("attempt " + std::to_string(k) + " failed: " + a.outcome + "; restarting in " + seconds(opts.restart_delay));
    if (int sig = wait_before_restart(opts.restart_delay, sigfd); sig != 0) {
      if (sig == SIGUSR1 || sig == SIGUSR2) {
        summary("got " + signal_name(sig) + " between attempts; not restarting");
        return exit_code_of(a.job_status);
      }
      summary("stopped by " + signal_name(sig) + " between attempts");
      return 128 + sig;
    }
  }
}

}  // namespace fathomrun

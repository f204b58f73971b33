// Starting the job, signals as a descriptor, and finding and killing leftover processes.
#include "process.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace fathomrun {
namespace {

sigset_t g_original_mask;

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

}  // namespace

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

int setup_signals() {
  // A rank whose mpirun died is re-parented to the nearest subreaper: this process, so
  // descendants() still finds it and nothing of the job outlives fathomrun.
  check(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "fathomrun: prctl(PR_SET_CHILD_SUBREAPER)");
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
  check(sigprocmask(SIG_BLOCK, &set, &g_original_mask) == 0, "fathomrun: sigprocmask");
  // Output to a closed pipe (fathomrun ... | head) must not kill the supervisor of a job.
  std::signal(SIGPIPE, SIG_IGN);
  int fd = signalfd(-1, &set, SFD_CLOEXEC);
  check(fd >= 0, "fathomrun: signalfd");
  return fd;
}

Child spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  // Everything the child needs is built before fork.
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv;
  }
  for (const auto& kv : env) vars[kv.substr(0, kv.find('='))] = kv;
  std::vector<std::string> env_strings;
  for (auto& [k, kv] : vars) env_strings.push_back(kv);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  int out[2], err[2], status_pipe[2];
  check(pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0 && pipe2(status_pipe, O_CLOEXEC) == 0,
        "fathomrun: pipe");
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  check(devnull >= 0, "fathomrun: open /dev/null");
  pid_t pid = fork();
  check(pid >= 0, "fathomrun: fork");
  if (pid == 0) {
    setpgid(0, 0);
    dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    std::signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &g_original_mask, nullptr);
    execve(args[0], args.data(), envp.data());
    int e = errno;
    ssize_t ignored = write(status_pipe[1], &e, sizeof e);
    (void)ignored;
    _exit(127);
  }
  setpgid(pid, pid);  // also here: no race with a signal forwarded right after spawn
  close(devnull);
  close(out[1]);
  close(err[1]);
  close(status_pipe[1]);
  int e = 0;
  ssize_t n;
  do n = read(status_pipe[0], &e, sizeof e);
  while (n < 0 && errno == EINTR);
  close(status_pipe[0]);
  if (n == sizeof e) {
    waitpid(pid, nullptr, 0);
    close(out[0]);
    close(err[0]);
    throw std::runtime_error("fathomrun: cannot execute '" + argv[0] + "': " + std::strerror(e));
  }
  for (int fd : {out[0], err[0]}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return Child{pid, out[0], err[0]};
}

std::vector<pid_t> descendants() {
  std::multimap<pid_t, pid_t> children;  // parent -> child
  DIR* d = opendir("/proc");
  if (!d) return {};
  while (dirent* ent = readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(ent->d_name, &end, 10);
    if (!end || *end != '\0' || pid <= 0) continue;
    std::ifstream f(std::string("/proc/") + ent->d_name + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
    size_t close = stat.rfind(')');
    if (close == std::string::npos || close + 4 >= stat.size()) continue;
    char state = stat[close + 2];
    if (state == 'Z') continue;  // dead, waiting to be reaped
    long ppid = std::strtol(stat.c_str() + close + 4, nullptr, 10);
    children.emplace(pid_t(ppid), pid_t(pid));
  }
  closedir(d);
  std::vector<pid_t> out, todo = {getpid()};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    auto [lo, hi] = children.equal_range(p);
    for (auto it = lo; it != hi; ++it) {
      out.push_back(it->second);
      todo.push_back(it->second);
    }
  }
  return out;
}

int kill_all_descendants(double seconds, pid_t keep_status_of, int* status, bool* reaped) {
  double deadline = now_s() + seconds;
  int killed = 0;
  while (true) {
    std::vector<pid_t> left = descendants();
    for (pid_t p : left)
      if (kill(p, SIGKILL) == 0) ++killed;
    // Reap what died: our children, and orphans re-parented to us (the subreaper).
    int st = 0;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0)
      if (p == keep_status_of && status) {
        *status = st;
        if (reaped) *reaped = true;
      }
    if (left.empty() || now_s() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return killed;
}

std::string find_executable(const std::string& name) {
  auto runnable = [](const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
  };
  if (name.empty()) return "";
  if (name.find('/') != std::string::npos) return runnable(name) ? name : "";
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t pos = 0;
  while (pos <= dirs.size()) {
    size_t colon = dirs.find(':', pos);
    std::string dir = dirs.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    std::string full = (dir.empty() ? "." : dir) + "/" + name;
    if (runnable(full)) return full;
    if (colon == std::string::npos) break;
    pos = colon + 1;
  }
  return "";
}

std::string shell_quote(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty();
    for (char c : a)
      plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || std::strchr("-_./=:,+@%", c));
    if (plain) {
      out += a;
      continue;
    }
    out += '\'';
    for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

}  // namespace fathomrun

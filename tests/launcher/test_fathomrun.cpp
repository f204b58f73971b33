// fathomrun's parts that need no job: flags, rank prefixes, reading mpirun's and srun's
// reports of a failed rank (texts as Open MPI 4.1 and SLURM print them), the command lines.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <optional>

#include "options.h"
#include "output.h"
#include "supervisor.h"
#include "testing.h"

using namespace fathomrun;
using Args = std::vector<std::string>;

TEST_CASE("fathomrun options: values, spellings, and where the program starts") {
  Options o = parse_options({"-n", "4", "--max-restarts", "3", "--hang-timeout", "30", "--", "./train", "--lr", "3"});
  CHECK(o.nprocs == 4);
  CHECK(o.max_restarts == 3);
  CHECK(o.hang_timeout == 30);
  CHECK(o.command == Args{"./train", "--lr", "3"});
  // The first argument that is not an option is the program; what follows is its own.
  Options p = parse_options({"-n4", "--max-restarts=2", "--stop-timeout=2.5", "./train", "-n", "9"});
  CHECK(p.nprocs == 4);
  CHECK(p.max_restarts == 2);
  CHECK(p.stop_timeout == 2.5);
  CHECK(p.command == Args{"./train", "-n", "9"});
  Options q = parse_options({"-np", "2", "--launcher-arg", "--mca", "--launcher-arg=btl", "--launcher", "mpirun", "x"});
  CHECK(q.nprocs == 2);
  CHECK(q.launcher_args == Args{"--mca", "btl"});
  CHECK(q.launcher == "mpirun");
  Options d = parse_options({"./train"});
  CHECK(d.nprocs == 0);
  CHECK(d.max_restarts == 0);
  CHECK(d.hang_timeout == 0);
  CHECK(parse_options({"--help"}).help);
  CHECK(usage().find("Usage: fathomrun [options] [--] PROGRAM [ARGS...]") == 0);
}

TEST_CASE("fathomrun options: bad command lines name the problem") {
  auto bad = [](const Args& a, const std::string& msg) {
    CHECK_THROWS_WITH(parse_options(a), msg + " (see fathomrun --help)");
  };
  bad({"--bogus", "x"}, "unknown option '--bogus'");
  bad({"-x", "x"}, "unknown option '-x'");
  bad({"-n", "0", "x"}, "-n 0 must be at least 1");
  bad({"-n", "two", "x"}, "-n 'two' is not a whole number");
  bad({"-n"}, "-n needs a value");
  bad({"--max-restarts", "-1", "x"}, "--max-restarts '-1' is not a whole number");
  bad({"--hang-timeout", "-3", "x"}, "--hang-timeout '-3' is not a number of seconds from 0 to 10000000");
  bad({"--hang-timeout=", "x"}, "--hang-timeout '' is not a number of seconds from 0 to 10000000");
  bad({"--stop-timeout", "nan", "x"}, "--stop-timeout 'nan' is not a number of seconds from 0 to 10000000");
  bad({"--launcher", "ssh", "x"}, "--launcher 'ssh' must be auto, mpirun, srun or local");
  bad({"--dry-run=yes", "x"}, "--dry-run takes no value");
  bad({"-n", "2"}, "no program to run: fathomrun [options] [--] PROGRAM [ARGS...]");
  bad({"-n", "2", "--"}, "no program to run: fathomrun [options] [--] PROGRAM [ARGS...]");
}

TEST_CASE("rewrite_line: every rank's line gets one [rank R] prefix") {
  int rank = -2;
  CHECK(rewrite_line(Via::mpirun, "[1,0]<stdout>:step 5", rank) == "[rank 0] step 5");
  CHECK(rank == 0);
  CHECK(rewrite_line(Via::mpirun, "[23,12]<stderr>:oops", rank) == "[rank 12] oops");
  CHECK(rank == 12);
  // DeepComm's messages carry their prefix already.
  CHECK(rewrite_line(Via::mpirun, "[1,1]<stderr>:[rank 1] DeepComm watchdog: ...", rank) ==
        "[rank 1] DeepComm watchdog: ...");
  // ... but a rank quoting another rank's prefix is still prefixed with its own.
  CHECK(rewrite_line(Via::mpirun, "[1,0]<stderr>:[rank 1] is failing", rank) == "[rank 0] [rank 1] is failing");
  CHECK(rewrite_line(Via::mpirun, "[1,0]<stdout>:", rank) == "[rank 0] ");
  // mpirun's own messages, and anything not tagged, pass as they are.
  CHECK(rewrite_line(Via::mpirun, "mpirun noticed that process rank 1 ...", rank) == "mpirun noticed that process rank 1 ...");
  CHECK(rank == -1);
  CHECK(rewrite_line(Via::mpirun, "[1,x]<stdout>:no", rank) == "[1,x]<stdout>:no");
  CHECK(rewrite_line(Via::mpirun, "[1,0]<other>:no", rank) == "[1,0]<other>:no");
  CHECK(rank == -1);
  // srun --label pads the rank to the widest.
  CHECK(rewrite_line(Via::srun, " 3: loss 0.25", rank) == "[rank 3] loss 0.25");
  CHECK(rank == 3);
  CHECK(rewrite_line(Via::srun, "12: x", rank) == "[rank 12] x");
  CHECK(rewrite_line(Via::srun, "srun: error: node1: task 1: Killed", rank) == "srun: error: node1: task 1: Killed");
  CHECK(rank == -1);
  CHECK(rewrite_line(Via::local, "hello", rank) == "[rank 0] hello");
  CHECK(rewrite_line(Via::local, "[rank 0] DeepComm: x", rank) == "[rank 0] DeepComm: x");
}

TEST_CASE("FailureScanner: Open MPI's reports") {
  auto scan = [](const Args& lines) {
    FailureScanner s;
    for (const auto& l : lines) s.feed(l);
    return s.first();
  };
  auto k = scan({"--------------------------------------------------------------------------",
                 "Primary job  terminated normally, but 1 process returned",
                 "a non-zero exit code. Per user-direction, the job has been aborted.",
                 "mpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 (Killed)."});
  REQUIRE(k);
  CHECK(k->rank == 1);
  CHECK(k->how == "killed by signal 9 (SIGKILL)");
  auto e = scan({"mpirun detected that one or more processes exited with non-zero status, thus causing",
                 "the job to be terminated. The first process to do so was:", "",
                 "  Process name: [[18921,1],3]", "  Exit code:    7"});
  REQUIRE(e);
  CHECK(e->rank == 3);
  CHECK(e->how == "exited with code 7");
  auto a = scan({"[rank 1] rank_fails: error: bad label", "MPI_ABORT was invoked on rank 1 in communicator MPI_COMM_WORLD",
                 "with errorcode 1.", "mpirun noticed that process rank 0 with PID 5 on node vm exited on signal 15 (Terminated)."});
  REQUIRE(a);
  CHECK(a->rank == 1);  // the first report wins
  CHECK(a->how == "called MPI_Abort (error code 1)");
  auto f = scan({"mpirun has exited due to process rank 2 with PID 4242 on", "node vm exiting improperly."});
  REQUIRE(f);
  CHECK(f->rank == 2);
  CHECK(f->how == "exited without calling MPI_Finalize");
  CHECK_FALSE(scan({"[rank 0] step 3", "Exit code: 3", "epoch=1 loss=0.5"}));
}

TEST_CASE("FailureScanner: srun's reports") {
  FailureScanner s;
  s.feed("srun: error: node7: task 1: Exited with exit code 3");
  s.feed("srun: error: node7: task 0: Killed");
  REQUIRE(s.first());
  CHECK(s.first()->rank == 1);
  CHECK(s.first()->how == "exited with code 3");
  FailureScanner t;
  t.feed("srun: error: gpu3: tasks 4-7: Killed");
  REQUIRE(t.first());
  CHECK(t.first()->rank == 4);
  CHECK(t.first()->how == "Killed");
}

TEST_CASE("describe_status: exit codes and signals") {
  CHECK(describe_status(3 << 8) == "exited with code 3");
  CHECK(describe_status(SIGKILL) == "killed by signal 9 (SIGKILL)");
  CHECK(describe_signal(SIGTERM) == "killed by signal 15 (SIGTERM)");
}

TEST_CASE("make_plan: mpirun's command line, and each attempt's environment") {
  Options o = parse_options({"--mpirun", "/bin/true", "-n", "3", "--launcher-arg=--mca", "--launcher-arg=x",
                             "/bin/echo", "a b"});
  Plan p = make_plan(o);
  CHECK(p.via == Via::mpirun);
  CHECK(p.nprocs == 3);
  CHECK(p.argv == Args{"/bin/true", "-n", "3", "--tag-output", "--bind-to", "none", "--oversubscribe", "-x",
                       "FATHOM_RESTART_COUNT", "-x", "FATHOM_LAUNCHER", "--mca", "x", "/bin/echo", "a b"});
  Args env = attempt_env(p, 2);
  CHECK(std::find(env.begin(), env.end(), "FATHOM_LAUNCHER=fathomrun") != env.end());
  CHECK(env.back() == "FATHOM_RESTART_COUNT=2");
  Plan h = make_plan(parse_options({"--mpirun", "/bin/true", "-n", "2", "--hostfile", "hosts", "/bin/echo"}));
  CHECK(std::find(h.argv.begin(), h.argv.end(), "--oversubscribe") == h.argv.end());
  CHECK(std::find(h.argv.begin(), h.argv.end(), "--hostfile") != h.argv.end());
  // One rank, no SLURM: the program itself.
  if (!std::getenv("SLURM_JOB_ID")) {
    Plan l = make_plan(parse_options({"/bin/echo", "hi"}));
    CHECK(l.via == Via::local);
    CHECK(l.argv == Args{"/bin/echo", "hi"});
  }
  CHECK_THROWS_WITH(make_plan(parse_options({"--launcher", "srun", "--hostfile", "h", "/bin/echo"})),
                    "--hostfile is for mpirun, but the ranks are started by srun (see fathomrun --help)");
  CHECK_THROWS_WITH(make_plan(parse_options({"-n", "2", "./no/such/program"})),
                    "fathomrun: cannot find the program './no/such/program' (no such executable file)");
}

TEST_CASE("make_plan: srun's command line asks for PMIx unless an MPI type is given") {
  // SLURM_MPI_TYPE is srun's own spelling of --mpi; put back whatever was there.
  const char* old = std::getenv("SLURM_MPI_TYPE");
  std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  unsetenv("SLURM_MPI_TYPE");
  Plan p = make_plan(parse_options({"--launcher", "srun", "--srun", "/bin/true", "-n", "2", "/bin/echo", "x"}));
  Plan pmi2 = make_plan(parse_options({"--launcher", "srun", "--srun", "/bin/true", "-n", "2",
                                       "--launcher-arg=--mpi=pmi2", "/bin/echo"}));
  Plan split = make_plan(parse_options({"--launcher", "srun", "--srun", "/bin/true", "-n", "2",
                                        "--launcher-arg", "--mpi", "--launcher-arg", "pmi2", "/bin/echo"}));
  setenv("SLURM_MPI_TYPE", "pmi2", 1);
  Plan env = make_plan(parse_options({"--launcher", "srun", "--srun", "/bin/true", "-n", "2", "/bin/echo"}));
  if (saved) setenv("SLURM_MPI_TYPE", saved->c_str(), 1);
  else unsetenv("SLURM_MPI_TYPE");
  CHECK(p.via == Via::srun);
  CHECK(p.argv == Args{"/bin/true", "-n", "2", "--label", "--kill-on-bad-exit=1", "--mpi=pmix", "/bin/echo", "x"});
  CHECK(pmi2.argv == Args{"/bin/true", "-n", "2", "--label", "--kill-on-bad-exit=1", "--mpi=pmi2", "/bin/echo"});
  CHECK(split.argv ==
        Args{"/bin/true", "-n", "2", "--label", "--kill-on-bad-exit=1", "--mpi", "pmi2", "/bin/echo"});
  CHECK(env.argv == Args{"/bin/true", "-n", "2", "--label", "--kill-on-bad-exit=1", "/bin/echo"});
}

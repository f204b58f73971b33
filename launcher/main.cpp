// fathomrun: starts a job's ranks (srun, mpirun, or the program itself), prefixes their
// output with the rank, stops the whole job when a rank dies and restarts it up to
// --max-restarts times. `fathomrun --help` and docs/launcher.md say more.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "options.h"
#include "process.h"
#include "supervisor.h"

int main(int argc, char** argv) {
  using namespace fathomrun;
  try {
    Options opts = parse_options(std::vector<std::string>(argv + 1, argv + argc));
    if (opts.help) {
      std::fputs(usage().c_str(), stdout);
      return 0;
    }
    Plan plan = make_plan(opts);
    if (opts.dry_run) {
      std::string env;
      for (const auto& kv : attempt_env(plan, 0)) env += kv + " ";
      std::printf("%s%s\n", env.c_str(), shell_quote(plan.argv).c_str());
      return 0;
    }
    return supervise(opts, plan);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "fathomrun: %s\n", e.what());
    return 2;
  } catch (const LaunchError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return e.status;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fathomrun: %s\n", e.what());
    return 1;
  }
}

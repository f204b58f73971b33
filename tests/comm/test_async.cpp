// Asynchrony, argument errors, debug mode, byte counters and traces.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "fathom/comm/group_state.h"  // white-box: the pending records
#include "comm_testing.h"

using namespace fathom;
using namespace fathom::testing;
using comm::OpKind;

// Field 19 of /proc/self/task/<tid>/stat, after the parenthesised name (which may hold spaces).
static std::vector<int> comm_thread_nices() {
  std::vector<int> nices;
  for (auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::string name;
    std::getline(std::ifstream(task.path() / "comm"), name);
    if (name != "fathom-comm") continue;
    std::string stat;
    std::getline(std::ifstream(task.path() / "stat"), stat);
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 19; ++i) rest >> field;  // fields 3 (state) to 19 (nice)
    nices.push_back(std::stoi(field));
  }
  return nices;
}

TEST_CASE("comm threads run at FATHOM_COMM_THREAD_NICE (default -10) when allowed", "[comm]") {
  auto& w = world();
  w.allreduce(ones({4}))->wait();  // the world group's thread exists
  auto nices = comm_thread_nices();
  REQUIRE(!nices.empty());
  const char* env = std::getenv("FATHOM_COMM_THREAD_NICE");
  int process_nice = getpriority(PRIO_PROCESS, 0);
  // Without privilege a lower nice is refused and the thread keeps the process's.
  int want = env && *env ? (std::string(env) == "off" ? process_nice : std::stoi(env)) : -10;
  if (want < process_nice && geteuid() != 0) want = process_nice;
  for (int n : nices) CHECK(n == want);
}

TEST_CASE("many calls in flight complete in issue order", "[comm]") {
  auto& w = world();
  const int kCalls = 64;
  std::vector<Tensor> xs;
  std::vector<comm::WorkPtr> works;
  for (int i = 0; i < kCalls; ++i) {
    xs.push_back(full({257}, double(i + w.rank())));
    works.push_back(i % 3 == 2 ? w.broadcast(xs.back(), i % w.size()) : w.allreduce(xs.back()));
  }
  // The same tensor twice in a row: the second call sees the first one's result.
  Tensor twice = ones({10});
  auto t1 = w.allreduce(twice);
  auto t2 = w.allreduce(twice);
  for (auto it = works.rbegin(); it != works.rend(); ++it) (*it)->wait();  // any wait order
  t2->wait();
  CHECK(t1->is_completed());  // queue order: done before t2
  CHECK(to_vector(twice)[0] == double(w.size() * w.size()));
  int n = w.size();
  for (int i = 0; i < kCalls; ++i) {
    double want = i % 3 == 2 ? double(i + i % n) : double(n * i + n * (n - 1) / 2);
    CHECK(to_vector(xs[size_t(i)])[256] == want);
  }
  // A dropped handle is fine: the group keeps the tensor alive until the call is done.
  { w.allreduce(full({1000}, 1.0)); }
  w.barrier()->wait();
  for (auto& wk : works) CHECK(wk->is_completed());
  works[0]->wait();  // waiting again is harmless
}

TEST_CASE("calls progress without wait()", "[comm]") {
  auto& w = world();
  // Nobody waits: the comm thread must pick the calls up by itself (its delayed wake-up).
  Tensor x = full({1000}, 1.0), y = full({10}, 2.0);
  auto a = w.allreduce(x);
  auto b = w.broadcast(y, 0);
  for (int i = 0; i < 10000 && !(a->is_completed() && b->is_completed()); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(a->is_completed());
  CHECK(b->is_completed());
  CHECK(to_vector(x)[0] == w.size());
  a->wait();
  b->wait();
}

TEST_CASE("a call after a synchronous streak still starts without any wait", "[comm]") {
  auto& w = world();
  auto g = w.split(0, w.rank());
  for (int i = 0; i < 6; ++i) g->allreduce(ones({4}))->wait();  // taken inline: a streak
  Tensor x = ones({64});
  auto a = g->allreduce(x);  // its wake-up is owed: the watchdog's tick must pay it
  // Looks only at the group's records (is_completed() or wait() would start the call).
  auto done = [&] { return g->state()->status_for(0).oldest_seq < 0; };
  for (int i = 0; i < 5000 && !done(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(done());
  a->wait();
  CHECK(to_vector(x)[63] == w.size());
}

TEST_CASE("bad arguments fail at the call, naming the collective and the group", "[comm]") {
  auto& w = world();
  Tensor nc = noncontiguous(full({4, 3}, 1.0));
  CHECK_THROWS_WITH(w.allreduce(nc), Catch::Contains("allreduce on group 'world'") &&
                                         Catch::Contains("not contiguous"));
  CHECK_THROWS_WITH(w.allreduce(Tensor()), Catch::Contains("undefined tensor"));
  CHECK_THROWS_WITH(w.allreduce(ones({2}, DType::i32), comm::ReduceOp::avg),
                    Catch::Contains("avg needs a floating dtype"));
  CHECK_THROWS_WITH(w.broadcast(ones({2}), w.size()), Catch::Contains("root"));
  CHECK_THROWS_WITH(w.allgather(zeros({3}), ones({2})),
                    Catch::Contains("allgather") && Catch::Contains("must hold size x input"));
  CHECK_THROWS_WITH(w.allgather(zeros({2 * w.size()}, DType::i64), ones({2})),
                    Catch::Contains("differ in dtype"));
  CHECK_THROWS_WITH(w.reduce_scatter(zeros({2}), ones({2 * w.size() + 1})),
                    Catch::Contains("must hold size x output"));
  CHECK_THROWS_WITH(w.send(ones({1}), w.rank()), Catch::Contains("itself"));
  CHECK_THROWS_WITH(w.recv(ones({1}), -1), Catch::Contains("not a rank of the group"));
  if (w.size() > 1)
    CHECK_THROWS_WITH(w.send(ones({1}), (w.rank() + 1) % w.size(), 1 << 20),
                      Catch::Contains("tag"));
  CHECK_THROWS_WITH(w.set_timeout(0), Catch::Contains("must be > 0"));
  // Nothing was issued: the next collective still lines up on every rank.
  Tensor x = ones({1});
  w.allreduce(x)->wait();
  CHECK(to_vector(x)[0] == w.size());
}

TEST_CASE("debug mode passes matching calls through", "[comm]") {
  auto& w = world();
  comm::set_debug(true);  // every rank flips it at the same point of the call order
  Tensor x = full({3, 2}, 1.0, DType::bf16);
  w.allreduce(x, comm::ReduceOp::max)->wait();
  Tensor out = zeros({w.size() * 2}, DType::i32);
  w.allgather(out, full({2}, double(w.rank()), DType::i32))->wait();
  if (w.size() > 1) {
    int next = (w.rank() + 1) % w.size(), prev = (w.rank() + w.size() - 1) % w.size();
    Tensor got = zeros({5});
    auto s = w.send(full({5}, double(w.rank())), next);
    auto r = w.recv(got, prev);
    comm::wait_all({s, r});
    CHECK(to_vector(got)[4] == double(prev));
  }
  auto g = w.split(0, w.rank());
  g->barrier()->wait();
  comm::set_debug(false);
  CHECK(to_vector(x)[0] == 1.0);
  CHECK(to_vector(out)[2 * (w.size() - 1)] == double(w.size() - 1));
}

TEST_CASE("per-group byte counters", "[comm]") {
  auto& w = world();
  auto g = w.split(0, w.rank());
  g->reset_stats();
  g->allreduce(zeros({1000}))->wait();
  g->allreduce(zeros({10}, DType::bf16))->wait();
  g->allgather(zeros({4 * g->size()}, DType::f64), zeros({4}, DType::f64))->wait();
  g->barrier()->wait();
  comm::CommStats s = g->stats();
  CHECK(s[OpKind::allreduce].calls == 2);
  CHECK(s[OpKind::allreduce].bytes == 4000 + 20);
  CHECK(s[OpKind::allgather].bytes == 32);
  CHECK(s[OpKind::barrier].calls == 1);
  CHECK(s[OpKind::barrier].bytes == 0);
  CHECK(s.total_bytes() == 4052);
  if (g->size() > 1) {
    if (g->rank() == 0) g->send(zeros({6}), 1)->wait();
    if (g->rank() == 1) g->recv(zeros({6}), 0)->wait();
    s = g->stats();
    CHECK(s[OpKind::send].bytes == (g->rank() == 0 ? 24u : 0u));
    CHECK(s.bytes_received == (g->rank() == 1 ? 24u : 0u));
  }
  g->reset_stats();
  CHECK(g->stats().total_bytes() == 0);
}

TEST_CASE("trace: one JSON line per finished call", "[comm]") {
  auto& w = world();
  auto dir = std::filesystem::temp_directory_path();
  std::string prefix = (dir / ("fathom_comm_trace_" + std::to_string(getpid()))).string();
  comm::set_trace(prefix);
  auto g = w.split(0, w.rank(), "traced");
  g->allreduce(zeros({256}))->wait();
  g->barrier()->wait();
  comm::set_trace("");
  std::string path = prefix + ".rank" + std::to_string(w.rank()) + ".jsonl";
  std::ifstream in(path);
  REQUIRE(in.good());
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  std::filesystem::remove(path);
  // The split itself ran on the world group; then two calls on "traced".
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].find("\"op\":\"split\",\"group\":\"world\"") != std::string::npos);
  CHECK(lines[1].find("\"op\":\"allreduce\",\"group\":\"traced\"") != std::string::npos);
  CHECK(lines[1].find("\"seq\":1,") != std::string::npos);
  CHECK(lines[1].find("\"bytes\":1024,") != std::string::npos);
  CHECK(lines[1].find("\"start_us\":") != std::string::npos);
  CHECK(lines[1].find("\"end_us\":") != std::string::npos);
  CHECK(lines[2].find("\"op\":\"barrier\"") != std::string::npos);
}

TEST_CASE("init reports the launch", "[comm]") {
  const auto& info = comm::init();
  CHECK(info.world.get() == &world());
  CHECK(info.rank == world().rank());
  CHECK(info.world_size == world().size());
  CHECK(info.local_rank >= 0);
  CHECK(info.local_rank < info.local_size);
  CHECK((info.launcher == "openmpi" || info.launcher == "single" || info.launcher == "slurm" ||
         info.launcher == "mpich" || info.launcher == "torchrun"));
  CHECK(info.device.is_cpu() == !cuda_available());
  CHECK(world().timeout() > 0);
}

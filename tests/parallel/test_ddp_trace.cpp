// The timeline of a DDP step under mpirun: with the span recorder on, every rank records a
// backward span per step, each bucket's queued and reduce spans on its own row, and one
// allreduce span per bucket per step in the comm row of the group, with its sequence number and
// bytes; its Chrome trace JSON parses.
#include "testing.h"

#include <map>

#include "fathom/checkpoint/json.h"
#include "fathom/comm/comm.h"
#include "fathom/core/trace.h"
#include "fathom/log/chrome_trace.h"
#include "fathom/parallel/ddp.h"

using namespace fathom;

TEST_CASE("DDP records backward, bucket and collective spans per step", "[parallel][trace]") {
  auto pg = comm::init().world;
  Generator g(7);
  auto model = std::make_shared<nn::Sequential>(nn::Linear(12, 64, &g), nn::ReLU(), nn::Linear(64, 64, &g),
                                                nn::ReLU(), nn::Linear(64, 5, &g));
  // Tiny buckets: several per step, so overlap and ordering show.
  parallel::DistributedDataParallel ddp(model, pg, parallel::DDPOptions().bucket_cap_mb(0.01).first_bucket_cap_mb(0.001));
  const int steps = 3;
  trace::start(4096);
  for (int s = 0; s < steps; ++s) {
    Tensor x = randn({8, 12}, kFloat32, &g);
    Tensor y = ops::to(ops::to(uniform({8}, 0, 5, kFloat32, &g), kInt64), Device::cpu());
    cross_entropy(ddp.forward(x), y).backward();
  }
  trace::stop();
  trace::Snapshot snap = trace::snapshot();
  const int buckets = int(ddp.bucket_layout().size());
  REQUIRE(buckets >= 2);

  std::map<std::string, int> count;  // "category/name"
  std::vector<int64_t> seqs;
  for (const trace::Span& s : snap.spans) {
    count[std::string(s.category) + "/" + s.name]++;
    if (std::string(s.category) == "comm" && std::string(s.name) == "allreduce") {
      CHECK(std::string(s.track) == "comm " + pg->name());
      CHECK(std::string(s.args[0].key) == "group");
      CHECK(std::string(s.args[1].key) == "seq");
      CHECK(std::string(s.args[2].key) == "bytes");
      CHECK(s.args[2].num > 0);
      seqs.push_back(s.args[1].num);
    }
    if (std::string(s.category) == "ddp") {
      CHECK(std::string(s.track).rfind("ddp bucket ", 0) == 0);
      CHECK(s.end_us >= s.begin_us);
    }
  }
  CHECK(count["autograd/backward"] == steps);
  CHECK(count["ddp/reduce"] == steps * buckets);
  CHECK(count["ddp/queued"] == steps * buckets);
  // The first step's buckets follow registration order, later ones the learned order; the
  // count of all-reduces is the same (plus nothing else on this group while recording).
  CHECK(count["comm/allreduce"] == steps * buckets);
  for (size_t i = 1; i < seqs.size(); ++i) CHECK(seqs[i] > seqs[i - 1]);  // issued in order

  std::string doc = logging::chrome_trace_document({logging::chrome_trace_events(snap, pg->rank(), logging::earliest_begin(snap))});
  CHECK_NOTHROW(checkpoint::json::parse(doc, "trace"));
}

// The span recorder (core/trace.h) and its Chrome trace JSON (log/chrome_trace.h): off records
// nothing, on keeps the newest spans in a bounded ring, threads and tracks get rows of their
// own, and the JSON parses with a strict reader and holds what was recorded.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <thread>

#include "fathom/checkpoint/json.h"
#include "fathom/core/error.h"
#include "fathom/core/trace.h"
#include "fathom/log/chrome_trace.h"

using namespace fathom;
namespace json = fathom::checkpoint::json;

namespace {

const json::Value* member(const json::Value& v, const std::string& key) {
  for (auto& [k, m] : v.object)
    if (k == key) return &m;
  return nullptr;
}
std::string text(const json::Value& v, const std::string& key) {
  const json::Value* m = member(v, key);
  return m && m->kind == json::Value::Kind::string ? m->string : "";
}
int64_t number(const json::Value& v, const std::string& key) {
  const json::Value* m = member(v, key);
  return m && m->kind == json::Value::Kind::integer ? int64_t(m->integer) : -1;
}

// The "X" events of a parsed document.
std::vector<json::Value> spans_of(const std::string& doc) {
  json::Value v = json::parse(doc, "trace");
  const json::Value* ev = member(v, "traceEvents");
  REQUIRE(ev);
  std::vector<json::Value> out;
  for (const json::Value& e : ev->array)
    if (text(e, "ph") == "X") out.push_back(e);
  return out;
}

}  // namespace

TEST_CASE("trace: off records nothing, on records spans with their arguments", "[log]") {
  trace::stop();
  trace::start(16);
  trace::stop();
  { trace::Scope s("test", "ignored"); }
  trace::record("test", "ignored too", 1, 2);
  CHECK(trace::snapshot().spans.empty());

  trace::start(16);
  int64_t before = trace::now_us();
  { trace::Scope s("test", "outer", "step", 7); }
  trace::record("comm", "allreduce", before, before + 50,
                {{"group", "world"}, {"seq", int64_t(3)}, {"bytes", uint64_t(4096)}}, "comm world");
  trace::stop();
  trace::Snapshot snap = trace::snapshot();
  REQUIRE(snap.spans.size() == 2);
  const trace::Span& a = snap.spans[0];
  CHECK(std::string(a.name) == "outer");
  CHECK(std::string(a.category) == "test");
  CHECK(a.begin_us >= before);
  CHECK(a.end_us >= a.begin_us);
  CHECK(std::string(a.args[0].key) == "step");
  CHECK(a.args[0].num == 7);
  CHECK(a.args[1].key == nullptr);
  const trace::Span& b = snap.spans[1];
  CHECK(std::string(b.track) == "comm world");
  CHECK(std::string(b.args[0].text) == "world");
  CHECK(b.args[1].num == 3);
  CHECK(b.args[2].num == 4096);
  CHECK(b.end_us - b.begin_us == 50);
}

TEST_CASE("trace: the ring keeps the newest spans and counts the dropped", "[log]") {
  trace::start(4);
  for (int i = 0; i < 10; ++i) trace::record("test", "span " + std::to_string(i), i, i + 1);
  trace::stop();
  trace::Snapshot snap = trace::snapshot();
  REQUIRE(snap.spans.size() == 4);
  CHECK(snap.dropped == 6);
  for (int k = 0; k < 4; ++k) CHECK(std::string(snap.spans[size_t(k)].name) == "span " + std::to_string(6 + k));
  CHECK_THROWS_WITH(trace::start(0), Catch::Contains("capacity"));
}

TEST_CASE("trace: long names and texts are cut, never overrun", "[log]") {
  trace::start(4);
  std::string longer(200, 'n');
  trace::record("test", longer, 0, 1, {{"k", std::string_view(longer)}}, longer);
  trace::stop();
  trace::Span s = trace::snapshot().spans.at(0);
  CHECK(std::string(s.name) == std::string(trace::kNameChars, 'n'));
  CHECK(std::string(s.track) == std::string(trace::kNameChars, 'n'));
  CHECK(std::string(s.args[0].text) == std::string(trace::kTextChars, 'n'));
}

TEST_CASE("chrome trace: valid JSON with a row per thread and per track", "[log]") {
  trace::start(64);
  trace::name_this_thread("main");
  int64_t t0 = trace::now_us();
  trace::record("train", "forward \"quoted\"\n\xc3\xa9", t0 + 10, t0 + 20, {{"step", int64_t(1)}});
  std::thread([&] { trace::record("train", "worker", t0 + 12, t0 + 15); }).join();
  trace::record("ddp", "reduce", t0 + 15, t0 + 30, {{"bucket", 0}}, "ddp bucket 0");
  trace::stop();
  trace::Snapshot snap = trace::snapshot();
  REQUIRE(logging::earliest_begin(snap) == t0 + 10);

  // Two "ranks" of the same spans, as the examples merge them.
  std::string doc = logging::chrome_trace_document(
      {logging::chrome_trace_events(snap, 0, t0), logging::chrome_trace_events(snap, 1, t0)});
  std::vector<json::Value> spans = spans_of(doc);
  REQUIRE(spans.size() == 6);
  std::map<int64_t, std::set<int64_t>> tids;  // pid -> rows
  for (const json::Value& e : spans) tids[number(e, "pid")].insert(number(e, "tid"));
  CHECK(tids.size() == 2);
  CHECK(tids[0].size() == 3);  // main, the worker thread, the bucket's track
  const json::Value& fwd = spans[0];
  CHECK(text(fwd, "name") == "forward \"quoted\"\n??");  // non-ASCII bytes become '?'
  CHECK(number(fwd, "ts") == 10);
  CHECK(number(fwd, "dur") == 10);
  CHECK(number(*member(fwd, "args"), "step") == 1);
  CHECK(text(spans[2], "name") == "reduce");
  CHECK(number(spans[2], "tid") >= 1000);  // tracks sort below threads

  // The rows are named: "main" for this thread, the track by its name.
  json::Value v = json::parse(doc, "trace");
  std::set<std::string> names;
  for (const json::Value& e : member(v, "traceEvents")->array)
    if (text(e, "name") == "thread_name" || text(e, "name") == "process_name")
      names.insert(text(*member(e, "args"), "name"));
  CHECK(names.count("main"));
  CHECK(names.count("ddp bucket 0"));
  CHECK(names.count("rank 0"));
  CHECK(names.count("rank 1"));
}

TEST_CASE("chrome trace: an empty snapshot is still a valid document", "[log]") {
  trace::start(4);
  trace::stop();
  std::string doc = logging::chrome_trace_document({logging::chrome_trace_events(trace::snapshot(), 0, 0)});
  CHECK(spans_of(doc).empty());
  CHECK(logging::chrome_trace_document({}) == "{\"traceEvents\":[\n\n],\"displayTimeUnit\":\"ms\"}\n");
}

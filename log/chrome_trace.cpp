#include "fathom/log/chrome_trace.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "fathom/core/error.h"

namespace fathom::logging {

namespace {

// Appends `s` as a JSON string literal. Bytes past ASCII become '?': a name cut at kNameChars
// may end inside a UTF-8 sequence, and the file must stay valid JSON.
void append_quoted(std::string& r, std::string_view s) {
  r += '"';
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      r += '\\';
      r += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      r += buf;
    } else {
      r += c < 0x80 ? ch : '?';
    }
  }
  r += '"';
}
std::string quote(std::string_view s) {
  std::string r;
  append_quoted(r, s);
  return r;
}

void metadata(std::string& out, const char* what, int pid, int64_t tid, const std::string& key,
              const std::string& value_json) {
  if (!out.empty()) out += ",\n";
  out += "{\"name\":\"" + std::string(what) + "\",\"ph\":\"M\",\"pid\":" + std::to_string(pid);
  if (tid >= 0) out += ",\"tid\":" + std::to_string(tid);
  out += ",\"args\":{\"" + key + "\":" + value_json + "}}";
}

// Tracks get row ids after every thread's, so they sort below the threads in a viewer.
constexpr int64_t kFirstTrackTid = 1000;

}  // namespace

int64_t earliest_begin(const trace::Snapshot& snap) {
  int64_t t = INT64_MAX;
  for (const trace::Span& s : snap.spans) t = std::min(t, s.begin_us);
  return t;
}

std::string chrome_trace_events(const trace::Snapshot& snap, int rank, int64_t origin_us) {
  std::set<uint32_t> threads;
  std::set<std::string> track_names;
  for (const trace::Span& s : snap.spans) {
    if (s.track[0]) track_names.insert(s.track);
    else threads.insert(s.thread);
  }
  std::map<std::string, int64_t> track_tid;
  for (const std::string& t : track_names) track_tid[t] = kFirstTrackTid + int64_t(track_tid.size());

  std::string out;
  metadata(out, "process_name", rank, -1, "name", quote("rank " + std::to_string(rank)));
  metadata(out, "process_sort_index", rank, -1, "sort_index", std::to_string(rank));
  if (snap.dropped > 0)
    metadata(out, "process_labels", rank, -1, "labels",
             quote("ring full: oldest " + std::to_string(snap.dropped) + " spans dropped"));
  for (uint32_t t : threads) {
    auto it = snap.threads.find(t);
    metadata(out, "thread_name", rank, t, "name",
             quote(it != snap.threads.end() ? it->second : "thread " + std::to_string(t)));
    metadata(out, "thread_sort_index", rank, t, "sort_index", std::to_string(t));
  }
  for (auto& [name, tid] : track_tid) {
    metadata(out, "thread_name", rank, tid, "name", quote(name));
    metadata(out, "thread_sort_index", rank, tid, "sort_index", std::to_string(tid));
  }
  // Appended in place, not through temporaries: a full ring is 65536 spans.
  out.reserve(out.size() + snap.spans.size() * 160);
  const std::string pid = std::to_string(rank);
  for (const trace::Span& s : snap.spans) {
    int64_t tid = s.track[0] ? track_tid[s.track] : int64_t(s.thread);
    int64_t begin = std::max(s.begin_us, origin_us);
    out += ",\n{\"name\":";
    append_quoted(out, s.name);
    out += ",\"cat\":";
    append_quoted(out, s.category);
    out += ",\"ph\":\"X\",\"ts\":";
    out += std::to_string(begin - origin_us);
    out += ",\"dur\":";
    out += std::to_string(std::max<int64_t>(s.end_us - begin, 0));
    out += ",\"pid\":";
    out += pid;
    out += ",\"tid\":";
    out += std::to_string(tid);
    out += ",\"args\":{";
    bool first = true;
    for (const trace::StoredArg& a : s.args) {
      if (!a.key) continue;
      if (!first) out += ',';
      first = false;
      append_quoted(out, a.key);
      out += ':';
      if (a.is_text) append_quoted(out, a.text);
      else out += std::to_string(a.num);
    }
    out += "}}";
  }
  return out;
}

std::string chrome_trace_document(const std::vector<std::string>& per_rank_events) {
  std::string out = "{\"traceEvents\":[\n";
  bool first = true;
  for (const std::string& e : per_rank_events) {
    if (e.empty()) continue;
    if (!first) out += ",\n";
    first = false;
    out += e;
  }
  return out + "\n],\"displayTimeUnit\":\"ms\"}\n";
}

void write_text_file(const std::string& path, const std::string& text) {
  std::filesystem::path p(path);
  if (p.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(p.parent_path(), ec);
    FATHOM_CHECK(!ec, "write_text_file: cannot create the directory of '", path, "': ", ec.message());
  }
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    FATHOM_CHECK(f, "write_text_file: cannot create '", tmp, "'");
    f << text;
    f.flush();
    FATHOM_CHECK(f, "write_text_file: writing '", tmp, "' failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  FATHOM_CHECK(!ec, "write_text_file: cannot rename '", tmp, "' to '", path, "': ", ec.message());
}

}  // namespace fathom::logging

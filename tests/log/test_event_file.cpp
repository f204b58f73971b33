// Event files: what EventWriter writes, Fathom's reader gives back exactly (float32 values,
// steps, tags), with every record's CRCs checked; damage is a clear error; a file cut short
// by a killed writer keeps its complete records.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "fathom/core/error.h"
#include "fathom/log/event_file.h"

using namespace fathom;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("fathom_log_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
}

}  // namespace

TEST_CASE("event files read back with the exact scalars written", "[log]") {
  fs::path dir = fresh_dir("roundtrip") / "nested";  // parents are created
  std::string path;
  const std::vector<double> values = {2.302585, 0.0, -1.5e-8, 1e30, 0.1};
  {
    logging::EventWriter w(dir.string());
    path = w.path();
    CHECK(fs::path(path).filename().string().rfind("events.out.tfevents.", 0) == 0);
    for (size_t i = 0; i < values.size(); ++i) w.add_scalar(int64_t(10 * i), "train/loss", values[i]);
    w.add_scalars(99, {{"train/lr", 3e-4}, {"perf/mfu", 0.25}});
  }
  logging::EventFile f = logging::read_event_file(path);
  CHECK(f.file_version == "brain.Event:2");
  CHECK(f.records == int64_t(values.size()) + 2);  // the version event, then one per call
  CHECK_FALSE(f.truncated_tail);
  REQUIRE(f.scalars.size() == values.size() + 2);
  for (size_t i = 0; i < values.size(); ++i) {
    CHECK(f.scalars[i].tag == "train/loss");
    CHECK(f.scalars[i].step == int64_t(10 * i));
    CHECK(f.scalars[i].value == float(values[i]));  // 0 included: simple_value is in a oneof
    CHECK(f.scalars[i].wall_time > 1.5e9);
  }
  CHECK(f.scalars[values.size()].tag == "train/lr");
  CHECK(f.scalars[values.size()].value == float(3e-4));
  CHECK(f.scalars[values.size() + 1].tag == "perf/mfu");
  CHECK(f.scalars[values.size() + 1].step == 99);
  fs::remove_all(dir.parent_path());
}

TEST_CASE("non-finite scalars survive the round trip", "[log]") {
  fs::path dir = fresh_dir("nonfinite");
  logging::EventWriter w(dir.string());
  w.add_scalars(1, {{"a", std::numeric_limits<double>::quiet_NaN()}, {"b", std::numeric_limits<double>::infinity()}});
  logging::EventFile f = logging::read_event_file(w.path());
  REQUIRE(f.scalars.size() == 2);
  CHECK(std::isnan(f.scalars[0].value));
  CHECK(std::isinf(f.scalars[1].value));
  fs::remove_all(dir);
}

TEST_CASE("a damaged event file is an error naming the record; a cut one keeps its records", "[log]") {
  fs::path dir = fresh_dir("damage");
  std::string path;
  {
    logging::EventWriter w(dir.string());
    path = w.path();
    for (int i = 0; i < 3; ++i) w.add_scalar(i, "loss", 1.0 + i);
  }
  const std::string good = slurp(path);

  SECTION("a flipped byte in a record's data") {
    std::string bad = good;
    bad[bad.size() - 6] ^= 0x01;  // inside the last record's payload
    spit(path, bad);
    CHECK_THROWS_WITH(logging::read_event_file(path), Catch::Contains("record 3") && Catch::Contains("data's CRC"));
  }
  SECTION("a flipped byte in a record's length") {
    std::string bad = good;
    bad[0] ^= 0x40;
    spit(path, bad);
    CHECK_THROWS_WITH(logging::read_event_file(path), Catch::Contains("record 0 at byte 0") && Catch::Contains("length's CRC"));
  }
  SECTION("cut inside the last record, as a killed writer leaves it") {
    for (size_t cut : {size_t(3), size_t(13), size_t(20)}) {
      spit(path, good.substr(0, good.size() - cut));
      logging::EventFile f = logging::read_event_file(path);
      CHECK(f.truncated_tail);
      REQUIRE(f.scalars.size() == 2);
      CHECK(f.scalars[1].value == 2.0f);
    }
  }
  SECTION("not an event file") {
    spit(path, std::string(64, 'x'));
    CHECK_THROWS_WITH(logging::read_event_file(path), Catch::Contains("length's CRC"));
  }
  fs::remove_all(dir);
}

TEST_CASE("event file paths that cannot be used are errors naming them", "[log]") {
  fs::path dir = fresh_dir("paths");
  fs::create_directories(dir);
  spit((dir / "plain").string(), "x");
  CHECK_THROWS_WITH(logging::EventWriter((dir / "plain" / "sub").string()), Catch::Contains("plain"));
  CHECK_THROWS_WITH(logging::read_event_file((dir / "missing").string()), Catch::Contains("cannot open") && Catch::Contains("missing"));
  fs::remove_all(dir);
}

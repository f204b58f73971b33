#pragma once
// TensorBoard event files: scalars written as TFRecords of Event protos (log/event.proto), the
// format TensorBoard's own reader loads, and a reader of Fathom's own that checks every record.
//
//   logging::EventWriter tb("runs/mlp");                 // runs/mlp/events.out.tfevents.<t>.<host>.<pid>
//   tb.add_scalars(step, {{"train/loss", 0.41}, {"train/lr", 1e-3}});
//   logging::EventFile f = logging::read_event_file(tb.path());
//
// TFRecord framing: uint64 length (little-endian), uint32 masked CRC-32C of those 8 bytes, the
// bytes, uint32 masked CRC-32C of the bytes. Each event goes to the file in one write(2), and
// nothing is buffered in the process: a run killed at any point leaves every earlier event
// readable (at most the one being written is cut short, which readers skip).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace fathom::logging {

struct Scalar {
  std::string tag;
  double value = 0;  // stored as float32, as TensorBoard's simple_value
};

class EventWriter {
 public:
  // Creates `dir` (and its parents) when missing, then a new event file in it. Throws
  // fathom::Error naming the path when either fails.
  explicit EventWriter(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // One event holding every value, at `step`, stamped with the current wall time.
  void add_scalars(int64_t step, const std::vector<Scalar>& values);
  void add_scalar(int64_t step, const std::string& tag, double value) { add_scalars(step, {{tag, value}}); }

  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  int fd_ = -1;
  std::string path_;
};

// The framing of one record (exposed for tests and tools that write records themselves).
std::string tfrecord(const std::string& data);

struct ScalarEvent {
  int64_t step = 0;
  double wall_time = 0;
  std::string tag;
  float value = 0;
};

struct EventFile {
  std::string file_version;           // "brain.Event:2" in a file this writer made
  std::vector<ScalarEvent> scalars;   // in file order
  int64_t records = 0;                // complete records read
  bool truncated_tail = false;        // the last record was cut short (a killed writer)
};

// Reads every record, checking both CRCs of each. A bad CRC, a record that does not parse
// as an Event, or a file that is not there throws fathom::Error naming the file, the record
// and its byte offset. A record cut short at the end of the file is not an error (a writer
// killed mid-write leaves one): it sets truncated_tail.
EventFile read_event_file(const std::string& path);

}  // namespace fathom::logging

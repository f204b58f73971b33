// StreamWriter: the bytes appended are the file's bytes, whatever the sizes (block and buffer
// edges), whether O_DIRECT is used or not (FATHOM_CHECKPOINT_DIRECT_IO, filesystems without it),
// and a checkpoint's files do not depend on which path wrote them.
#include <fstream>
#include <iterator>

#include "ckpt_testing.h"
#include "fathom/checkpoint/stream_writer.h"

using namespace fathom;
using namespace fathom::testing;
using checkpoint::internal::StreamWriter;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// The StreamWriter cases run in the process without MPI (the sanitizer run checks them for
// leaks), so their directory is a plain one of this process, not a SharedDir.
struct LocalDir {
  std::string path;
  LocalDir() {
    std::string tmpl = (fs::temp_directory_path() / "fathom_stream_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~LocalDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

struct DirectIo {
  explicit DirectIo(const char* v) { ::setenv("FATHOM_CHECKPOINT_DIRECT_IO", v, 1); }
  ~DirectIo() { ::unsetenv("FATHOM_CHECKPOINT_DIRECT_IO"); }
};

// Appends `total` bytes in pieces of awkward sizes, every third piece zeros; returns what the
// file must hold.
std::string write_pattern(const std::string& path, size_t total, bool* direct) {
  std::string expect;
  expect.reserve(total);
  StreamWriter w(path, "test");
  const size_t pieces[] = {1, 4095, 4097, 3, StreamWriter::kBuffer - 7, 65536, 12345};
  size_t i = 0;
  while (expect.size() < total) {
    size_t n = std::min(pieces[i % 7], total - expect.size());
    if (i % 3 == 2) {
      w.append_zeros(n);
      expect.append(n, '\0');
    } else {
      std::string bytes(n, '\0');
      for (size_t k = 0; k < n; ++k) bytes[k] = char((expect.size() + k) * 131 + i);
      w.append(bytes.data(), n);
      expect += bytes;
    }
    ++i;
  }
  REQUIRE(w.size() == total);
  w.finish();
  *direct = w.direct();
  return expect;
}

}  // namespace

TEST_CASE("StreamWriter: the file holds exactly the bytes appended, at every block and buffer edge",
          "[checkpoint]") {
  LocalDir dir;
  const size_t B = StreamWriter::kBlock, K = StreamWriter::kBuffer;
  for (const char* mode : {"1", "0"}) {
    DirectIo env(mode);
    for (size_t total : {size_t(0), size_t(1), B - 1, B, B + 1, K - 1, K, K + 1, 2 * K + 12345}) {
      CAPTURE(mode, total);
      const std::string path = dir / ("f" + std::string(mode) + "_" + std::to_string(total));
      bool direct = true;
      const std::string expect = write_pattern(path, total, &direct);
      const std::string got = slurp(path);
      REQUIRE(got.size() == expect.size());
      CHECK(got == expect);
      if (std::string(mode) == "0") CHECK_FALSE(direct);
    }
  }
}

TEST_CASE("StreamWriter: a filesystem without O_DIRECT gets ordinary writes of the same bytes",
          "[checkpoint]") {
  // tmpfs refused O_DIRECT before Linux 6.6 and takes it since; either way the bytes must match.
  if (!fs::is_directory("/dev/shm")) return;
  const std::string path = "/dev/shm/fathom_stream_writer_" + std::to_string(::getpid());
  fs::remove(path);
  bool direct = false;
  const std::string expect = write_pattern(path, StreamWriter::kBuffer + 999, &direct);
  CHECK(slurp(path) == expect);
  fs::remove(path);
}

TEST_CASE("StreamWriter: bad FATHOM_CHECKPOINT_DIRECT_IO and an existing file are errors",
          "[checkpoint]") {
  LocalDir dir;
  {
    DirectIo env("yes");
    CHECK_THROWS_WITH(StreamWriter(dir / "a", "test"),
                      Catch::Contains("FATHOM_CHECKPOINT_DIRECT_IO='yes'") &&
                          Catch::Contains("must be 1"));
  }
  std::ofstream(dir / "b") << "x";
  CHECK_THROWS_WITH(StreamWriter(dir / "b", "where"),
                    Catch::Contains("where: cannot create") && Catch::Contains("File exists"));
}

TEST_CASE("checkpoint files are byte-identical written with and without O_DIRECT",
          "[checkpointer][ranks]") {
  const int rank = world().rank();
  checkpoint::RankState s;
  s.replicated["big"] = pattern({int64_t(3) << 20}, DType::f32, 7);  // 12 MB: crosses buffers
  s.replicated["odd"] = pattern({1001}, DType::f16, 8);
  s.per_rank["rng"] = pattern({5}, DType::i64, 9 + rank);
  std::string files[2];
  for (int mode = 0; mode < 2; ++mode) {
    DirectIo env(mode ? "1" : "0");
    SharedDir dir;
    {
      checkpoint::Checkpointer c(dir.path, world(), checkpoint::CheckpointerOptions().async(false));
      c.save(3, s);
      auto back = c.load_latest();
      REQUIRE(back);
      for (auto& [name, t] : s.replicated) CHECK(bitwise_equal(back->replicated.at(name), t));
    }
    files[mode] = slurp(dir / ("step_00000003/rank_" + std::to_string(rank) + ".bin"));
  }
  REQUIRE(!files[0].empty());
  CHECK(files[0] == files[1]);
}

// Hostile and broken input files: every reader error is a fathom::Error naming the file, before
// any allocation sized by the file's own (unchecked) header.
#include "testing.h"

#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "fathom/data/idx.h"
#include "fathom/data/text.h"

using namespace fathom;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<uint8_t>;

// A fresh directory per test case, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() /
           ("fathom_corrupt_" + std::to_string(getpid()) + "_" + std::to_string(n++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name, const Bytes& bytes) const {
    std::string p = (path / name).string();
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return p;
  }
  std::string gz(const std::string& name, const Bytes& bytes) const {
    std::string p = (path / name).string();
    gzFile f = gzopen(p.c_str(), "wb");
    REQUIRE(f);
    REQUIRE(gzwrite(f, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
    REQUIRE(gzclose(f) == Z_OK);
    return p;
  }
};

void put32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}
// An IDX file of unsigned bytes with these dims (as the header says) and this payload.
Bytes idx(const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes b{0, 0, 8, uint8_t(dims.size())};
  for (uint32_t d : dims) put32(b, d);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}
Bytes filled(size_t n, uint32_t seed = 1) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = uint8_t((seed = seed * 1103515245u + 12345u) >> 16) % 10;
  return b;
}

}  // namespace

TEST_CASE("IDX: truncated header, wrong magic and extra bytes name the file", "[data]") {
  TempDir d;
  std::string hdr = d.file("hdr", {0, 0, 8, 1, 0});
  CHECK_THROWS_WITH(data::read_idx_labels(hdr), Contains(hdr) && Contains("only 5 bytes"));
  std::string empty_file = d.file("empty", {});
  CHECK_THROWS_WITH(data::read_idx_images(empty_file), Contains(empty_file) && Contains("only 0 bytes"));
  Bytes signed_bytes = idx({1}, {3});
  signed_bytes[2] = 0x09;  // IDX type 0x09: signed bytes
  std::string magic = d.file("magic", signed_bytes);
  CHECK_THROWS_WITH(data::read_idx_labels(magic), Contains(magic) && Contains("magic 0x901"));
  std::string extra = d.file("extra", idx({2}, {1, 2, 3}));
  CHECK_THROWS_WITH(data::read_idx_labels(extra),
                    Contains(extra) && Contains("promises 2 data bytes") && Contains("holds more"));
  std::string shorter = d.gz("short.gz", idx({4, 2, 2}, filled(15)));
  CHECK_THROWS_WITH(data::read_idx_images(shorter),
                    Contains(shorter) && Contains("promises 16 data bytes for shape [4, 2, 2]") &&
                        Contains("holds 15"));
}

TEST_CASE("IDX: dims whose product overflows are refused, not wrapped", "[data]") {
  TempDir d;
  // 2^22 x 2^21 x 2^21 = 2^64 bytes: a plain size_t product wraps to 0 and matched this empty
  // payload; then the image tensor asked the allocator for 2 PB.
  std::string wrap = d.file("wrap", idx({1u << 22, 1u << 21, 1u << 21}, {}));
  CHECK_THROWS_WITH(data::read_idx_images(wrap), Contains(wrap) && Contains("overflows int64"));
  std::string wrap_gz = d.gz("wrap.gz", idx({1u << 22, 1u << 21, 1u << 21}, filled(64)));
  CHECK_THROWS_WITH(data::read_idx_images(wrap_gz), Contains(wrap_gz) && Contains("overflows int64"));
  // The largest dims the format allows: (2^32 - 1)^3 overflows too.
  std::string max = d.file("max", idx({~0u, ~0u, ~0u}, {}));
  CHECK_THROWS_WITH(data::read_idx_images(max), Contains(max) && Contains("overflows int64"));
  // A size that fits but the file does not hold: refused by comparing sizes, allocating nothing.
  std::string big = d.file("big", idx({1u << 20, 1u << 20, 1u << 20}, filled(8)));
  CHECK_THROWS_WITH(data::read_idx_images(big),
                    Contains(big) && Contains("promises 1152921504606846976 data bytes"));
}

TEST_CASE("IDX: truncated or corrupt gzip names the file and zlib's reason", "[data]") {
  TempDir d;
  std::string good = d.gz("good.gz", idx({5000}, filled(5000)));
  REQUIRE(data::read_idx_labels(good).numel() == 5000);
  std::ifstream in(good, std::ios::binary);
  Bytes gz((std::istreambuf_iterator<char>(in)), {});
  REQUIRE(gz.size() > 100);
  // Cut in half: zlib reports "unexpected end of file". The text is read before gzclose frees
  // it (it used to be printed after, as garbage; AddressSanitizer: heap-use-after-free).
  std::string cut = d.file("cut.gz", Bytes(gz.begin(), gz.begin() + gz.size() / 2));
  CHECK_THROWS_WITH(data::read_idx_labels(cut), Contains(cut) && Contains("truncated gzip data") &&
                                                    Contains("unexpected end of file"));
  // A damaged deflate stream or checksum.
  Bytes bad = gz;
  for (size_t i = 20; i < 60; ++i) bad[i] ^= 0x5a;
  std::string flipped = d.file("flipped.gz", bad);
  // (zlib may call it corrupt, or the damage may show as a bad header or size: all name the file.)
  CHECK_THROWS_WITH(data::read_idx_labels(flipped), Contains(flipped));
}

TEST_CASE("IDX: zero items and zero-size images are clear errors", "[data]") {
  TempDir d;
  std::string no_images = d.gz("no_images.gz", idx({0, 28, 28}, {}));
  CHECK_THROWS_WITH(data::read_idx_images(no_images), Contains(no_images) && Contains("holds no images"));
  std::string no_pixels = d.gz("no_pixels.gz", idx({3, 0, 28}, {}));
  CHECK_THROWS_WITH(data::read_idx_images(no_pixels), Contains(no_pixels) && Contains("0 x 28 pixels"));
  std::string no_labels = d.gz("no_labels.gz", idx({0}, {}));
  CHECK_THROWS_WITH(data::read_idx_labels(no_labels), Contains(no_labels) && Contains("holds no labels"));
}

TEST_CASE("IDX: a directory given as a file is a clear error", "[data]") {
  TempDir d;
  std::string dir = d.path.string();
  CHECK_THROWS_WITH(data::read_idx_images(dir), Contains(dir) && Contains("is a directory"));
  // The dataset's directory holding a directory where the images file should be.
  fs::create_directories(d.path / "train-images-idx3-ubyte.gz");
  CHECK_THROWS_WITH(data::FashionMNIST(dir, true),
                    Contains("train-images-idx3-ubyte.gz") && Contains("is a directory"));
}

TEST_CASE("Fashion-MNIST split: count mismatch, image size and labels name the files", "[data]") {
  TempDir d;
  std::string dir = d.path.string();
  std::string images = d.gz("train-images-idx3-ubyte.gz", idx({2, 28, 28}, filled(2 * 784)));
  std::string labels = d.gz("train-labels-idx1-ubyte.gz", idx({3}, {1, 2, 3}));
  CHECK_THROWS_WITH(data::FashionMNIST(dir, true),
                    Contains(images) && Contains("2 images") && Contains(labels) && Contains("3 labels"));
  d.gz("train-labels-idx1-ubyte.gz", idx({2}, {4, 10}));
  CHECK_THROWS_WITH(data::FashionMNIST(dir, true),
                    Contains(labels) && Contains("label 10 at index 1") && Contains("0..9"));
  d.gz("train-labels-idx1-ubyte.gz", idx({2}, {4, 9}));
  data::FashionMNIST ok(dir, true);
  CHECK(ok.size() == 2);
  d.gz("t10k-images-idx3-ubyte.gz", idx({2, 4, 4}, filled(32)));
  d.gz("t10k-labels-idx1-ubyte.gz", idx({2}, {0, 1}));
  CHECK_THROWS_WITH(data::FashionMNIST(dir, false),
                    Contains("t10k-images-idx3-ubyte.gz") && Contains("16 pixels, expected 28 x 28"));
}

TEST_CASE("TextDataset: empty, directory and too-short files name the file", "[data]") {
  TempDir d;
  std::string empty_file = d.file("empty.txt", {});
  CHECK_THROWS_WITH(data::TextDataset(empty_file), Contains(empty_file) && Contains("is empty"));
  std::string dir = d.path.string();
  CHECK_THROWS_WITH(data::TextDataset(dir), Contains(dir) && Contains("is a directory"));
  std::string abc = d.file("abc.txt", {'a', 'b', 'c'});
  data::TextDataset text(abc);
  Generator g(0);
  // Three bytes hold exactly one window of T + 1 = 3.
  auto [x, y] = text.batch(2, 2, g);
  CHECK(to_vector(x) == std::vector<double>{'a', 'b', 'a', 'b'});
  CHECK(to_vector(y) == std::vector<double>{'b', 'c', 'b', 'c'});
  CHECK_THROWS_WITH(text.batch(1, 3, g), Contains(abc) && Contains("too few for windows of 4"));
  CHECK_THROWS_WITH(text.batch(1, INT64_MAX, g), Contains(abc) && Contains("too few"));
  CHECK_THROWS_WITH(text.batch(0, 2, g), Contains("must be positive"));
}

#include "fathom/data/idx.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "fathom/core/checked.h"
#include "fathom/core/memory.h"
#include "fathom/core/ops/factory.h"

namespace fathom::data {

namespace {

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

// An IDX file of unsigned bytes, validated: the whole payload and the dims of its header.
struct Idx {
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // header included; the payload starts at data()
  size_t header = 0;
  const uint8_t* data() const { return bytes.data() + header; }
};

// Checks the magic (unsigned bytes, `dims` dimensions) and returns the header's size in bytes
// of the whole file, in checked arithmetic: dims of 2^22 x 2^21 x 2^21 wrap a plain product to
// 0, which "matches" an empty payload and then reaches the allocator as 2 PB.
uint64_t parse_header(Idx& f, const std::string& path, uint32_t dims) {
  uint32_t magic = be32(f.bytes.data()), want = 0x0800u | dims;
  FATHOM_CHECK(magic == want, "'", path, "' is not an IDX file of ", dims,
               "-d unsigned bytes: magic 0x", std::hex, magic, " (expected 0x", want, ")");
  for (uint32_t i = 0; i < dims; ++i) f.shape.push_back(be32(f.bytes.data() + 4 + 4 * i));
  std::string where = "'" + path + "'";
  int64_t payload = checked_numel(f.shape, where.c_str()), total = 0;
  FATHOM_CHECK(add_fits(payload, int64_t(f.header), &total), where,
               ": header promises more bytes than fit in int64");
  return uint64_t(total);
}

// Reads the file, decompressing gzip (zlib reads plain files transparently too), and validates
// the header as soon as it has arrived, so that a file (or a gzip bomb) holding more than its
// header promises is refused without being read to its end.
Idx read_idx(const std::string& path, uint32_t dims) {
  namespace fs = std::filesystem;
  std::error_code ec;
  FATHOM_CHECK(fs::exists(path, ec), "cannot open '", path,
               "': file not found (Fashion-MNIST comes from the Debian package "
               "dataset-fashion-mnist: apt-get install dataset-fashion-mnist)");
  FATHOM_CHECK(!fs::is_directory(path, ec), "cannot read '", path,
               "': it is a directory, not an IDX file");
  gzFile gz = gzopen(path.c_str(), "rb");
  FATHOM_CHECK(gz, "cannot open '", path, "': ", std::strerror(errno));
  Idx f;
  f.header = 4 + 4 * size_t(dims);
  uint64_t expected = 0;  // 0 until the header is in
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(gz, buf, sizeof buf)) > 0) {
    f.bytes.insert(f.bytes.end(), buf, buf + n);
    if (expected == 0 && f.bytes.size() >= f.header) {
      try {
        expected = parse_header(f, path, dims);
      } catch (...) {
        gzclose(gz);
        throw;
      }
    }
    if (expected != 0 && f.bytes.size() > expected) break;
  }
  // A truncated stream ends gzread with 0, not -1, and Z_BUF_ERROR ("unexpected end of file")
  // in gzerror, so the error state is read either way. Its text belongs to the gzFile: copied
  // before gzclose frees it.
  int err = Z_OK;
  std::string gz_msg = gzerror(gz, &err);
  if (err == Z_ERRNO) gz_msg = std::strerror(errno);
  gzclose(gz);
  FATHOM_CHECK(n >= 0 && err == Z_OK, "reading '", path, "': corrupt or truncated gzip data (",
               gz_msg, ")");
  FATHOM_CHECK(f.bytes.size() >= f.header, "'", path, "' is not an IDX file: only ", f.bytes.size(),
               " bytes");
  uint64_t payload = expected - f.header;
  FATHOM_CHECK(f.bytes.size() == expected, "'", path, "': header promises ", payload,
               " data bytes for shape ", shape_str(f.shape), " but the file holds ",
               f.bytes.size() > expected ? "more" : std::to_string(f.bytes.size() - f.header));
  return f;
}

}  // namespace

Tensor read_idx_images(const std::string& path) {
  Idx f = read_idx(path, 3);
  const std::vector<int64_t>& s = f.shape;
  FATHOM_CHECK(s[0] > 0, "'", path, "' holds no images (shape ", shape_str(s), ")");
  FATHOM_CHECK(s[1] > 0 && s[2] > 0, "'", path, "': images of ", s[1], " x ", s[2],
               " pixels hold nothing (shape ", shape_str(s), ")");
  memory::Scope ledger(memory::Category::other);  // data, not activations (docs/memory.md)
  Tensor t = empty({s[0], s[1] * s[2]}, DType::f32);  // the product fits: read_idx checked it
  float* p = t.data<float>();
  const uint8_t* src = f.data();
  const int64_t n = t.numel();  // once: numel() re-checks the shape, 47 M times for the train set
  for (int64_t i = 0; i < n; ++i) p[i] = float(src[i]) / 255.0f;
  return t;
}

Tensor read_idx_labels(const std::string& path) {
  Idx f = read_idx(path, 1);
  int64_t n = f.shape[0];
  FATHOM_CHECK(n > 0, "'", path, "' holds no labels");
  memory::Scope ledger(memory::Category::other);
  Tensor t = empty({n}, DType::i64);
  int64_t* p = t.data<int64_t>();
  const uint8_t* src = f.data();
  for (int64_t i = 0; i < n; ++i) p[i] = src[i];
  return t;
}

static MnistSplit load_split(const std::string& dir, const std::string& prefix) {
  std::string images = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  std::string labels = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  MnistSplit s{read_idx_images(images), read_idx_labels(labels)};
  FATHOM_CHECK(s.images.size(0) == s.labels.size(0), "Fashion-MNIST ", prefix, " split: '",
               images, "' holds ", s.images.size(0), " images but '", labels, "' holds ",
               s.labels.size(0), " labels");
  FATHOM_CHECK(s.images.size(1) == 784, "Fashion-MNIST ", prefix, " split: '", images,
               "' holds images of ", s.images.size(1), " pixels, expected 28 x 28 = 784");
  // Ten classes: a corrupt label is named here, with its file, rather than by the loss.
  const int64_t* lp = s.labels.data<int64_t>();
  for (int64_t i = 0; i < s.labels.size(0); ++i)
    FATHOM_CHECK(lp[i] < 10, "Fashion-MNIST ", prefix, " split: '", labels, "' has label ", lp[i],
                 " at index ", i, ", outside the 10 classes 0..9");
  return s;
}

FashionMnist load_fashion_mnist(const std::string& dir) {
  return {load_split(dir, "train"), load_split(dir, "t10k")};
}

static TensorDataset split_dataset(const std::string& dir, bool train) {
  MnistSplit s = load_split(dir, train ? "train" : "t10k");
  return TensorDataset(s.images, s.labels);
}

FashionMNIST::FashionMNIST(const std::string& dir, bool train)
    : TensorDataset(split_dataset(dir, train)) {}

}  // namespace fathom::data

#include "fathom/data/idx.h"

#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "fathom/core/ops/factory.h"

namespace fathom::data {

// Whole file, decompressed when gzip (zlib reads plain files transparently too).
static std::vector<uint8_t> read_all(const std::string& path) {
  FATHOM_CHECK(std::filesystem::exists(path), "cannot open '", path,
               "': file not found (Fashion-MNIST comes from the Debian package "
               "dataset-fashion-mnist: apt-get install dataset-fashion-mnist)");
  gzFile f = gzopen(path.c_str(), "rb");
  FATHOM_CHECK(f, "cannot open '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  int err = 0;
  const char* msg = gzerror(f, &err);
  gzclose(f);
  FATHOM_CHECK(n == 0 && err == Z_OK, "reading '", path, "': corrupt or truncated gzip data (", msg, ")");
  return out;
}

static uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

// Checks the magic (unsigned bytes, `dims` dimensions) and the size; returns the dims.
static std::vector<int64_t> parse_header(const std::vector<uint8_t>& b, const std::string& path,
                                         uint32_t dims) {
  FATHOM_CHECK(b.size() >= 4 + 4 * dims, "'", path, "' is not an IDX file: only ", b.size(), " bytes");
  uint32_t magic = be32(b.data()), want = 0x0800u | dims;
  FATHOM_CHECK(magic == want, "'", path, "' is not an IDX file of ", dims,
               "-d unsigned bytes: magic 0x", std::hex, magic, " (expected 0x", want, ")");
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < dims; ++i) {
    shape.push_back(be32(b.data() + 4 + 4 * i));
  }
  size_t payload = 1;
  for (int64_t d : shape) payload *= size_t(d);
  FATHOM_CHECK(b.size() == 4 + 4 * dims + payload, "'", path, "': header promises ", payload,
               " data bytes for shape ", shape_str(shape), " but the file holds ",
               b.size() - (4 + 4 * dims));
  return shape;
}

Tensor read_idx_images(const std::string& path) {
  std::vector<uint8_t> b = read_all(path);
  std::vector<int64_t> s = parse_header(b, path, 3);
  Tensor t = empty({s[0], s[1] * s[2]}, DType::f32);
  float* p = t.data<float>();
  const uint8_t* src = b.data() + 16;
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(src[i]) / 255.0f;
  return t;
}

Tensor read_idx_labels(const std::string& path) {
  std::vector<uint8_t> b = read_all(path);
  std::vector<int64_t> s = parse_header(b, path, 1);
  Tensor t = empty({s[0]}, DType::i64);
  int64_t* p = t.data<int64_t>();
  for (int64_t i = 0; i < s[0]; ++i) p[i] = b[8 + i];
  return t;
}

static MnistSplit load_split(const std::string& dir, const std::string& prefix) {
  MnistSplit s;
  s.images = read_idx_images(dir + "/" + prefix + "-images-idx3-ubyte.gz");
  s.labels = read_idx_labels(dir + "/" + prefix + "-labels-idx1-ubyte.gz");
  FATHOM_CHECK(s.images.size(0) == s.labels.size(0), "Fashion-MNIST ", prefix, " split in '", dir,
               "': ", s.images.size(0), " images but ", s.labels.size(0), " labels");
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

#pragma once
// IDX files (the MNIST family), plain or gzip-compressed, validated before use: a truncated,
// oversized or mislabeled file is a clear error naming the path.
#include <string>

#include "fathom/core/tensor.h"
#include "fathom/data/dataset.h"

namespace fathom::data {

// Debian's dataset-fashion-mnist installs here.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// images: [N, rows*cols] f32 scaled to [0, 1]; labels: [N] i64.
Tensor read_idx_images(const std::string& path);
Tensor read_idx_labels(const std::string& path);

struct MnistSplit {
  Tensor images;  // [N, 784] f32
  Tensor labels;  // [N] i64
};
struct FashionMnist {
  MnistSplit train, test;
};
// Loads train and test splits from `dir`; a missing file names the path and the Debian package.
FashionMnist load_fashion_mnist(const std::string& dir = kFashionMnistDir);

// One split as a dataset: data() [N, 784] f32 in [0, 1], targets() [N] i64 (60,000 train or
// 10,000 test examples). Reads only that split's two files.
class FashionMNIST : public TensorDataset {
 public:
  explicit FashionMNIST(const std::string& dir = kFashionMnistDir, bool train = true);
};

}  // namespace fathom::data

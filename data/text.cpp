#include "fathom/data/text.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "fathom/core/ops/factory.h"

namespace fathom::data {

static std::vector<uint8_t> read_file(const std::string& path) {
  FATHOM_CHECK(std::filesystem::exists(path), "cannot open '", path, "': file not found",
               path == kDefaultCorpus ? " (it comes from the Debian package fortunes: "
                                        "apt-get install fortunes)"
                                      : "");
  std::ifstream f(path, std::ios::binary);
  FATHOM_CHECK(f, "cannot open '", path, "'");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

TextDataset::TextDataset(const std::string& path) : TextDataset(read_file(path), path) {}

TextDataset::TextDataset(std::vector<uint8_t> bytes, std::string name)
    : bytes_(std::move(bytes)), name_(std::move(name)) {}

std::pair<Tensor, Tensor> TextDataset::batch(int64_t B, int64_t T, Generator& gen) const {
  FATHOM_CHECK(B > 0 && T > 0, "TextDataset::batch: B and T must be positive, got ", B, ", ", T);
  FATHOM_CHECK(size() > T + 1, "TextDataset '", name_, "' has ", size(),
               " bytes, too few for windows of ", T + 1);
  Tensor x = empty({B, T}, DType::i64), y = empty({B, T}, DType::i64);
  int64_t *xp = x.data<int64_t>(), *yp = y.data<int64_t>();
  PhiloxState s = gen.reserve(uint64_t(B) * 4);
  uint64_t span = uint64_t(size() - T);
  for (int64_t b = 0; b < B; ++b) {
    Philox4 r = philox(s.seed, s.stream, s.offset + uint64_t(b));
    int64_t start = int64_t((uint64_t(r.v[0]) << 32 | r.v[1]) % span);
    for (int64_t t = 0; t < T; ++t) {
      xp[b * T + t] = bytes_[start + t];
      yp[b * T + t] = bytes_[start + t + 1];
    }
  }
  return {x, y};
}

double TextDataset::unigram_entropy() const {
  double counts[256] = {};
  for (uint8_t c : bytes_) counts[c] += 1;
  double h = 0, n = double(bytes_.size());
  for (double c : counts)
    if (c > 0) h -= c / n * std::log(c / n);
  return h;
}

}  // namespace fathom::data

#pragma once
// A byte-level text dataset: any file, tokens are its bytes (vocabulary 256). Batches are random
// windows of T+1 bytes drawn from a Philox generator, so the stream is reproducible and resumes
// exactly from the generator's state.
#include <string>
#include <utility>
#include <vector>

#include "fathom/core/random.h"
#include "fathom/core/tensor.h"

namespace fathom::data {

// From the Debian package fortunes (245 KB of quotations); any text file works.
inline constexpr const char* kDefaultCorpus = "/usr/share/games/fortunes/cookie";

class TextDataset {
 public:
  explicit TextDataset(const std::string& path);
  TextDataset(std::vector<uint8_t> bytes, std::string name);

  int64_t size() const { return int64_t(bytes_.size()); }
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  // x [B, T] and y [B, T] (y is x shifted by one), i64, from B windows chosen by gen.
  std::pair<Tensor, Tensor> batch(int64_t B, int64_t T, Generator& gen) const;
  // Entropy of the byte distribution, in nats: the loss a model that ignores context reaches.
  double unigram_entropy() const;

 private:
  std::vector<uint8_t> bytes_;
  std::string name_;
};

}  // namespace fathom::data

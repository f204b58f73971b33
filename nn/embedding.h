#pragma once
#include "fathom/core/random.h"
#include "fathom/nn/module.h"
#include "fathom/nn/options.h"

namespace fathom::nn {

struct EmbeddingOptions {
  EmbeddingOptions(int64_t num_embeddings, int64_t embedding_dim)
      : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {}
  FATHOM_ARG(int64_t, num_embeddings);
  FATHOM_ARG(int64_t, embedding_dim);
};

// A lookup table: ids (integer, any shape) -> [..., embedding_dim]. weight [V, C] ~ N(0, 1).
class Embedding : public Module {
 public:
  explicit Embedding(const EmbeddingOptions& options, Generator* gen = nullptr);
  Tensor forward(const Tensor& ids) override;
  void pretty_print(std::ostream& os) const override;

  EmbeddingOptions options;
  Tensor weight;
};

}  // namespace fathom::nn

#include "fathom/nn/embedding.h"

#include <ostream>

#include "fathom/autograd/ops.h"
#include "fathom/core/ops/factory.h"
#include "fathom/nn/init.h"

namespace fathom::nn {

Embedding::Embedding(const EmbeddingOptions& opts, Generator* gen)
    : Module("Embedding"), options(opts) {
  FATHOM_CHECK(opts.num_embeddings() > 0 && opts.embedding_dim() > 0,
               "Embedding: num_embeddings ", opts.num_embeddings(), " and embedding_dim ",
               opts.embedding_dim(), " must be positive");
  weight = register_parameter("weight", empty({opts.num_embeddings(), opts.embedding_dim()}));
  init::normal_(weight, 0.0, 1.0, gen);
}

Tensor Embedding::forward(const Tensor& ids) { return embedding(weight, ids); }

void Embedding::pretty_print(std::ostream& os) const {
  os << "Embedding(num_embeddings=" << options.num_embeddings()
     << ", embedding_dim=" << options.embedding_dim() << ")";
}

}  // namespace fathom::nn

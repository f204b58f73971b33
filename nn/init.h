#pragma once
// In-place initialisers for parameters. They write under NoGradGuard (an init is not part of
// any graph) and draw from gen, or the default generator, so a seed reproduces a model.
#include "fathom/core/random.h"
#include "fathom/core/tensor.h"

namespace fathom::nn::init {

void normal_(const Tensor& t, double mean, double std, Generator* gen = nullptr);
void uniform_(const Tensor& t, double low, double high, Generator* gen = nullptr);
void constant_(const Tensor& t, double value);
inline void zeros_(const Tensor& t) { constant_(t, 0.0); }
inline void ones_(const Tensor& t) { constant_(t, 1.0); }

}  // namespace fathom::nn::init

#pragma once
// The nn layer's public headers. A training step, with plain SGD written out:
//
//   auto model = std::make_shared<nn::GPT>(nn::GPTConfig{vocab, T, 4, 4, 128, 0.1}, &gen);
//   Tensor loss = model->forward(idx, targets);      // idx, targets [B, T] i64
//   model->zero_grad();
//   loss.backward();
//   {
//     NoGradGuard no_grad;
//     for (auto& [name, p] : model->named_parameters()) ops::add_(p, p.grad(), -lr);
//   }
#include "fathom/nn/activation.h"
#include "fathom/nn/batch_norm.h"
#include "fathom/nn/container.h"
#include "fathom/nn/conv.h"
#include "fathom/nn/dropout.h"
#include "fathom/nn/embedding.h"
#include "fathom/nn/functional.h"
#include "fathom/nn/gpt.h"
#include "fathom/nn/init.h"
#include "fathom/nn/layer_norm.h"
#include "fathom/nn/linear.h"
#include "fathom/nn/loss.h"
#include "fathom/nn/module.h"
#include "fathom/nn/pooling.h"
#include "fathom/nn/resnet.h"
#include "fathom/nn/sequential.h"

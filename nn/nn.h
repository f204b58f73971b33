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
#include "nn/activation.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/functional.h"
#include "nn/gpt.h"
#include "nn/init.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/sequential.h"

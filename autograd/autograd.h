#pragma once
// The autograd layer's public headers.
#include "autograd/engine.h"     // backward(), post-accumulate hooks, retain_grad
#include "autograd/grad_mode.h"  // NoGradGuard, EnableGradGuard
#include "autograd/gradcheck.h"  // gradcheck
#include "autograd/meta.h"       // Meta (a tensor's grad, grad_fn, hooks)
#include "autograd/node.h"       // Node, record(): custom differentiable ops
#include "autograd/ops.h"        // add, matmul, softmax, cross_entropy, ...

#pragma once
// The autograd layer's public headers.
#include "fathom/autograd/engine.h"     // backward(), post-accumulate hooks, retain_grad
#include "fathom/autograd/grad_mode.h"  // NoGradGuard, EnableGradGuard
#include "fathom/autograd/gradcheck.h"  // gradcheck
#include "fathom/autograd/meta.h"       // Meta (a tensor's grad, grad_fn, hooks)
#include "fathom/autograd/node.h"       // Node, record(): custom differentiable ops
#include "fathom/autograd/ops.h"        // add, matmul, softmax, cross_entropy, ...
#include "fathom/autograd/recompute.h"  // recompute(): activation recomputation

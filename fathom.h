#pragma once
// Fathom's umbrella header: everything a training script needs. Every header reachable from
// here through "fathom/..." includes is public and installed (cmake/FathomHeaders.cmake); a
// header that is not is internal to the library.
#include "fathom/core/device.h"
#include "fathom/core/dtype.h"
#include "fathom/core/error.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/matmul.h"
#include "fathom/core/ops/nn.h"
#include "fathom/core/ops/reduce.h"
#include "fathom/core/ops/shape.h"
#include "fathom/core/random.h"
#include "fathom/core/tensor.h"
#include "fathom/autograd/autograd.h"
#include "fathom/data/idx.h"
#include "fathom/data/loader.h"
#include "fathom/data/text.h"
#include "fathom/nn/nn.h"
#include "fathom/optim/clip.h"
#include "fathom/optim/grad_scaler.h"
#include "fathom/optim/optimizer.h"
#include "fathom/optim/schedule.h"
#include "fathom/comm/comm.h"
#include "fathom/parallel/ddp.h"
#if __has_include("fathom/checkpoint/safetensors.h")
#include "fathom/checkpoint/safetensors.h"
#endif

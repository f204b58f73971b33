#pragma once
// Fathom's umbrella header: everything a training script needs.
#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/matmul.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/random.h"
#include "core/tensor.h"

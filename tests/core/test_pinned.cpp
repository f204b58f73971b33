// allocate_pinned: host memory that is page-locked exactly when a CUDA device is there, usable
// as any host tensor's storage, counted in the memory ledger, and (on a GPU) the target of an
// exact device-to-host copy.
#include <cstring>

#include "fathom/core/memory.h"
#include "fathom/core/pinned.h"
#include "testing.h"

using namespace fathom;
using namespace fathom::testing;

namespace {

Tensor host_tensor_on(const std::shared_ptr<Storage>& s, const Shape& shape, DType dt) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = s;
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dt;
  return Tensor(impl);
}

}  // namespace

TEST_CASE("allocate_pinned: host memory, pinned exactly when a GPU is there, in the ledger",
          "[core]") {
  const int64_t before = memory::stats(DeviceType::CPU).total.current;
  {
    auto s = allocate_pinned(4096 + 7);
    REQUIRE(s->data() != nullptr);
    CHECK(s->device() == Device::cpu());
    CHECK(s->nbytes() == 4096 + 7);
    CHECK(is_pinned(s->data()) == cuda_available());
    CHECK(memory::stats(DeviceType::CPU).total.current == before + 4096 + 7);
    std::memset(s->data(), 0x5a, s->nbytes());  // writable, all of it
    Tensor t = host_tensor_on(s, {1024}, DType::f32);
    Tensor u = ops::binary(BinaryOp::add, t, t);  // an op reads it like any host tensor
    float first;
    std::memcpy(&first, u.data_ptr(), 4);
    float x;
    std::memset(&x, 0x5a, 4);
    CHECK(first == x + x);
  }
  CHECK(memory::stats(DeviceType::CPU).total.current == before);
  CHECK_FALSE(is_pinned(nullptr));
  auto empty_one = allocate_pinned(0);
  CHECK(empty_one->nbytes() == 0);
}

TEST_CASE("allocate_pinned: a device tensor copies into it exactly", "[cuda]") {
  if (!has_cuda()) return;
  Tensor g = ops::to(uniform({3, 1000}, -1, 1), Device::cuda(0));
  auto s = allocate_pinned(g.nbytes());
  REQUIRE(is_pinned(s->data()));
  Tensor h = host_tensor_on(s, g.shape(), g.dtype());
  ops::copy_(h, g);
  Tensor ref = ops::to(g, Device::cpu());
  CHECK(std::memcmp(h.data_ptr(), ref.data_ptr(), ref.nbytes()) == 0);
}

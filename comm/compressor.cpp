#include "fathom/comm/compressor.h"

#include "fathom/core/memory.h"
#include "fathom/core/ops/compress.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/snapshot.h"

namespace fathom::comm {

Sparse24Compressor::Sparse24Compressor(DType wire) : wire_(wire) {
  FATHOM_CHECK(wire == DType::f32 || wire == DType::bf16,
               "Sparse24Compressor: wire dtype must be f32 or bf16, got ", dtype_name(wire));
}

std::string Sparse24Compressor::name() const {
  return std::string("2:4 sparse, ") + dtype_name(wire_) + " wire";
}

WorkPtr Sparse24Compressor::start(ProcessGroup& pg, int key, const Tensor& grad) {
  memory::Scope ledger(memory::Category::communication);  // the residual and the wire payload
  Slot& s = slots_[key];
  if (!s.residual.defined() || s.residual.numel() != grad.numel() ||
      s.residual.device() != grad.device()) {
    s.residual = zeros(grad.shape(), {DType::f32, grad.device()});
  }
  if (!s.payload.defined() || s.payload.numel() * 2 != grad.numel() ||
      s.payload.device() != grad.device())
    s.payload = empty({grad.numel() / 2}, {wire_, grad.device()});
  await_snapshots();  // the residual may be in an async checkpoint's snapshot
  ops::sparse24_compress(grad, s.residual, s.payload, step_);
  // Every rank kept the same positions, so a plain average of the payloads is the average of
  // the kept values.
  return pg.allreduce(s.payload, ReduceOp::avg);
}

void Sparse24Compressor::finish(int key, const Tensor& grad) {
  auto it = slots_.find(key);
  FATHOM_CHECK(it != slots_.end(), "Sparse24Compressor::finish: key ", key, " was never started");
  ops::sparse24_decompress(it->second.payload, grad, step_);
}

Tensor Sparse24Compressor::residual(int key) const {
  auto it = slots_.find(key);
  return it == slots_.end() ? Tensor() : it->second.residual;
}

void Sparse24Compressor::set_residual(int key, Tensor r) {
  FATHOM_CHECK(!r.defined() || (r.dtype() == DType::f32 && r.is_contiguous() && r.dim() == 1),
               "Sparse24Compressor::set_residual: expected a flat contiguous f32 tensor, got ", r.desc());
  slots_[key].residual = std::move(r);
}

std::shared_ptr<Compressor> make_compressor(const std::string& spec) {
  if (spec == "none" || spec.empty()) return nullptr;
  if (spec == "24") return std::make_shared<Sparse24Compressor>(DType::f32);
  if (spec == "24-bf16") return std::make_shared<Sparse24Compressor>(DType::bf16);
  detail::fail("unknown compression '", spec, "': expected none, 24 or 24-bf16");
}

}  // namespace fathom::comm

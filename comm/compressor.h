#pragma once
// Gradient compression for DeepComm: a Compressor averages a flat f32 gradient across a group
// in two halves, start() (transform and launch the collective) and finish() (wait and write the
// average back), so a caller can overlap other work in between. State (error-feedback
// residuals) is kept per key, one key per gradient bucket.
#include <map>
#include <memory>
#include <string>

#include "fathom/comm/process_group.h"

namespace fathom::comm {

class Compressor {
 public:
  virtual ~Compressor() = default;
  virtual std::string name() const = 0;
  // grad: flat contiguous f32 on the group's device, numel a multiple of 4.
  virtual WorkPtr start(ProcessGroup& pg, int key, const Tensor& grad) = 0;
  // After the Work completed: grad <- the group's average, as this compressor delivers it.
  virtual void finish(int key, const Tensor& grad) = 0;
  // Advances to the next step (all keys of one step share a step number).
  virtual void next_step() = 0;
  // The step number, which picks the mask (the same on every rank); set_step resumes it, so a
  // restarted run sends the same positions an uninterrupted one would.
  virtual uint64_t step() const = 0;
  virtual void set_step(uint64_t step) = 0;
  // Error-feedback residual of a key (undefined when none), so a caller that re-buckets or
  // checkpoints can move it; set_residual replaces it. Together with step() this is all the
  // state a compressor carries from one step to the next.
  virtual Tensor residual(int key) const = 0;
  virtual void set_residual(int key, Tensor r) = 0;
};

// 2:4 sparsity with error feedback and a rotating mask (core/ops/compress.h): half the values
// of every group of 4 are sent, the rest wait in the residual. wire = f32 sends half the bytes of
// a plain all-reduce, wire = bf16 a quarter; the mask costs no bytes.
class Sparse24Compressor : public Compressor {
 public:
  explicit Sparse24Compressor(DType wire = DType::f32);
  std::string name() const override;
  WorkPtr start(ProcessGroup& pg, int key, const Tensor& grad) override;
  void finish(int key, const Tensor& grad) override;
  void next_step() override { ++step_; }
  uint64_t step() const override { return step_; }
  void set_step(uint64_t step) override { step_ = step; }
  Tensor residual(int key) const override;
  void set_residual(int key, Tensor r) override;

 private:
  struct Slot {
    Tensor residual, payload;
  };
  DType wire_;
  uint64_t step_ = 0;
  std::map<int, Slot> slots_;
};

std::shared_ptr<Compressor> make_compressor(const std::string& spec);  // "none", "24", "24-bf16"

}  // namespace fathom::comm

#include "fathom/core/ops/optim.h"

#include "fathom/core/backend.h"

namespace fathom::ops {

static void check_slots(const char* op, const std::vector<ParamSlot>& slots, bool need_avg,
                        bool need_sq) {
  for (size_t i = 0; i < slots.size(); ++i) {
    const ParamSlot& s = slots[i];
    FATHOM_CHECK(s.param.defined() && s.grad.defined(), op, ": slot ", i, " lacks param or grad");
    const Shape& shape = s.param.shape();
    Device dev = s.param.device();
    auto check = [&](const Tensor& t, const char* what, bool f32) {
      FATHOM_CHECK(t.shape() == shape && t.device() == dev && t.is_contiguous() &&
                       is_floating(t.dtype()) && (!f32 || t.dtype() == DType::f32),
                   op, ": ", what, " ", t.desc(), " does not fit param ", s.param.desc(),
                   f32 ? " (state must be contiguous f32)" : " (must be contiguous, same shape)");
    };
    check(s.param, "param", false);
    check(s.grad, "grad", false);
    if (s.master.defined()) check(s.master, "master", true);
    FATHOM_CHECK(!need_avg || s.exp_avg.defined(), op, ": slot ", i, " lacks exp_avg");
    FATHOM_CHECK(!need_sq || s.exp_avg_sq.defined(), op, ": slot ", i, " lacks exp_avg_sq");
    if (s.exp_avg.defined()) check(s.exp_avg, "exp_avg", true);
    if (s.exp_avg_sq.defined()) check(s.exp_avg_sq, "exp_avg_sq", true);
  }
  for (size_t i = 1; i < slots.size(); ++i)
    FATHOM_CHECK(slots[i].param.device() == slots[0].param.device(), op,
                 ": parameters on different devices: ", slots[0].param.desc(), " and ",
                 slots[i].param.desc());
}

void adam_step(const std::vector<ParamSlot>& slots, const AdamHyper& h) {
  if (slots.empty()) return;
  check_slots("adam_step", slots, true, true);
  FATHOM_CHECK(h.step >= 1, "adam_step: step must be >= 1, got ", h.step);
  FATHOM_DISPATCH(slots[0].param.device(), adam_step, slots, h);
}

void sgd_step(const std::vector<ParamSlot>& slots, const SgdHyper& h) {
  if (slots.empty()) return;
  check_slots("sgd_step", slots, h.momentum != 0, false);
  FATHOM_DISPATCH(slots[0].param.device(), sgd_step, slots, h);
}

}  // namespace fathom::ops

// Fused optimizer steps on the CPU: one vectorizable loop per parameter, split across threads.
#include <cmath>

#include "core/backend.h"
#include "core/cpu/loops.h"

namespace fathom::cpu {

// Runs body(i, w) for each element, where w is the f32 (or f64) working weight: the master copy
// when there is one, else the parameter widened. The result is stored back (rounded into the
// half-precision parameter when there is a master).
template <class P, class G, class Body>
static void for_param(const ParamSlot& s, Body body) {
  P* p = static_cast<P*>(s.param.data_ptr());
  const G* g = static_cast<const G*>(s.grad.data_ptr());
  float* master = s.master.defined() ? s.master.data<float>() : nullptr;
  using A = std::conditional_t<std::is_same_v<P, double>, double, float>;
  // Two loops rather than a branch per element, so each one vectorizes.
  parallel_for(s.param.numel(), kParallelGrain, [&](int64_t b, int64_t e) {
    if (master) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) {
        A w = body(i, A(master[i]), A(acc_t<G>(g[i])));
        master[i] = float(w);
        p[i] = P(w);
      }
    } else {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) p[i] = P(body(i, A(acc_t<P>(p[i])), A(acc_t<G>(g[i]))));
    }
  });
}

template <class Body>
static void dispatch_slot(const ParamSlot& s, const char* op, Body&& body) {
  dispatch_float(s.param.dtype(), op, [&]<class P>() {
    dispatch_float(s.grad.dtype(), op, [&]<class G>() { for_param<P, G>(s, body); });
  });
}

void adam_step(const std::vector<ParamSlot>& slots, const AdamHyper& h) {
  const float b1 = float(h.beta1), b2 = float(h.beta2), lr = float(h.lr), eps = float(h.eps);
  const float wd = float(h.weight_decay), gs = float(h.grad_scale);
  const float bc1 = float(1 - std::pow(h.beta1, double(h.step)));
  const float bc2_sqrt = float(std::sqrt(1 - std::pow(h.beta2, double(h.step))));
  const float step_size = lr / bc1;
  const float decay = h.decoupled ? 1 - lr * wd : 1.0f, l2 = h.decoupled ? 0.0f : wd;
  for (const ParamSlot& s : slots) {
    float* m = s.exp_avg.data<float>();
    float* v = s.exp_avg_sq.data<float>();
    dispatch_slot(s, "adam_step", [&](int64_t i, auto w, auto g) {
      using A = decltype(w);
      g = g * A(gs) + A(l2) * w;  // Adam: L2 in the gradient
      w *= A(decay);              // AdamW: decoupled decay
      float mi = b1 * m[i] + (1 - b1) * float(g);
      float vi = b2 * v[i] + (1 - b2) * float(g) * float(g);
      m[i] = mi;
      v[i] = vi;
      // PyTorch's form: denom = sqrt(v)/sqrt(bc2) + eps; w -= (lr/bc1) * m / denom.
      return A(w - A(step_size) * A(mi) / (A(std::sqrt(vi)) / A(bc2_sqrt) + A(eps)));
    });
  }
}

void sgd_step(const std::vector<ParamSlot>& slots, const SgdHyper& h) {
  const float lr = float(h.lr), mom = float(h.momentum), damp = float(h.dampening);
  const float wd = float(h.weight_decay), gs = float(h.grad_scale);
  for (const ParamSlot& s : slots) {
    float* buf = s.exp_avg.defined() ? s.exp_avg.data<float>() : nullptr;
    dispatch_slot(s, "sgd_step", [&](int64_t i, auto w, auto g) {
      using A = decltype(w);
      g = g * A(gs) + A(wd) * w;
      if (buf) {
        float b = h.first_step ? float(g) : mom * buf[i] + (1 - damp) * float(g);
        buf[i] = b;
        g = h.nesterov ? A(g + A(mom) * A(b)) : A(b);
      }
      return A(w - A(lr) * g);
    });
  }
}

}  // namespace fathom::cpu

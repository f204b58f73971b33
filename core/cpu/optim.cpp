// Fused optimizer steps on the CPU: one vectorizable loop per parameter, split across threads.
// Each loop takes restrict pointers and its constants by value, so the compiler keeps them in
// registers and vectorizes (sqrt and division included: the build uses -fno-math-errno).
#include <cmath>

#include "fathom/core/backend.h"
#include "fathom/core/cpu/loops.h"

namespace fathom::cpu {

// A parameter's pointers for one step: w is the f32 working weight (the master copy when there is
// one, else the parameter itself, widened), rounded back into p when there is a master.
template <class P, class G>
struct SlotPtrs {
  P* __restrict p;
  const G* __restrict g;
  float* __restrict master;
  float* __restrict s1;  // exp_avg / momentum buffer
  float* __restrict s2;  // exp_avg_sq
};

// Runs update(w, g, i) -> new w over every element, split across threads; two loops rather than
// a branch per element, so each one vectorizes.
template <class P, class G, class Update>
static void for_param(const ParamSlot& s, const Update& update) {
  SlotPtrs<P, G> q{ptr<P>(s.param), ptr<G>(s.grad), s.master.defined() ? ptr<float>(s.master) : nullptr,
                   s.exp_avg.defined() ? ptr<float>(s.exp_avg) : nullptr,
                   s.exp_avg_sq.defined() ? ptr<float>(s.exp_avg_sq) : nullptr};
  using A = std::conditional_t<std::is_same_v<P, double>, double, float>;
  parallel_for(s.param.numel(), kParallelGrain, [&, q](int64_t b, int64_t e) {
    if (q.master) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) {
        A w = update(A(q.master[i]), A(acc_t<G>(q.g[i])), q, i);
        q.master[i] = float(w);
        q.p[i] = P(w);
      }
    } else {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) q.p[i] = P(update(A(acc_t<P>(q.p[i])), A(acc_t<G>(q.g[i])), q, i));
    }
  });
}

template <class Update>
static void dispatch_slot(const ParamSlot& s, const char* op, const Update& update) {
  dispatch_float(s.param.dtype(), op, [&]<class P>() {
    dispatch_float(s.grad.dtype(), op, [&]<class G>() { for_param<P, G>(s, update); });
  });
}

void adam_step(const std::vector<ParamSlot>& slots, const AdamHyper& h) {
  const float b1 = float(h.beta1), b2 = float(h.beta2), lr = float(h.lr), eps = float(h.eps);
  const float wd = float(h.weight_decay), gs = float(h.grad_scale);
  const float bc1 = float(1 - std::pow(h.beta1, double(h.step)));
  const float bc2_sqrt = float(std::sqrt(1 - std::pow(h.beta2, double(h.step))));
  const float step_size = lr / bc1;
  const float decay = h.decoupled ? 1 - lr * wd : 1.0f, l2 = h.decoupled ? 0.0f : wd;
  for (const ParamSlot& s : slots)
    dispatch_slot(s, "adam_step", [=](auto w, auto g, const auto& q, int64_t i) FATHOM_INLINE {
      using A = decltype(w);
      g = g * A(gs) + A(l2) * w;  // Adam: L2 in the gradient
      w *= A(decay);              // AdamW: decoupled decay
      float m = b1 * q.s1[i] + (1 - b1) * float(g);
      float v = b2 * q.s2[i] + (1 - b2) * float(g) * float(g);
      q.s1[i] = m;
      q.s2[i] = v;
      // PyTorch's form: denom = sqrt(v)/sqrt(bc2) + eps; w -= (lr/bc1) * m / denom.
      return A(w - A(step_size) * A(m) / (A(std::sqrt(v)) / A(bc2_sqrt) + A(eps)));
    });
}

void sgd_step(const std::vector<ParamSlot>& slots, const SgdHyper& h) {
  const float lr = float(h.lr), mom = float(h.momentum), damp = float(h.dampening);
  const float wd = float(h.weight_decay), gs = float(h.grad_scale);
  const bool first = h.first_step, nesterov = h.nesterov;
  for (const ParamSlot& s : slots) {
    auto plain = [=](auto w, auto g, const auto&, int64_t) FATHOM_INLINE {
      using A = decltype(w);
      return A(w - A(lr) * (g * A(gs) + A(wd) * w));
    };
    auto momentum = [=](auto w, auto g, const auto& q, int64_t i) FATHOM_INLINE {
      using A = decltype(w);
      g = g * A(gs) + A(wd) * w;
      float b = first ? float(g) : mom * q.s1[i] + (1 - damp) * float(g);
      q.s1[i] = b;
      g = nesterov ? A(g + A(mom) * A(b)) : A(b);
      return A(w - A(lr) * g);
    };
    if (s.exp_avg.defined()) dispatch_slot(s, "sgd_step", momentum);
    else dispatch_slot(s, "sgd_step", plain);
  }
}

}  // namespace fathom::cpu

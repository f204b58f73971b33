// CUDA fused optimizer steps (core/ops/optim.h): AdamW/Adam and SGD with momentum, one pass over
// every element reading the gradient once and writing the parameter (and its f32 master copy)
// once. Multi-tensor: parameters of one (param dtype, grad dtype) pair are packed into launches
// of up to kMaxTensors tensors, each block taking a kChunk-element chunk of one tensor, so a
// model with hundreds of parameters costs a handful of launches instead of hundreds (as apex's
// multi_tensor_apply). The per-element arithmetic is core/cpu/optim.cpp's, in the same order;
// nvcc may fuse a multiply and an add into an FMA, so results agree with the CPU to ~1 ulp.
#include <cmath>
#include <map>
#include <utility>

#include "fathom/core/cuda/common.cuh"

namespace fathom::cuda {

namespace {

constexpr int kMaxTensors = 24;
constexpr int kMaxBlocks = 320;
constexpr int64_t kChunk = 16384;
constexpr int kThreads = 256;

// Kernel argument (under 4 KB): the tensors of one launch and which chunk each block takes.
struct TensorList {
  void* param[kMaxTensors];
  const void* grad[kMaxTensors];
  float* master[kMaxTensors];
  float* s1[kMaxTensors];  // exp_avg / momentum buffer (or null)
  float* s2[kMaxTensors];  // exp_avg_sq (or null)
  int64_t n[kMaxTensors];
  uint8_t block_tensor[kMaxBlocks];
  int32_t block_chunk[kMaxBlocks];
};
static_assert(sizeof(TensorList) + 128 < 4096, "TensorList must fit the kernel parameter space");

struct AdamConsts {
  float b1, b2, lr, eps, wd, gs, bc2_sqrt, step_size, decay, one_minus_b1, one_minus_b2;
  bool decoupled;
};

struct SgdConsts {
  float lr, mom, damp, wd, gs, one_minus_damp;
  bool nesterov, first_step;
};

// Working precision of the update: f64 for an f64 parameter, f32 otherwise.
template <class P>
using work_t = std::conditional_t<std::is_same_v<P, double>, double, float>;

template <class P, class G>
__global__ void __launch_bounds__(kThreads) adam_kernel(TensorList tl, AdamConsts c) {
  using A = work_t<P>;
  int t = tl.block_tensor[blockIdx.x];
  int64_t start = int64_t(tl.block_chunk[blockIdx.x]) * kChunk;
  int64_t end = start + kChunk < tl.n[t] ? start + kChunk : tl.n[t];
  P* p = static_cast<P*>(tl.param[t]);
  const G* gp = static_cast<const G*>(tl.grad[t]);
  float* master = tl.master[t];
  float* m = tl.s1[t];
  float* v = tl.s2[t];
  for (int64_t i = start + threadIdx.x; i < end; i += kThreads) {
    A w = master ? A(master[i]) : A(to_c(p[i]));
    A g = A(to_c(gp[i]));
    g *= A(c.gs);
    if (c.decoupled) w *= A(c.decay);
    else g += A(c.wd) * w;
    float mi = c.b1 * m[i] + c.one_minus_b1 * float(g);
    float vi = c.b2 * v[i] + c.one_minus_b2 * float(g) * float(g);
    m[i] = mi;
    v[i] = vi;
    // PyTorch's form: denom = sqrt(v)/sqrt(bc2) + eps; w -= (lr/bc1) * m / denom.
    w = A(w - A(c.step_size) * A(mi) / (A(sqrtf(vi)) / A(c.bc2_sqrt) + A(c.eps)));
    if (master) master[i] = float(w);
    p[i] = cvt<P>(w);
  }
}

template <class P, class G>
__global__ void __launch_bounds__(kThreads) sgd_kernel(TensorList tl, SgdConsts c) {
  using A = work_t<P>;
  int t = tl.block_tensor[blockIdx.x];
  int64_t start = int64_t(tl.block_chunk[blockIdx.x]) * kChunk;
  int64_t end = start + kChunk < tl.n[t] ? start + kChunk : tl.n[t];
  P* p = static_cast<P*>(tl.param[t]);
  const G* gp = static_cast<const G*>(tl.grad[t]);
  float* master = tl.master[t];
  float* buf = tl.s1[t];
  for (int64_t i = start + threadIdx.x; i < end; i += kThreads) {
    A w = master ? A(master[i]) : A(to_c(p[i]));
    A g = A(to_c(gp[i]));
    g = g * A(c.gs) + A(c.wd) * w;
    if (buf) {
      float b = c.first_step ? float(g) : c.mom * buf[i] + c.one_minus_damp * float(g);
      buf[i] = b;
      g = c.nesterov ? A(g + A(c.mom) * A(b)) : A(b);
    }
    w = A(w - A(c.lr) * g);
    if (master) master[i] = float(w);
    p[i] = cvt<P>(w);
  }
}

template <class T>
T* ptr_if(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

// Packs the slots into TensorLists and calls launch(list, blocks) for each full list.
template <class Launcher>
void for_each_list(const std::vector<const ParamSlot*>& slots, Launcher&& launch) {
  TensorList tl{};
  int nt = 0, nb = 0;
  for (const ParamSlot* s : slots) {
    int64_t n = s->param.numel();
    if (n == 0) continue;
    int64_t chunks = ceil_div(n, kChunk);
    FATHOM_CHECK(chunks < INT32_MAX, "optimizer step: parameter ", s->param.desc(), " is too large");
    if (nt == kMaxTensors) {
      launch(tl, nb);
      tl = TensorList{};
      nt = nb = 0;
    }
    tl.param[nt] = s->param.data_ptr();
    tl.grad[nt] = s->grad.data_ptr();
    tl.master[nt] = ptr_if<float>(s->master);
    tl.s1[nt] = ptr_if<float>(s->exp_avg);
    tl.s2[nt] = ptr_if<float>(s->exp_avg_sq);
    tl.n[nt] = n;
    for (int64_t c = 0; c < chunks; ++c) {
      if (nb == kMaxBlocks) {
        // The list is full of blocks: launch it and carry the current tensor over.
        launch(tl, nb);
        TensorList next{};
        next.param[0] = tl.param[nt];
        next.grad[0] = tl.grad[nt];
        next.master[0] = tl.master[nt];
        next.s1[0] = tl.s1[nt];
        next.s2[0] = tl.s2[nt];
        next.n[0] = tl.n[nt];
        tl = next;
        nt = 0;
        nb = 0;
      }
      tl.block_tensor[nb] = uint8_t(nt);
      tl.block_chunk[nb] = int32_t(c);
      ++nb;
    }
    ++nt;
  }
  if (nb > 0) launch(tl, nb);
}

// Groups slots by (param dtype, grad dtype) and calls run.template operator()<P, G>(group).
template <class Run>
void by_dtypes(const char* op, const std::vector<ParamSlot>& slots, Run&& run) {
  std::map<std::pair<int, int>, std::vector<const ParamSlot*>> groups;
  for (const ParamSlot& s : slots)
    groups[{int(s.param.dtype()), int(s.grad.dtype())}].push_back(&s);
  for (auto& [key, group] : groups) {
    dispatch_float(DType(key.first), op, [&]<class P>() {
      dispatch_float(DType(key.second), op, [&]<class G>() { run.template operator()<P, G>(group); });
    });
  }
}

}  // namespace

void adam_step(const std::vector<ParamSlot>& slots, const AdamHyper& h) {
  if (slots.empty()) return;
  Launch L(slots[0].param);
  AdamConsts c;
  c.b1 = float(h.beta1);
  c.b2 = float(h.beta2);
  c.lr = float(h.lr);
  c.eps = float(h.eps);
  c.wd = float(h.weight_decay);
  c.gs = float(h.grad_scale);
  // Formed on the host exactly as the CPU forms them (f32 arithmetic where it uses f32).
  float bc1 = float(1 - std::pow(h.beta1, double(h.step)));
  c.bc2_sqrt = float(std::sqrt(1 - std::pow(h.beta2, double(h.step))));
  c.step_size = c.lr / bc1;
  c.decay = 1 - c.lr * c.wd;
  c.one_minus_b1 = 1 - c.b1;
  c.one_minus_b2 = 1 - c.b2;
  c.decoupled = h.decoupled;
  for (const ParamSlot& s : slots)
    FATHOM_CHECK(s.exp_avg.defined() && s.exp_avg_sq.defined(), "adam_step: param ",
                 s.param.desc(), " lacks exp_avg or exp_avg_sq");
  by_dtypes("adam_step", slots, [&]<class P, class G>(const std::vector<const ParamSlot*>& group) {
    for_each_list(group, [&](const TensorList& tl, int blocks) {
      adam_kernel<P, G><<<unsigned(blocks), kThreads, 0, L.stream>>>(tl, c);
      FATHOM_CUDA_CHECK_LAUNCH();
    });
  });
}

void sgd_step(const std::vector<ParamSlot>& slots, const SgdHyper& h) {
  if (slots.empty()) return;
  Launch L(slots[0].param);
  SgdConsts c;
  c.lr = float(h.lr);
  c.mom = float(h.momentum);
  c.damp = float(h.dampening);
  c.wd = float(h.weight_decay);
  c.gs = float(h.grad_scale);
  c.one_minus_damp = 1 - c.damp;
  c.nesterov = h.nesterov;
  c.first_step = h.first_step;
  by_dtypes("sgd_step", slots, [&]<class P, class G>(const std::vector<const ParamSlot*>& group) {
    for_each_list(group, [&](const TensorList& tl, int blocks) {
      sgd_kernel<P, G><<<unsigned(blocks), kThreads, 0, L.stream>>>(tl, c);
      FATHOM_CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace fathom::cuda

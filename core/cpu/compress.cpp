// 2:4 compression with error feedback on the CPU (see core/ops/compress.h).
#include "fathom/core/backend.h"
#include "fathom/core/cpu/loops.h"

namespace fathom::cpu {

template <class P>
static void compress(const float* g, float* r, P* out, int64_t groups, uint64_t step) {
  parallel_for(groups, kParallelGrain / 4, [&](int64_t b, int64_t e) {
    for (int64_t grp = b; grp < e; ++grp) {
      const uint8_t* keep = kSparse24Pairs[(step + uint64_t(grp)) % 6];
      float v[4];
      for (int j = 0; j < 4; ++j) v[j] = g[4 * grp + j] + r[4 * grp + j];
      for (int j = 0; j < 2; ++j) {
        P sent = P(v[keep[j]]);
        out[2 * grp + j] = sent;
        v[keep[j]] -= float(sent);  // what rounding to the wire format lost stays behind too
      }
      for (int j = 0; j < 4; ++j) r[4 * grp + j] = v[j];
    }
  });
}

void sparse24_compress(const Tensor& grad, const Tensor& residual, const Tensor& payload,
                       uint64_t step) {
  const float* g = grad.data<float>();
  float* r = residual.data<float>();
  int64_t groups = grad.numel() / 4;
  if (payload.dtype() == DType::bf16) compress(g, r, payload.data<bf16>(), groups, step);
  else compress(g, r, payload.data<float>(), groups, step);
}

template <class P>
static void decompress(const P* in, float* g, int64_t groups, uint64_t step) {
  parallel_for(groups, kParallelGrain / 4, [&](int64_t b, int64_t e) {
    for (int64_t grp = b; grp < e; ++grp) {
      const uint8_t* keep = kSparse24Pairs[(step + uint64_t(grp)) % 6];
      float v[4] = {0, 0, 0, 0};
      v[keep[0]] = float(in[2 * grp]);
      v[keep[1]] = float(in[2 * grp + 1]);
      for (int j = 0; j < 4; ++j) g[4 * grp + j] = v[j];
    }
  });
}

void sparse24_decompress(const Tensor& payload, const Tensor& grad, uint64_t step) {
  float* g = grad.data<float>();
  int64_t groups = grad.numel() / 4;
  if (payload.dtype() == DType::bf16) decompress(payload.data<bf16>(), g, groups, step);
  else decompress(payload.data<float>(), g, groups, step);
}

}  // namespace fathom::cpu

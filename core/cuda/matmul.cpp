// CUDA matmul through cuBLASLt: out [B, M, N] = a [B, M, K] @ b [B, K, N].
//
// cuBLAS is column-major, our tensors row-major. A row-major [M, N] matrix is the same memory as
// a column-major [N, M] one, so we compute out^T = b^T a^T: cuBLAS's "A" is our b and its "B"
// our a, m = N, n = M. An operand stored row-major (unit stride along its columns) is then read
// untransposed with ld = its row stride; one stored column-major is read transposed with ld =
// its column stride (the same rule as core/cpu/matmul.cpp). Batches are strided (a batch stride
// of 0 broadcasts one matrix).
//
// Precision: bf16/f16 inputs accumulate in f32 (CUBLAS_COMPUTE_32F), f32 uses no TF32 unless
// set_allow_tf32(true), f64 goes through classic cuBLAS's DGEMM (Lt's f64 coverage is narrower).
// A descriptor set and the heuristic's algorithm are cached per shape/layout/alignment, so a
// training step pays for cublasLtMatmulAlgoGetHeuristic once per distinct GEMM.
#include <algorithm>
#include <array>
#include <climits>
#include <map>
#include <memory>
#include <mutex>

#include "fathom/core/backend.h"
#include "fathom/core/cuda/runtime.h"

namespace fathom::cuda {

namespace {

struct Operand {
  bool trans;  // in cuBLAS terms: read the stored column-major matrix transposed
  int64_t ld;
  uint64_t rows, cols;  // of the stored column-major matrix
};

// Our operand is a row-major view [rows, cols] with strides (srow, scol).
Operand operand(int64_t rows, int64_t cols, int64_t srow, int64_t scol) {
  if ((scol == 1 || cols == 1) && (srow >= std::max<int64_t>(cols, 1) || rows == 1)) {
    // Row-major: column-major [cols, rows] with ld = row stride, no transpose.
    return {false, std::max<int64_t>({srow, cols, 1}), uint64_t(cols), uint64_t(rows)};
  }
  // Column-major: stored [rows, cols] with ld = column stride, read transposed.
  return {true, std::max<int64_t>({scol, rows, 1}), uint64_t(rows), uint64_t(cols)};
}

// Largest power of two (up to 256) dividing the address of every matrix of a strided batch:
// cuBLASLt's heuristic must not pick a kernel that needs more alignment than we have.
uint32_t alignment(const void* p, int64_t batch_stride_bytes, int64_t batch) {
  uint64_t bits = reinterpret_cast<uintptr_t>(p) | 256u;
  if (batch > 1) bits |= uint64_t(batch_stride_bytes) | 256u;
  return uint32_t(bits & (~bits + 1));
}

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

using Key = std::array<int64_t, 20>;

std::mutex g_plans_mu;
// Never destroyed (descriptors would outlive the library at exit otherwise).
std::map<Key, std::shared_ptr<Plan>>& plans() {
  static auto* m = new std::map<Key, std::shared_ptr<Plan>>();
  return *m;
}
constexpr size_t kMaxPlans = 4096;

cudaDataType_t data_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    case DType::f64: return CUDA_R_64F;
    default: fathom::detail::fail("matmul: unsupported dtype ", dtype_name(t));
  }
}

struct Gemm {
  DType dtype;
  Operand A, B;  // cuBLAS's A (our b) and B (our a)
  int64_t m, n, k, batch, stride_a, stride_b, stride_c;
  const void *pa, *pb;
  void* pc;
};

std::shared_ptr<Plan> make_plan(const Gemm& g, int device, bool tf32, uint32_t al_a, uint32_t al_b,
                                uint32_t al_c, size_t ws_bytes) {
  auto p = std::make_shared<Plan>();
  cudaDataType_t dt = data_type(g.dtype);
  cublasComputeType_t ct = g.dtype == DType::f32 && tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                         : CUBLAS_COMPUTE_32F;
  FATHOM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, ct, CUDA_R_32F));
  cublasOperation_t ta = g.A.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t tb = g.B.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  FATHOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  FATHOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  auto layout = [&](cublasLtMatrixLayout_t* l, uint64_t rows, uint64_t cols, int64_t ld,
                    int64_t stride) {
    FATHOM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(l, dt, rows, cols, ld));
    if (g.batch > 1) {
      int32_t count = int32_t(g.batch);
      FATHOM_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                           &count, sizeof(count)));
      FATHOM_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
          *l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
    }
  };
  layout(&p->la, g.A.rows, g.A.cols, g.A.ld, g.stride_a);
  layout(&p->lb, g.B.rows, g.B.cols, g.B.ld, g.stride_b);
  layout(&p->lc, uint64_t(g.m), uint64_t(g.n), g.m, g.stride_c);

  cublasLtMatmulPreference_t pref = nullptr;
  FATHOM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  uint64_t ws = ws_bytes;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof(al_c));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(lt_handle(device), p->op, p->la, p->lb, p->lc, p->lc,
                                        pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  // No algorithm (an unusual ld or alignment) is not an error: classic cuBLAS takes it.
  p->has_algo = st == CUBLAS_STATUS_SUCCESS && found > 0;
  if (p->has_algo) p->algo = result.algo;
  return p;
}

// Classic cuBLAS: f64, and whatever Lt has no algorithm for.
void classic_gemm(const Gemm& g, int device, cudaStream_t stream) {
  FATHOM_CHECK(g.m <= INT_MAX && g.n <= INT_MAX && g.k <= INT_MAX && g.A.ld <= INT_MAX &&
                   g.B.ld <= INT_MAX && g.batch <= INT_MAX,
               "matmul: [", g.batch, ", ", g.n, ", ", g.k, "] @ [", g.k, ", ", g.m,
               "] is too large for cuBLAS");
  cublasHandle_t h = blas_handle(device);
  FATHOM_CUBLAS_CHECK(cublasSetStream(h, stream));
  cublasOperation_t ta = g.A.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t tb = g.B.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (g.dtype == DType::f64) {
    double one = 1, zero = 0;
    FATHOM_CUBLAS_CHECK(cublasDgemmStridedBatched(
        h, ta, tb, int(g.m), int(g.n), int(g.k), &one, static_cast<const double*>(g.pa),
        int(g.A.ld), g.stride_a, static_cast<const double*>(g.pb), int(g.B.ld), g.stride_b, &zero,
        static_cast<double*>(g.pc), int(g.m), g.stride_c, int(g.batch)));
    return;
  }
  float one = 1, zero = 0;
  cudaDataType_t dt = data_type(g.dtype);
  cublasComputeType_t ct = g.dtype == DType::f32 && allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                 : CUBLAS_COMPUTE_32F;
  FATHOM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      h, ta, tb, int(g.m), int(g.n), int(g.k), &one, g.pa, dt, int(g.A.ld), g.stride_a, g.pb, dt,
      int(g.B.ld), g.stride_b, &zero, g.pc, dt, int(g.m), g.stride_c, int(g.batch), ct,
      CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void matmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  FATHOM_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3 && a.dtype() == b.dtype() &&
                   out.dtype() == a.dtype() && is_floating(a.dtype()) &&
                   a.device() == out.device() && b.device() == out.device(),
               "matmul: a ", a.desc(), ", b ", b.desc(), ", out ", out.desc(),
               ": expected [B, M, K] @ [B, K, N] -> [B, M, N] in one float dtype on one device");
  int64_t B = out.size(0), M = out.size(1), N = out.size(2), K = a.size(2);
  FATHOM_CHECK(a.size(0) == B && a.size(1) == M && b.size(0) == B && b.size(1) == K &&
                   b.size(2) == N && out.is_contiguous(),
               "matmul: a ", a.desc(), ", b ", b.desc(), ", out ", out.desc(),
               ": shapes do not chain (or out is not contiguous)");
  if (out.numel() == 0) return;
  if (K == 0) return fill(out, 0.0);
  int dev = out.device().index;
  cudaStream_t stream = current_stream(dev);
  DeviceGuard guard(dev);

  Gemm g;
  g.dtype = a.dtype();
  g.A = operand(K, N, b.stride(1), b.stride(2));
  g.B = operand(M, K, a.stride(1), a.stride(2));
  g.m = N;
  g.n = M;
  g.k = K;
  g.batch = B;
  g.stride_a = B > 1 ? b.stride(0) : 0;
  g.stride_b = B > 1 ? a.stride(0) : 0;
  g.stride_c = M * N;
  g.pa = b.data_ptr();
  g.pb = a.data_ptr();
  g.pc = out.data_ptr();
  FATHOM_CHECK(B <= INT32_MAX, "matmul: batch of ", B, " matrices is too large for cuBLAS");

  if (g.dtype == DType::f64) return classic_gemm(g, dev, stream);

  size_t ws_bytes = 0;
  void* ws = blas_workspace(dev, &ws_bytes);
  int64_t es = int64_t(itemsize(g.dtype));
  uint32_t al_a = alignment(g.pa, g.stride_a * es, B), al_b = alignment(g.pb, g.stride_b * es, B),
           al_c = alignment(g.pc, g.stride_c * es, B);
  bool tf32 = allow_tf32();
  Key key{dev,        int64_t(g.dtype), g.A.trans, g.B.trans, g.m,        g.n,   g.k,
          g.A.ld,     g.B.ld,           g.batch,   g.stride_a, g.stride_b, al_a,  al_b,
          al_c,       tf32,             int64_t(g.A.rows), int64_t(g.B.rows), 0, 0};
  std::shared_ptr<Plan> plan;
  {
    std::lock_guard<std::mutex> lock(g_plans_mu);
    auto it = plans().find(key);
    if (it != plans().end()) plan = it->second;
  }
  if (!plan) {
    plan = make_plan(g, dev, tf32, al_a, al_b, al_c, ws_bytes);
    std::lock_guard<std::mutex> lock(g_plans_mu);
    // Many distinct shapes (a sweep over sequence lengths): start over rather than grow
    // without bound. Plans in use elsewhere stay alive through their shared_ptr.
    if (plans().size() >= kMaxPlans) plans().clear();
    plans().emplace(key, plan);
  }
  if (!plan->has_algo) return classic_gemm(g, dev, stream);
  float one = 1, zero = 0;
  FATHOM_CUBLAS_CHECK(cublasLtMatmul(lt_handle(dev), plan->op, &one, g.pa, plan->la, g.pb,
                                     plan->lb, &zero, g.pc, plan->lc, g.pc, plan->lc, &plan->algo,
                                     ws, ws_bytes, stream));
}

}  // namespace fathom::cuda

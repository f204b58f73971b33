// DDP with the 2:4 compressor against its formula, worked out here from the definition
// (comm/compressor.h, core/ops/compress.h) for every rank at once: each rank's gradient is a known
// function of (rank, element, step), so the test knows what every rank sends. Per step and bucket,
// for every rank r:
//   e_r      = g_r + residual_r                         (error feedback)
//   group q of 4 bucket positions keeps kSparse24Pairs[(step + q) % 6], the same on every rank
//   p_r      = wire(e_r at the kept positions)          (wire = f32, or bf16 rounded to nearest even)
//   residual_r <- e_r - scatter(p_r)                    (the dropped values, and the rounding loss)
//   delivered  = scatter(wire(sum_r p_r) / world)       at the kept positions, 0 elsewhere
// The values are chosen on a coarse grid so that every partial sum of the payloads is exact in
// the wire dtype (checked below): the reduction order of MPI or NCCL cannot change the answer,
// so delivered gradients and residuals are compared exactly.
#include "testing.h"

#include <map>

#include "fathom/comm/comm.h"
#include "fathom/comm/compressor.h"
#include "fathom/core/ops/compress.h"
#include "fathom/parallel/ddp.h"

using namespace fathom;

namespace {

// Two parameters whose sizes are not multiples of 4: one bucket holds 14 values and 2 of padding,
// and the groups of 4 straddle the parameters.
class TwoLayers : public nn::Module {
 public:
  TwoLayers() : Module("TwoLayers") {
    a = register_parameter("a", zeros({6}, kFloat32));
    b = register_parameter("b", zeros({2, 4}, kFloat32));
  }
  Tensor forward(const Tensor& x) override { return x; }
  Tensor a, b;
};

const std::map<std::string, int64_t> kOffset = {{"a", 0}, {"b", 6}};  // in the global numbering
const std::map<std::string, int64_t> kNumel = {{"a", 6}, {"b", 8}};
constexpr int64_t kElems = 14;

// Rank r's gradient of global element i at step s. Every value is sign * (base + eps): base a
// multiple of 1/4 in [1, 2), eps in {1, 2, 3} / 4096, the sign fixed per element. Sums of a few
// such values keep their bases on the 1/4 grid (representable in bf16 up to 64) and their eps
// below half a bf16 ulp, so a bf16 payload is a sum of bases and the rounding loss stays behind
// in the residual; in f32 every value and sum (a multiple of 2^-12 below 32) is exact.
double grad_value(int r, int64_t i, int s) {
  double sign = i % 3 == 1 ? -1.0 : 1.0;
  double base = 1.0 + double((r + 2 * i + 3 * s) % 4) / 4.0;
  double eps = double((r + i + 2 * s) % 3 + 1) / 4096.0;
  return sign * (base + eps);
}

// Round to nearest even with 8 significant bits (bf16), written from the definition rather than
// with core's bit trick.
double round_bf16(double x) {
  if (x == 0) return 0;
  int e;
  double m = std::frexp(x, &e);  // x = m * 2^e, 0.5 <= |m| < 1
  return std::ldexp(std::nearbyint(std::ldexp(m, 8)), e - 8);
}

double round_wire(double x, DType wire) { return wire == kBFloat16 ? round_bf16(x) : double(float(x)); }

// The formula's state: every rank's residual, by global element (residuals follow their
// parameters when DDP rebuilds its buckets).
struct Model {
  int world;
  DType wire;
  std::vector<std::vector<double>> residual;  // [rank][element]
  Model(int w, DType d) : world(w), wire(d), residual(size_t(w), std::vector<double>(kElems, 0.0)) {}

  // One step over the buckets of `layout`: returns the delivered average of each global element.
  std::vector<double> step(const std::vector<std::vector<std::string>>& layout, int s) {
    std::vector<double> delivered(kElems, 0.0);
    for (const auto& bucket : layout) {
      std::vector<int64_t> at;  // bucket position -> global element, -1 for padding
      for (const auto& name : bucket)
        for (int64_t j = 0; j < kNumel.at(name); ++j) at.push_back(kOffset.at(name) + j);
      while (at.size() % 4) at.push_back(-1);
      for (size_t pos = 0; pos < at.size(); ++pos) {
        const uint8_t* keep = kSparse24Pairs[(uint64_t(s) + pos / 4) % 6];
        bool kept = keep[0] == pos % 4 || keep[1] == pos % 4;
        int64_t i = at[pos];
        std::vector<double> sent(size_t(world), 0.0);
        for (int r = 0; r < world; ++r) {
          double e = i < 0 ? 0.0 : grad_value(r, i, s) + residual[r][size_t(i)];
          sent[size_t(r)] = kept ? round_wire(e, wire) : 0.0;
          if (i >= 0) residual[r][size_t(i)] = e - sent[size_t(r)];
        }
        if (!kept || i < 0) continue;
        // Any reduction order gives the same sum when every partial sum is exact.
        for (unsigned subset = 1; subset < (1u << world); ++subset) {
          double part = 0;
          for (int r = 0; r < world; ++r)
            if (subset >> r & 1) part += sent[size_t(r)];
          INFO("step " << s << " element " << i << ": a partial sum of the payloads is " << part);
          REQUIRE(round_wire(part, wire) == part);
        }
        double sum = 0;
        for (double v : sent) sum += v;
        delivered[size_t(i)] = round_wire(round_wire(sum, wire) / world, wire);
      }
    }
    return delivered;
  }
};

// The bucket-flat residual the formula expects for `rank` in `bucket`.
std::vector<double> flat_residual(const Model& m, int rank, const std::vector<std::string>& bucket) {
  std::vector<double> out;
  for (const auto& name : bucket)
    for (int64_t j = 0; j < kNumel.at(name); ++j) out.push_back(m.residual[size_t(rank)][size_t(kOffset.at(name) + j)]);
  while (out.size() % 4) out.push_back(0.0);
  return out;
}

Tensor rank_grad(int r, const std::string& name, int s, const Shape& shape, Device dev) {
  std::vector<double> v;
  for (int64_t j = 0; j < kNumel.at(name); ++j) v.push_back(grad_value(r, kOffset.at(name) + j, s));
  return ops::to(from_vector(v, shape), dev);
}

// Three steps of DDP with a fresh 2:4 compressor; after each one, this rank's delivered
// gradients and residuals equal the formula's, exactly.
void compressed_average_matches_formula(Device dev, DType wire, bool one_bucket) {
  auto pg = comm::init().world;
  int r = pg->rank(), w = pg->size();
  INFO((one_bucket ? "one bucket" : "a bucket per parameter") << ", wire " << dtype_name(wire)
       << ", " << w << " ranks on " << dev.str());
  auto model = std::make_shared<TwoLayers>();
  model->to(dev);
  auto compressor = std::make_shared<comm::Sparse24Compressor>(wire);
  auto o = parallel::DDPOptions().compressor(compressor);
  if (!one_bucket) o.first_bucket_cap_mb(4 / 1048576.0).bucket_cap_mb(4 / 1048576.0);  // 1 float
  parallel::DistributedDataParallel ddp(model, pg, o);
  Model formula(w, wire);
  for (int s = 0; s < 3; ++s) {
    INFO("step " << s);
    ddp.prepare_forward();  // may rebuild the buckets (after step 0): read the layout after it
    auto layout = ddp.bucket_layout();
    REQUIRE(layout.size() == (one_bucket ? 1u : 2u));
    Tensor loss = add(sum(mul(model->a, rank_grad(r, "a", s, {6}, dev))),
                      sum(mul(model->b, rank_grad(r, "b", s, {2, 4}, dev))));
    loss.backward();
    std::vector<double> want = formula.step(layout, s);
    auto grads = std::vector<std::pair<std::string, Tensor>>{{"a", model->a}, {"b", model->b}};
    for (auto& [name, p] : grads) {
      INFO("parameter " << name);
      std::vector<double> expect(want.begin() + kOffset.at(name), want.begin() + kOffset.at(name) + kNumel.at(name));
      CHECK(to_vector(p.grad()) == expect);
    }
    for (size_t k = 0; k < layout.size(); ++k) {
      INFO("residual of bucket " << k);
      Tensor res = compressor->residual(int(k));
      REQUIRE(res.defined());
      CHECK(to_vector(res) == flat_residual(formula, r, layout[k]));
    }
  }
  // The formula is not trivially satisfied: residuals are nonzero (f32: the dropped values;
  // bf16: also the rounding loss at kept positions), so a compressor that dropped them, or did
  // not add them back, would deliver something else at steps 1 and 2.
  bool rounding_left = false, dropped_left = false;
  for (int64_t i = 0; i < kElems; ++i) {
    double v = std::fabs(formula.residual[size_t(r)][size_t(i)]);
    rounding_left |= v > 0 && v < 0.01;
    dropped_left |= v >= 1;
  }
  CHECK(dropped_left);
  CHECK(rounding_left == (wire == kBFloat16));
}

}  // namespace

TEST_CASE("DDP's 2:4-compressed average equals the formula, residuals included", "[parallel]") {
  for (DType wire : {kFloat32, kBFloat16})
    for (bool one_bucket : {true, false}) compressed_average_matches_formula(Device::cpu(), wire, one_bucket);
}

TEST_CASE("DDP's 2:4-compressed average over NCCL equals the formula, residuals included", "[parallel][cuda]") {
  if (!testing::has_cuda()) return;
  Device dev = comm::init().device;
  REQUIRE(dev.is_cuda());
  for (DType wire : {kFloat32, kBFloat16})
    for (bool one_bucket : {true, false}) compressed_average_matches_formula(dev, wire, one_bucket);
}

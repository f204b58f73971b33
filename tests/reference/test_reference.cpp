// Fathom's layers against PyTorch itself: the values in tests/reference/data/ were computed by
// PyTorch in f64 (scripts/torch_reference.py) from f32 inputs. Each case runs in f64, where only
// summation order separates the two, and in f32, where the tolerance is what f32 rounding
// through that computation can explain.
#include "reference_file.h"

using namespace fathom;
using fathom::reference::File;

namespace {

// rtol, and atol as a fraction of the reference tensor's largest |value|: an f32 result's
// absolute error follows the magnitude of the terms summed into it, so elements near zero
// (cancellations) are held to the tensor's scale rather than to their own.
struct Tol {
  double rtol, scaled_atol;
};

void check(const Tensor& got, const File& ref, const std::string& name, Tol tol, DType dt) {
  double atol = tol.scaled_atol * reference::scale_of(ref.values(name));
  reference::expect_near(got, ref, name, tol.rtol, atol, dtype_name(dt));
}

// f64: PyTorch and Fathom differ only in the order of their sums (a few ulps, more where
// terms cancel), so 1e-11 relative to the scale is far below any formula difference.
constexpr Tol kF64{1e-11, 1e-12};

Tensor input(const File& ref, const std::string& name, DType dt) {
  Tensor t = ref.tensor(name, dt);
  t.requires_grad_(true);
  return t;
}

}  // namespace

TEST_CASE("PyTorch reference: Linear forward and backward", "[reference]") {
  File ref("linear");
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    nn::Linear lin(4, 5);
    lin.to(dt);
    lin.load_state_dict({{"weight", ref.tensor("weight", dt)}, {"bias", ref.tensor("bias", dt)}});
    Tensor x = input(ref, "x", dt);
    Tensor y = lin.forward(x);
    y.backward(ref.tensor("dy", dt));
    // f32: a dot product of 4 (or a sum over 6 rows) rounds to a few ulps of its terms.
    Tol tol = dt == DType::f64 ? kF64 : Tol{1e-5, 1e-6};
    check(y, ref, "y", tol, dt);
    check(x.grad(), ref, "grad_x", tol, dt);
    check(lin.weight.grad(), ref, "grad_weight", tol, dt);
    check(lin.bias.grad(), ref, "grad_bias", tol, dt);
  }
}

TEST_CASE("PyTorch reference: LayerNorm forward and backward", "[reference]") {
  File ref("layer_norm");
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    nn::LayerNorm ln(nn::LayerNormOptions(6).eps(ref.scalar("eps")));
    ln.to(dt);
    ln.load_state_dict({{"weight", ref.tensor("weight", dt)}, {"bias", ref.tensor("bias", dt)}});
    Tensor x = input(ref, "x", dt);
    Tensor y = ln.forward(x);
    y.backward(ref.tensor("dy", dt));
    // f32: in the row offset by 40 the mean rounds to an ulp of 40 (4e-6), which rstd ~ 1.7
    // and weight ~ 1 carry into y: ~5e-6, up to 5e-6 of y's scale (~2.7) allowed.
    Tol tol = dt == DType::f64 ? kF64 : Tol{1e-5, 5e-6};
    check(y, ref, "y", tol, dt);
    // Each row normalises on its own, so grad_x is held to each row's scale (~1, but ~200 in
    // the near-eps row, rstd ~ 300). The offset row's rounded mean reaches grad_x through rstd
    // twice: errors seen ~5e-6 of that row's scale, ~2e-7 in the others.
    if (dt == DType::f64) {
      check(x.grad(), ref, "grad_x", kF64, dt);
    } else {
      REQUIRE(x.grad().shape() == ref.shape("grad_x"));
      std::vector<double> got = to_vector(x.grad()), want = ref.values("grad_x");
      for (size_t r = 0; r < want.size() / 6; ++r) {
        std::vector<double> g(got.begin() + 6 * r, got.begin() + 6 * (r + 1));
        std::vector<double> w(want.begin() + 6 * r, want.begin() + 6 * (r + 1));
        reference::expect_near(g, w, 1e-5, 2e-5 * reference::scale_of(w),
                               "f32 grad_x row " + std::to_string(r));
      }
    }
    check(ln.weight.grad(), ref, "grad_weight", tol, dt);
    check(ln.bias.grad(), ref, "grad_bias", tol, dt);
  }
}

TEST_CASE("PyTorch reference: softmax and log_softmax, -inf entries, large logits, other dims",
          "[reference]") {
  File ref("softmax");
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    // f32: exp and the row sum of 7 each round to an ulp or two; logits near 100 lose
    // 2^-24 * 100 absolute in x - max, which exp turns into ~1e-5 relative.
    Tol tol = dt == DType::f64 ? kF64 : Tol{2e-5, 2e-6};
    for (const char* op : {"softmax", "log_softmax"}) {
      INFO(op);
      Tensor x = input(ref, "x", dt);
      Tensor y = std::string(op) == "softmax" ? softmax(x, -1) : log_softmax(x, -1);
      y.backward(ref.tensor("dy", dt));
      check(y, ref, std::string(op) + ".y", tol, dt);
      check(x.grad(), ref, std::string(op) + ".grad_x", tol, dt);
    }
    Tensor x3 = input(ref, "x3", dt);
    Tensor y3 = softmax(x3, 1);
    y3.backward(ref.tensor("dy3", dt));
    check(y3, ref, "softmax_dim1.y", tol, dt);
    check(x3.grad(), ref, "softmax_dim1.grad_x", tol, dt);
  }
}

TEST_CASE("PyTorch reference: cross_entropy with ignore_index, label smoothing, reductions",
          "[reference]") {
  File ref("cross_entropy");
  using nn::Reduction;
  struct Variant {
    const char* name;
    nn::CrossEntropyLossOptions options;
  };
  std::vector<Variant> variants = {
      {"mean", nn::CrossEntropyLossOptions()},
      {"smooth", nn::CrossEntropyLossOptions().label_smoothing(0.1)},
      {"smooth_sum", nn::CrossEntropyLossOptions(Reduction::sum).label_smoothing(0.25)},
      {"sum", nn::CrossEntropyLossOptions(Reduction::sum)},
      {"none", nn::CrossEntropyLossOptions(Reduction::none)},
      {"smooth_none", nn::CrossEntropyLossOptions(Reduction::none).label_smoothing(0.1)},
  };
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    // f32: log-sum-exp over 5 classes and a mean over 5 targets: a few ulps.
    Tol tol = dt == DType::f64 ? kF64 : Tol{1e-5, 1e-6};
    Tensor targets = ref.tensor("targets");
    for (const Variant& v : variants) {
      INFO(v.name);
      Tensor logits = input(ref, "logits", dt);
      Tensor loss = nn::functional::cross_entropy(logits, targets, v.options);
      if (loss.dim() == 0) loss.backward();
      else loss.backward(ref.tensor("dy", dt));
      check(loss, ref, std::string(v.name) + ".loss", tol, dt);
      check(logits.grad(), ref, std::string(v.name) + ".grad", tol, dt);
    }
    // [B, T, C] logits: the classes stay in the last dim (PyTorch takes them in dim 1).
    Tensor logits3 = input(ref, "logits3", dt);
    Tensor loss3 = nn::functional::cross_entropy(logits3, ref.tensor("targets3"));
    loss3.backward();
    check(loss3, ref, "3d.loss", tol, dt);
    check(logits3.grad(), ref, "3d.grad", tol, dt);

    Tensor logits = input(ref, "logits", dt);
    Tensor loss2 = nn::functional::cross_entropy(logits, ref.tensor("targets_ignore2"),
                                                 nn::CrossEntropyLossOptions().ignore_index(2));
    loss2.backward();
    check(loss2, ref, "ignore2.loss", tol, dt);
    check(logits.grad(), ref, "ignore2.grad", tol, dt);

    // Every target ignored: a nan loss (0 / 0) but a zero gradient, in the fused kernel and in
    // the label-smoothing path.
    for (const Variant& v : {Variant{"all_ignored", nn::CrossEntropyLossOptions()},
                             Variant{"all_ignored_smooth", nn::CrossEntropyLossOptions().label_smoothing(0.1)}}) {
      INFO(v.name);
      Tensor l = input(ref, "logits", dt);
      Tensor loss = nn::functional::cross_entropy(l, ref.tensor("targets_none"), v.options);
      loss.backward();
      check(loss, ref, std::string(v.name) + ".loss", tol, dt);
      check(l.grad(), ref, std::string(v.name) + ".grad", tol, dt);
    }
  }
}

TEST_CASE("PyTorch reference: CausalSelfAttention against scaled_dot_product_attention",
          "[reference]") {
  File ref("attention");
  nn::GPTConfig cfg;
  cfg.n_embd = int64_t(ref.scalar("n_embd"));
  cfg.n_head = int64_t(ref.scalar("n_head"));
  cfg.block_size = 8;
  cfg.dropout = 0.0;
  const std::vector<std::string> params = {"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"};
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    nn::CausalSelfAttention attn(cfg);
    attn.to(dt);
    nn::StateDict sd;
    for (const auto& n : params) sd[n] = ref.tensor(n, dt);
    attn.load_state_dict(sd);
    Tensor x = input(ref, "x", dt);
    Tensor y = attn.forward(x);
    y.backward(ref.tensor("dy", dt));
    // f32: three chained matmuls of length 8 around a softmax of at most 5 entries; each adds
    // a few ulps of its operands' scale.
    Tol tol = dt == DType::f64 ? kF64 : Tol{2e-5, 5e-6};
    check(y, ref, "y", tol, dt);
    check(x.grad(), ref, "grad_x", tol, dt);
    auto named = attn.named_parameters();
    for (const auto& [n, p] : named) check(p.grad(), ref, "grad." + n, tol, dt);
    CHECK(named.size() == params.size());
  }
}

TEST_CASE("PyTorch reference: GPT-tiny logits, loss and every parameter gradient", "[reference]") {
  File ref("gpt");
  nn::GPTConfig cfg;
  cfg.vocab_size = int64_t(ref.scalar("vocab_size"));
  cfg.block_size = int64_t(ref.scalar("block_size"));
  cfg.n_layer = int64_t(ref.scalar("n_layer"));
  cfg.n_head = int64_t(ref.scalar("n_head"));
  cfg.n_embd = int64_t(ref.scalar("n_embd"));
  cfg.dropout = 0.0;
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    nn::GPT model(cfg);
    model.to(dt);
    // Loaded by Fathom's own state_dict names (strict): the file and the model agree on every
    // parameter, so a renamed or missing one fails here.
    nn::StateDict sd;
    for (const auto& key : ref.names("param.")) sd[key.substr(6)] = ref.tensor(key, dt);
    model.load_state_dict(sd);
    Tensor idx = ref.tensor("idx"), targets = ref.tensor("targets");
    Tensor logits = model.forward(idx);
    Tensor loss = model.forward(idx, targets);
    loss.backward();
    // f32: two blocks of LayerNorm, attention and a 4x MLP in width 8, then the tied
    // projection: rounding compounds through about a dozen ops forward and again backward
    // (errors seen: ~2e-7 of the logits' scale, up to ~9e-7 of a gradient's), so the
    // gradients get the larger bound.
    Tol out = dt == DType::f64 ? kF64 : Tol{2e-5, 2e-6};
    Tol grad = dt == DType::f64 ? kF64 : Tol{1e-4, 5e-6};
    check(logits, ref, "logits", out, dt);
    check(loss, ref, "loss", out, dt);
    std::vector<std::string> seen;
    for (const auto& [n, p] : model.named_parameters()) {
      check(p.grad(), ref, "grad." + n, grad, dt);
      seen.push_back("grad." + n);
    }
    std::sort(seen.begin(), seen.end());
    CHECK(seen == ref.names("grad."));
  }
}

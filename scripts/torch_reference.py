#!/usr/bin/env python3
"""Writes the PyTorch reference values that tests/reference/ compares Fathom against.

    PY=$(../shared/anchors/setup-torch.sh)   # or any Python with torch
    "$PY" scripts/torch_reference.py          # rewrites tests/reference/data/*.txt

Only a developer runs this (CI reads the checked-in files). Inputs come from Python's own
seeded Mersenne Twister (random.Random), rounded to f32, so they do not depend on torch's RNG;
PyTorch then computes every output and gradient in f64 from those exact f32 values, on one
thread. The optimizer, loss-scaler and schedule cases run PyTorch's own classes
(torch.optim.AdamW/SGD, clip_grad_norm_, torch.amp.GradScaler, torch.optim.lr_scheduler).

File format (one file per case, parsed by tests/reference/reference_file.h): '#' lines are
comments; each tensor is a header line `NAME DTYPE DIM...` (no dims: a scalar) followed by its
numel values, row-major, whitespace separated: f32 as %.9g and f64 as %.17g (both round-trip
exactly), i64 as integers, and inf/-inf/nan spelled so.
"""
import argparse
import math
import os
import random
import struct
import sys
import warnings

import torch
import torch.nn.functional as F

F64 = torch.float64


def f32(x):
    """x rounded to the nearest f32, as a Python float."""
    return struct.unpack("f", struct.pack("f", x))[0]


class Case:
    def __init__(self, name, seed, about):
        self.name = name
        self.about = about
        self.rng = random.Random(seed)
        self.entries = []

    def uniform(self, shape, lo=-1.0, hi=1.0):
        """An f32 tensor of uniform values in [lo, hi)."""
        n = math.prod(shape)
        return torch.tensor([f32(self.rng.uniform(lo, hi)) for _ in range(n)],
                            dtype=torch.float32).reshape(shape)

    def ints(self, shape, lo, hi):
        """An i64 tensor of integers in [lo, hi]."""
        n = math.prod(shape)
        return torch.tensor([self.rng.randint(lo, hi) for _ in range(n)],
                            dtype=torch.int64).reshape(shape)

    def add(self, name, t):
        t = torch.as_tensor(t).detach()
        assert name not in (e[0] for e in self.entries), name
        assert " " not in name
        self.entries.append((name, t))
        return t

    def text(self):
        lines = [f"# Fathom reference values: {self.name}. {self.about}",
                 f"# Written by scripts/torch_reference.py with torch {torch.__version__}; "
                 "regenerate, do not edit."]
        for name, t in self.entries:
            dtype = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64"}[t.dtype]
            lines.append(" ".join([name, dtype] + [str(d) for d in t.shape]))
            if dtype == "i64":
                vals = [str(int(v)) for v in t.reshape(-1).tolist()]
            else:
                fmt = "%.9g" if dtype == "f32" else "%.17g"
                vals = [fmt % v for v in t.reshape(-1).tolist()]
            per_line = 8 if dtype == "f64" else 10
            for i in range(0, len(vals), per_line):
                lines.append(" ".join(vals[i:i + per_line]))
        return "\n".join(lines) + "\n"


def grads_of(out, dy, inputs):
    """d(sum(out * dy))/d inputs: the vector-Jacobian product for a given upstream gradient."""
    return torch.autograd.grad(out, inputs, dy)


def d(t):
    """An f64 leaf that requires grad, holding t's (f32) values exactly."""
    return t.to(F64).requires_grad_(True)


# ---- single ops ----

def linear_case():
    c = Case("linear", 1, "y = x @ weight^T + bias for a 3-d x, with the VJP for upstream dy.")
    x, w, b = c.add("x", c.uniform([2, 3, 4])), c.add("weight", c.uniform([5, 4], -0.5, 0.5)), \
        c.add("bias", c.uniform([5], -0.5, 0.5))
    dy = c.add("dy", c.uniform([2, 3, 5]))
    xd, wd, bd = d(x), d(w), d(b)
    y = F.linear(xd, wd, bd)
    gx, gw, gb = grads_of(y, dy.to(F64), [xd, wd, bd])
    c.add("y", y), c.add("grad_x", gx), c.add("grad_weight", gw), c.add("grad_bias", gb)
    return c


def layer_norm_case():
    c = Case("layer_norm", 2, "LayerNorm over the last dim (eps 1e-5); row 1 is offset by 40 "
             "(cancellation), row 2 has a spread near sqrt(eps) (eps placement matters).")
    x = c.uniform([2, 3, 6])
    x[0, 1] += 40.0
    x[0, 2] *= 3e-3
    c.add("x", x)
    w, b = c.add("weight", c.uniform([6], 0.5, 1.5)), c.add("bias", c.uniform([6], -0.5, 0.5))
    c.add("eps", torch.tensor(1e-5, dtype=F64))
    dy = c.add("dy", c.uniform([2, 3, 6]))
    xd, wd, bd = d(x), d(w), d(b)
    y = F.layer_norm(xd, (6,), wd, bd, 1e-5)
    gx, gw, gb = grads_of(y, dy.to(F64), [xd, wd, bd])
    c.add("y", y), c.add("grad_x", gx), c.add("grad_weight", gw), c.add("grad_bias", gb)
    return c


def softmax_case():
    c = Case("softmax", 3, "softmax and log_softmax over the last dim (rows with -inf entries "
             "and with logits near 100) and softmax over dim 1 of a 3-d tensor.")
    x = c.uniform([4, 7], -3, 3)
    x[1, 2] = -math.inf
    x[2, :5] = -math.inf
    x[3] += 100.0  # exp(100) overflows f32: only a max-subtracting softmax survives
    c.add("x", x)
    dy = c.add("dy", c.uniform([4, 7]))
    for name, fn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
        xd = d(x)
        y = fn(xd, -1)
        (gx,) = grads_of(y, dy.to(F64), [xd])
        c.add(f"{name}.y", y), c.add(f"{name}.grad_x", gx)
    x3 = c.add("x3", c.uniform([2, 3, 4], -2, 2))
    dy3 = c.add("dy3", c.uniform([2, 3, 4]))
    xd = d(x3)
    y = torch.softmax(xd, 1)
    (gx,) = grads_of(y, dy3.to(F64), [xd])
    c.add("softmax_dim1.y", y), c.add("softmax_dim1.grad_x", gx)
    return c


def cross_entropy_case():
    c = Case("cross_entropy", 4, "cross_entropy variants: mean with an ignored target, label "
             "smoothing, sum, none (with upstream dy), 3-d logits, a custom ignore_index.")
    logits = c.add("logits", c.uniform([6, 5], -3, 3))
    t = c.ints([6], 0, 4)
    t[4] = -100
    c.add("targets", t)
    dy = c.add("dy", c.uniform([6]))
    variants = [("mean", {}), ("smooth", {"label_smoothing": 0.1}),
                ("smooth_sum", {"label_smoothing": 0.25, "reduction": "sum"}),
                ("sum", {"reduction": "sum"}), ("none", {"reduction": "none"}),
                ("smooth_none", {"label_smoothing": 0.1, "reduction": "none"})]
    for name, kw in variants:
        ld = d(logits)
        loss = F.cross_entropy(ld, t, **kw)
        up = dy.to(F64) if loss.dim() else torch.ones((), dtype=F64)
        (g,) = grads_of(loss, up, [ld])
        c.add(f"{name}.loss", loss), c.add(f"{name}.grad", g)
    # 3-d logits [B, T, C]: Fathom keeps classes last, PyTorch wants them in dim 1.
    l3 = c.add("logits3", c.uniform([2, 3, 5], -3, 3))
    t3 = c.ints([2, 3], 0, 4)
    t3[1, 0] = -100
    c.add("targets3", t3)
    ld = d(l3)
    loss = F.cross_entropy(ld.permute(0, 2, 1), t3)
    (g,) = grads_of(loss, torch.ones((), dtype=F64), [ld])
    c.add("3d.loss", loss), c.add("3d.grad", g)
    # ignore_index 2: every target equal to 2 drops out of the mean.
    ld = d(logits)
    t2 = t.clone()
    t2[4] = 2
    c.add("targets_ignore2", t2)
    loss = F.cross_entropy(ld, t2, ignore_index=2)
    (g,) = grads_of(loss, torch.ones((), dtype=F64), [ld])
    c.add("ignore2.loss", loss), c.add("ignore2.grad", g)
    # Every target ignored: the mean is 0/0 = nan, and the gradient is zero, not nan.
    c.add("targets_none", torch.full([6], -100))
    for name, kw in (("all_ignored", {}), ("all_ignored_smooth", {"label_smoothing": 0.1})):
        ld = d(logits)
        loss = F.cross_entropy(ld, torch.full([6], -100), **kw)
        (g,) = grads_of(loss, torch.ones((), dtype=F64), [ld])
        c.add(f"{name}.loss", loss), c.add(f"{name}.grad", g)
    return c


# ---- attention and GPT (Fathom's nn/gpt.h, as nanoGPT) ----

def attention(x, P, pre, n_head):
    """Fathom's CausalSelfAttention: fused qkv, heads split as [B, H, T, D], causal SDPA, proj."""
    B, T, C = x.shape
    q, k, v = F.linear(x, P[pre + "qkv.weight"], P[pre + "qkv.bias"]).split(C, dim=2)
    heads = lambda t: t.view(B, T, n_head, C // n_head).transpose(1, 2)  # noqa: E731
    y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
    y = y.transpose(1, 2).contiguous().view(B, T, C)
    return F.linear(y, P[pre + "proj.weight"], P[pre + "proj.bias"])


def attention_case():
    c = Case("attention", 5, "Fathom's CausalSelfAttention (n_embd 8, n_head 2) on x [2, 5, 8] "
             "against torch's scaled_dot_product_attention(is_causal=True), with upstream dy.")
    C, H = 8, 2
    c.add("n_embd", torch.tensor(C)), c.add("n_head", torch.tensor(H))
    names = {"qkv.weight": [3 * C, C], "qkv.bias": [3 * C], "proj.weight": [C, C], "proj.bias": [C]}
    P = {n: d(c.add(n, c.uniform(s, -0.6, 0.6))) for n, s in names.items()}
    x = c.add("x", c.uniform([2, 5, C]))
    dy = c.add("dy", c.uniform([2, 5, C]))
    xd = d(x)
    y = attention(xd, P, "", H)
    grads = grads_of(y, dy.to(F64), [xd] + list(P.values()))
    c.add("y", y), c.add("grad_x", grads[0])
    for n, g in zip(P, grads[1:]):
        c.add("grad." + n, g)
    return c


def gpt_case():
    c = Case("gpt", 6, "Fathom's GPT (pre-LN, GELU tanh, tied wte output) with 2 layers, 2 heads, "
             "n_embd 8, vocab 11: logits, mean cross-entropy (one target ignored), every grad.")
    V, BS, L, H, C = 11, 8, 2, 2, 8
    for n, v in (("vocab_size", V), ("block_size", BS), ("n_layer", L), ("n_head", H), ("n_embd", C)):
        c.add(n, torch.tensor(v))
    shapes = {"wte.weight": [V, C], "wpe.weight": [BS, C]}
    for i in range(L):
        p = f"blocks.{i}."
        shapes.update({p + "ln1.weight": [C], p + "ln1.bias": [C],
                       p + "attn.qkv.weight": [3 * C, C], p + "attn.qkv.bias": [3 * C],
                       p + "attn.proj.weight": [C, C], p + "attn.proj.bias": [C],
                       p + "ln2.weight": [C], p + "ln2.bias": [C],
                       p + "mlp.fc.weight": [4 * C, C], p + "mlp.fc.bias": [4 * C],
                       p + "mlp.proj.weight": [C, 4 * C], p + "mlp.proj.bias": [C]})
    shapes.update({"ln_f.weight": [C], "ln_f.bias": [C]})
    P = {}
    for n, s in shapes.items():
        if n.endswith(("ln1.weight", "ln2.weight", "ln_f.weight")):
            t = c.uniform(s, 0.7, 1.3)
        elif n.endswith("bias"):
            t = c.uniform(s, -0.2, 0.2)
        else:  # +-1/sqrt(fan_in) for the linears, wider for the embeddings
            bound = 1.0 if n.startswith("w") else 1.0 / math.sqrt(s[1])
            t = c.uniform(s, -bound, bound)
        P[n] = d(c.add("param." + n, t))
    idx = c.add("idx", c.ints([2, 6], 0, V - 1))
    targets = c.ints([2, 6], 0, V - 1)
    targets[1, 3] = -100
    c.add("targets", targets)

    T = idx.shape[1]
    x = F.embedding(idx, P["wte.weight"]) + F.embedding(torch.arange(T), P["wpe.weight"])
    for i in range(L):
        p = f"blocks.{i}."
        ln = lambda t, n: F.layer_norm(t, (C,), P[p + n + ".weight"], P[p + n + ".bias"], 1e-5)  # noqa: E731
        x = x + attention(ln(x, "ln1"), P, p + "attn.", H)
        h = F.gelu(F.linear(ln(x, "ln2"), P[p + "mlp.fc.weight"], P[p + "mlp.fc.bias"]), approximate="tanh")
        x = x + F.linear(h, P[p + "mlp.proj.weight"], P[p + "mlp.proj.bias"])
    x = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], 1e-5)
    logits = x @ P["wte.weight"].t()
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)
    grads = torch.autograd.grad(loss, list(P.values()))
    c.add("logits", logits), c.add("loss", loss)
    for n, g in zip(P, grads):
        c.add("grad." + n, g)
    return c


# ---- optimizers, clipping, loss scaling ----

def optimizer_case(name, seed, about, variants, max_norm):
    """10 steps of a tiny Linear(4, 3) + MSE model; each variant is (prefix, make_optimizer, use of
    clipping). Records each step's loss, gradient norm before clipping and the parameters after."""
    c = Case(name, seed, about)
    x, y = c.add("x", c.uniform([6, 4])), c.add("target", c.uniform([6, 3]))
    w0, b0 = c.add("weight0", c.uniform([3, 4])), c.add("bias0", c.uniform([3], -0.5, 0.5))
    c.add("max_norm", torch.tensor(max_norm, dtype=F64))
    for prefix, make in variants:
        w, b = d(w0), d(b0)
        opt = make([w, b])
        losses, norms, ws, bs = [], [], [], []
        for _ in range(10):
            opt.zero_grad()
            loss = F.mse_loss(F.linear(x.to(F64), w, b), y.to(F64))
            loss.backward()
            norms.append(torch.nn.utils.clip_grad_norm_([w, b], max_norm).item())
            losses.append(loss.item())
            opt.step()
            ws.append(w.detach().clone())
            bs.append(b.detach().clone())
        # Both sides of min(1, max_norm / norm) must be exercised, or the case checks too little.
        assert min(norms) < max_norm < max(norms), (prefix, norms)
        c.add(prefix + "loss", torch.tensor(losses, dtype=F64))
        c.add(prefix + "grad_norm", torch.tensor(norms, dtype=F64))
        c.add(prefix + "weight", torch.stack(ws)), c.add(prefix + "bias", torch.stack(bs))
    return c


def adamw_case():
    return optimizer_case(
        "adamw", 7, "10 AdamW steps (lr 0.05, betas 0.9/0.95, eps 1e-8, weight_decay 0.1) of "
        "Linear(4, 3) + MSE with clip_grad_norm_ before each step.",
        [("", lambda p: torch.optim.AdamW(p, lr=0.05, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1))],
        max_norm=0.5)


def sgd_case():
    return optimizer_case(
        "sgd", 8, "10 SGD steps of Linear(4, 3) + MSE with clip_grad_norm_ before each step: "
        "momentum 0.9, dampening 0.1, weight_decay 0.01; and nesterov (momentum 0.8, wd 0.01).",
        [("momentum.", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
         ("nesterov.", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8, weight_decay=0.01, nesterov=True))],
        max_norm=0.5)


def grad_scaler_case():
    c = Case("grad_scaler", 9, "torch.amp.GradScaler (init 1024, growth 2 every 2 clean steps, "
             "backoff 0.5) with SGD(lr 0.1, momentum 0.9) and clip_grad_norm_(1.0) after unscale_; "
             "the gradient of each step is given unscaled; steps 3, 9 and 10 hold an inf, step 6 a nan.")
    steps = 12
    w0 = c.add("w", c.uniform([5]))
    g = c.uniform([steps, 5], -0.8, 0.8)
    g[3, 1] = math.inf
    g[6, 4] = math.nan
    g[9, 0] = -math.inf  # two skips in a row: the scale backs off twice
    g[10, 2] = math.inf
    c.add("grads", g)
    for n, v in (("init_scale", 1024.0), ("growth_factor", 2.0), ("backoff_factor", 0.5),
                 ("max_norm", 1.0), ("lr", 0.1), ("momentum", 0.9)):
        c.add(n, torch.tensor(v, dtype=F64))
    c.add("growth_interval", torch.tensor(2))
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_factor=2.0, backoff_factor=0.5,
                                  growth_interval=2)
    scale_before, skipped, scale_after, ws = [], [], [], []
    for t in range(steps):
        scale_before.append(scaler.get_scale())
        # loss = sum(w * g_t) has gradient g_t; backward of the scaled loss leaves g_t times the
        # scale (a power of two here, so exact) in .grad, inf and nan included.
        opt.zero_grad()
        scaler.scale((w * g[t]).sum()).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_([w], 1.0)
        scaler.step(opt)
        skipped.append(int(sum(v.item() for v in scaler._found_inf_per_device(opt).values()) > 0))
        scaler.update()
        scale_after.append(scaler.get_scale())
        ws.append(w.detach().clone())
    assert sum(skipped) == 4 and max(scale_after) > scale_before[0] > min(scale_after)
    c.add("scale_before", torch.tensor(scale_before, dtype=F64))
    c.add("skipped", torch.tensor(skipped))
    c.add("scale_after", torch.tensor(scale_after, dtype=F64))
    c.add("w_after", torch.stack(ws))
    return c


# ---- learning-rate schedules ----

def schedules_case():
    c = Case("schedules", 10, "each schedule's lr at steps 0..N (after construction, then after "
             "each step()) from torch.optim.lr_scheduler, with base lr 1e-3.")
    base = 1e-3
    c.add("base_lr", torch.tensor(base, dtype=F64))
    S = torch.optim.lr_scheduler

    def lrs(make, n):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
        sched = make(opt)
        out = [opt.param_groups[0]["lr"]]
        for _ in range(n):
            opt.step()
            sched.step()
            out.append(opt.param_groups[0]["lr"])
        return torch.tensor(out, dtype=F64)

    # Fathom's CosineLR(opt, 5, 20, 1e-4): linear warmup (s+1)/5, then cosine to min_lr at 20.
    c.add("cosine.lr", lrs(lambda o: S.SequentialLR(o, [
        S.LinearLR(o, start_factor=1 / 5, end_factor=1.0, total_iters=4),
        S.CosineAnnealingLR(o, T_max=15, eta_min=1e-4)], milestones=[5]), 20))
    # CosineLR(opt, 0, 12): no warmup, CosineAnnealingLR itself.
    c.add("cosine_nowarmup.lr", lrs(lambda o: S.CosineAnnealingLR(o, T_max=12, eta_min=0.0), 12))
    # ConstantLR(opt, 4): Fathom's warmup-then-constant (torch's ConstantLR is another thing).
    c.add("warmup.lr", lrs(lambda o: S.LinearLR(o, start_factor=1 / 4, end_factor=1.0, total_iters=3), 10))
    c.add("step.lr", lrs(lambda o: S.StepLR(o, step_size=3, gamma=0.5), 10))
    c.add("onecycle.lr", lrs(lambda o: S.OneCycleLR(o, max_lr=1e-2, total_steps=20, pct_start=0.3,
                                                     div_factor=25.0, final_div_factor=1e4,
                                                     anneal_strategy="cos", cycle_momentum=False,
                                                     three_phase=False), 20))
    return c


CASES = [linear_case, layer_norm_case, softmax_case, cross_entropy_case, attention_case, gpt_case,
         adamw_case, sgd_case, grad_scaler_case, schedules_case]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "reference", "data"),
                    help="directory for the case files (default: tests/reference/data)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    warnings.filterwarnings("ignore", category=UserWarning)  # SequentialLR's epoch deprecation
    os.makedirs(args.out, exist_ok=True)
    for make in CASES:
        case = make()
        path = os.path.join(args.out, case.name + ".txt")
        with open(path, "w") as f:
            f.write(case.text())
        print(f"{os.path.relpath(path)}: {len(case.entries)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()

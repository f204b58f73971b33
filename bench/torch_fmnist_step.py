# PyTorch's side of bench/bench_fmnist_step.cpp: the same MLP (784-512-512-10, ReLU), AdamW
# (lr 1e-3, weight decay 0.01), batch 128 drawn from a shuffled Debian Fashion-MNIST, as the
# anchor ../shared/anchors/torch_fmnist_mlp.py trains it, timed step by step. One JSON line:
#   $PY bench/torch_fmnist_step.py --steps 300 --label idle [--threads N]
# Without --threads PyTorch keeps its own default (what a user who never calls
# torch.set_num_threads gets); the line says how many that was.
import argparse, gzip, json, math, sys, time

import numpy as np
import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=300)
p.add_argument("--max-seconds", type=float, default=30, help="stop timing earlier after this long (0: no limit)")
p.add_argument("--warmup", type=int, default=20)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads(N); 0 leaves the default")
p.add_argument("--data", default="/usr/share/datasets/fashion-mnist/")
p.add_argument("--label", default="")
a = p.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)

def imgs(f):
    return np.frombuffer(gzip.open(a.data + f).read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0
def labs(f):
    return np.frombuffer(gzip.open(a.data + f).read(), np.uint8, offset=8).astype(np.int64)

X = torch.from_numpy(imgs("train-images-idx3-ubyte.gz"))
Y = torch.from_numpy(labs("train-labels-idx1-ubyte.gz"))
m = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
lossf = nn.CrossEntropyLoss()
perm, at = torch.randperm(len(X)), 0

def step():
    global perm, at
    if at + a.batch > len(X):
        perm, at = torch.randperm(len(X)), 0
    idx = perm[at:at + a.batch]
    at += a.batch
    loss = lossf(m(X[idx]), Y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()

loss = 0.0
for _ in range(a.warmup):
    loss = step()
first = loss
times, total = [], 0.0
t_all = time.perf_counter()
while len(times) < a.steps and not (a.max_seconds > 0 and total > a.max_seconds):
    t0 = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
a.steps = len(times)
if not math.isfinite(loss) or (a.warmup > 0 and a.steps >= 100 and not loss < first * 1.5):
    sys.exit(f"torch_fmnist_step: the loss went from {first:.4f} to {loss:.4f}: not training")
times.sort()
print(json.dumps({"bench": "fmnist_step", "framework": "torch " + torch.__version__, "label": a.label,
                  "threads": torch.get_num_threads(), "batch": a.batch, "steps": a.steps,
                  "samples_per_s": round(a.steps * a.batch / total), "step_ms": round(1e3 * times[len(times) // 2], 3),
                  "loss": round(loss, 4)}))

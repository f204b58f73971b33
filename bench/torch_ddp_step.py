# PyTorch DDP (gloo) on the main job's step, timed by phase, beside bench_dp_step (issue #21):
# the anchor's job (../shared/anchors/torch_ddp_fmnist.py: MLP 784-512-512-10, AdamW, global
# batch 128 split over the ranks, one thread per rank), one JSON line per rank. Phases are wall
# time on the training thread: forward; backward, which includes DDP's wait for the last
# all-reduce (PyTorch's reducer finishes inside backward, so exposed communication is in it);
# optimizer; gemm is the self time of aten::mm/addmm from torch.profiler over a second window
# of the same length, scaled per step.
#   python bench/torch_ddp_step.py [ranks] [steps]
import gzip, json, os, statistics, sys, time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

D = "/usr/share/datasets/fashion-mnist/"


def images():
    raw = gzip.open(D + "train-images-idx3-ubyte.gz").read()
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0)


def labels():
    raw = gzip.open(D + "train-labels-idx1-ubyte.gz").read()
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=8).astype(np.int64))


def run(rank, world, steps):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    X, Y = images(), labels()
    m = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    ddp = nn.parallel.DistributedDataParallel(m)
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3, weight_decay=0.01)
    lossf = nn.CrossEntropyLoss()
    B = 128
    b = B // world
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(X), generator=g)
    per_epoch = len(X) // B

    def batch(i):
        i %= per_epoch
        idx = perm[i * B + rank * b: i * B + (rank + 1) * b]
        return X[idx], Y[idx]

    phases = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    times = []
    warmup = 30
    for i in range(warmup + steps):
        if i == warmup:
            dist.barrier()
            t_all = time.perf_counter()
        x, y = batch(i)
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = lossf(ddp(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        loss.item()
        t3 = time.perf_counter()
        if i >= warmup:
            phases["forward"] += t1 - t0
            phases["backward"] += t2 - t1
            phases["optimizer"] += t3 - t2
            times.append(t3 - t0)
    total = time.perf_counter() - t_all
    # GEMM self time from the profiler, in a window of its own (profiling slows the step).
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            x, y = batch(i)
            opt.zero_grad()
            lossf(ddp(x), y).backward()
            opt.step()
    gemm_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm"))
    mean_ms = 1e3 * total / steps
    print(json.dumps({
        "bench": "dp_step", "framework": "torch", "version": torch.__version__, "model": "mlp", "world": world,
        "rank": rank, "threads": 1, "steps": steps, "samples_per_s": round(steps * B / total),
        "step_ms": round(1e3 * statistics.median(times), 3), "mean_step_ms": round(mean_ms, 3),
        "forward_ms": round(1e3 * phases["forward"] / steps, 3),
        "backward_incl_comm_ms": round(1e3 * phases["backward"] / steps, 3),
        "optimizer_ms": round(1e3 * phases["optimizer"] / steps, 3),
        "gemm_ms": round(1e-3 * gemm_us / steps, 3)}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    world = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29512")
    mp.spawn(run, args=(world, steps), nprocs=world)

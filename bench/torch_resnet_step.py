# PyTorch's side of bench/bench_resnet.cpp: the same ResNet training step on synthetic images
# (forward, cross-entropy, backward, SGD lr 0.01 momentum 0.9), f32 on the CPU. One process, or
# --ranks N processes of DistributedDataParallel over gloo (torch.multiprocessing, as the
# anchor ../shared/anchors/torch_ddp_fmnist.py), the global batch split among them. The model is
# torchvision's when it imports, else its plain-torch transcription (scripts/torch_resnet_reference.py,
# the same names and shapes). One JSON line (rank 0):
#   $PY bench/torch_resnet_step.py --model resnet50 --batch 16 --steps 5 --threads 2
#   $PY bench/torch_resnet_step.py --model resnet50 --batch 16 --steps 5 --ranks 2 --threads 1
import argparse, json, math, os, sys, time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--model", default="resnet50")
p.add_argument("--batch", type=int, default=16, help="global batch (split over the ranks)")
p.add_argument("--image", type=int, default=224)
p.add_argument("--classes", type=int, default=1000)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--ranks", type=int, default=1)
p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads(N) per rank; 0 leaves the default")
p.add_argument("--port", default="29517")
p.add_argument("--label", default="")
a = p.parse_args()


def build(name, classes):
    try:
        import torchvision.models as tvm
        return getattr(tvm, name)(num_classes=classes), "torchvision"
    except ImportError:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
        import torch_resnet_reference as ref
        blocks = {"resnet18": (ref.BasicBlock, [2, 2, 2, 2]), "resnet34": (ref.BasicBlock, [3, 4, 6, 3]),
                  "resnet50": (ref.Bottleneck, [3, 4, 6, 3]), "resnet101": (ref.Bottleneck, [3, 4, 23, 3]),
                  "resnet152": (ref.Bottleneck, [3, 8, 36, 3])}
        block, layers = blocks[name]
        return ref.ResNet(block, layers, classes), "plain torch"


def run(rank, world):
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    model, source = build(a.model, a.classes)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(1 + rank)
    local = a.batch // world
    x = torch.randn(local, 3, a.image, a.image, generator=g)
    y = torch.randint(0, a.classes, (local,), generator=g)
    lossf = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = lossf(net(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    loss = 0.0
    for _ in range(a.warmup):
        loss = step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    if not math.isfinite(loss):
        sys.exit(f"torch_resnet_step: the loss is {loss}: not training")
    times.sort()
    med = times[len(times) // 2]
    if rank == 0:
        print(json.dumps({"bench": "resnet_step", "framework": "torch " + torch.__version__, "model_source": source,
                          "label": a.label, "model": a.model, "ranks": world, "threads": torch.get_num_threads(),
                          "batch": a.batch, "image": a.image, "steps": a.steps,
                          "images_per_s": round(a.batch / med, 2), "step_ms": round(1e3 * med, 1),
                          "min_step_ms": round(1e3 * times[0], 1), "loss": round(loss, 4)}), flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    if a.batch % a.ranks:
        sys.exit(f"torch_resnet_step: --batch {a.batch} must divide by --ranks {a.ranks}")
    if a.ranks > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", a.port)
        mp.spawn(run, args=(a.ranks,), nprocs=a.ranks)
    else:
        run(0, 1)

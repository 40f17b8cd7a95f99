#!/usr/bin/env python3
"""PyTorch twin of `nas-core bench train`: the same reference net (three 3x3 convs of
32/64/128 channels, two 2x2 max pools, global average pooling, a 100-way head:
106,148 parameters), batch, optimiser and thread count, on constant random data.
Prints one JSON object like `nas-core bench train --json`.

Usage: pytorch_reference.py [--batch 64] [--steps 30] [--warmup 5] [--threads 2]
                            [--optim adam|sgd] [--device cpu|cuda]
"""

import argparse
import json
import time

import torch
from torch import nn


def reference_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 100),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--optim", choices=["adam", "sgd"], default="adam")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = reference_net().to(dev)
    params = sum(t.numel() for t in model.parameters())
    if a.optim == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, nesterov=True)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(a.batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 100, (a.batch,), device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    fwd = bwd = stp = 0.0

    def step(timed: bool) -> None:
        nonlocal fwd, bwd, stp
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        opt.step()
        sync()
        if timed:
            fwd += t1 - t0
            bwd += t2 - t1
            stp += time.perf_counter() - t2

    for _ in range(a.warmup):
        step(False)
    start = time.perf_counter()
    for _ in range(a.steps):
        step(True)
    elapsed = time.perf_counter() - start
    ms = lambda s: s * 1e3 / a.steps
    print(json.dumps({
        "net": "BenchCnn",
        "params": params,
        "batch": a.batch,
        "steps": a.steps,
        "threads": a.threads,
        "optim": a.optim,
        "backend": f"pytorch {torch.__version__} {a.device}",
        "images_per_sec": a.steps * a.batch / elapsed,
        "forward_ms": ms(fwd),
        "backward_ms": ms(bwd),
        "optimizer_ms": ms(stp),
    }))


if __name__ == "__main__":
    main()

"""What plain PyTorch needs for the training of one round: the floor under every round of ``round.py``.

    python benchmarks/floor.py                    # LeNet on CIFAR-10-shaped tensors, 16 nodes
    python benchmarks/floor.py --nodes 96 --processes 1,2

One ``nn.Module`` per node and ``torch.optim.SGD``, no jwins code on the training path: each round every node
takes ``--steps`` steps on ``--batch`` random images of its own (the decentralizepy JWINS tutorial: 3 steps of
8 images). Nodes are split over ``--processes`` OS processes (decentralizepy runs one process per node), each
with one torch intra-op thread, started together every round. Prints seconds per round (median) and per step;
compare with the ``local`` rows of ``round.py`` (the same training through jwins' simulator).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time


def _worker(nodes: int, steps: int, batch: int, rounds: int, start, done, seconds) -> None:
    import torch
    import torch.nn.functional as F

    from jwins.models import LeNet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    models = [LeNet(num_classes=10) for _ in range(nodes)]
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in models]
    images = torch.randn(nodes, 256, 3, 32, 32)
    labels = torch.randint(0, 10, (nodes, 256))
    gen = torch.Generator().manual_seed(1)
    for _ in range(rounds):
        start.wait()
        t0 = time.perf_counter()
        for i, (model, opt) in enumerate(zip(models, opts)):
            for _ in range(steps):
                pick = torch.randint(0, 256, (batch,), generator=gen)
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(images[i, pick]), labels[i, pick]).backward()
                opt.step()
        seconds.put(time.perf_counter() - t0)
        done.wait()


def measure(nodes: int, processes: int, steps: int, batch: int, rounds: int) -> float:
    ctx = mp.get_context("spawn")
    start, done = ctx.Barrier(processes + 1), ctx.Barrier(processes + 1)
    seconds = ctx.Queue()
    share = [nodes // processes + (p < nodes % processes) for p in range(processes)]
    procs = [ctx.Process(target=_worker, args=(n, steps, batch, rounds + 1, start, done, seconds)) for n in share]
    for p in procs:
        p.start()
    per_round = []
    for r in range(rounds + 1):  # the first round warms up
        start.wait()
        t0 = time.perf_counter()
        for _ in procs:
            seconds.get()
        elapsed = time.perf_counter() - t0
        done.wait()
        if r:
            per_round.append(elapsed)
    for p in procs:
        p.join()
    return statistics.median(per_round)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="16")
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"plain PyTorch LeNet training, {args.steps} steps of {args.batch} images per node and round; "
          f"median of {args.rounds} rounds")
    print(f"{'N':>4} {'processes':>9} {'s/round':>8} {'ms/step':>8}")
    for n in (int(x) for x in args.nodes.split(",")):
        for p in (int(x) for x in args.processes.split(",")):
            s = measure(n, p, args.steps, args.batch, args.rounds)
            busy = min(p, os.cpu_count() or 1)
            print(f"{n:>4} {p:>9} {s:8.3f} {1e3 * s * busy / (n * args.steps):8.2f}", flush=True)
    print("ms/step: seconds per round x busy cores / steps (the cost of one step on one core)")


if __name__ == "__main__":
    main()

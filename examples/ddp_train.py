"""Train any spec with DistributedDataParallel on synthetic data, for a few steps.

Run under torchrun; gloo on CPU, NCCL when CUDA is available::

    torchrun --nproc_per_node 2 examples/ddp_train.py resnet18 --set num_classes=10 \\
        --set resolution=64 --steps 20
    torchrun --nproc_per_node 4 examples/ddp_train.py my_net.arch --batch-size 16

SPEC is a spec file or a bundled spec's name. Each process draws its own random images
and labels (shapes from the spec); DDP averages the gradients, so every process ends
with the same weights, which the script verifies before it exits. Without torchrun it
runs as a single process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import archdsl


def build(spec: str, params: dict[str, object], device: torch.device) -> torch.nn.Module:
    graph = (
        archdsl.check_file(spec, params=params)
        if os.path.isfile(spec)
        else archdsl.load_graph(spec, params=params)
    )
    return archdsl.build(graph).to(device)


def parse_sets(items: Sequence[str]) -> dict[str, object]:
    """``["num_classes=10"]`` -> ``{"num_classes": 10}``, values in the spec language."""
    params = {}
    for item in items:
        name, _, value = item.partition("=")
        params[name.strip()] = archdsl.parse_value(value.strip())
    return params


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="a spec file or a bundled spec's name")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a network parameter (repeatable)",
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8, help="per process")
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args(argv)

    for var, default in (
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29511"),
    ):
        os.environ.setdefault(var, default)  # a single process without torchrun
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    try:
        torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts them)
        model = build(args.spec, parse_sets(args.set), device)
        graph = model.archdsl_graph
        classes = graph.output_shape[0]
        ddp = DistributedDataParallel(model, device_ids=[local_rank] if cuda else None)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9)
        generator = torch.Generator(device="cpu").manual_seed(1000 + rank)  # own data per rank
        if rank == 0:
            print(
                f"{graph.name}: {archdsl.count_params(graph):,} parameters, {world} "
                f"process(es), backend {dist.get_backend()}, device {device.type}"
            )
        start = time.perf_counter()
        for step in range(1, args.steps + 1):
            x = torch.randn(args.batch_size, *graph.input_shape, generator=generator).to(device)
            y = torch.randint(0, classes, (args.batch_size,), generator=generator).to(device)
            out = ddp(x)
            logits = out[0] if isinstance(out, tuple) else out  # side outputs in training
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            mean = loss.detach().clone()
            dist.all_reduce(mean)
            if rank == 0:
                print(
                    f"step {step:4d}/{args.steps}  loss {mean.item() / world:.4f}  "
                    f"{time.perf_counter() - start:.1f}s",
                    flush=True,
                )
        # DDP's promise: all replicas hold the same weights after every step.
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        low, high = flat.clone(), flat.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        drift = (high - low).abs().max().item()
        if rank == 0:
            print(f"weights in sync across {world} process(es): max difference {drift:.3g}")
        return 0 if drift < 1e-5 else 1
    finally:
        # Every rank finishes its collectives before any tears gloo down; otherwise a rank
        # that exits first can abort the other ("terminate called without an active
        # exception").
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    code = main()
    # The process group is destroyed; leave without running C++ static destructors: with
    # gloo, about one exit in twenty otherwise aborts in them ("terminate called without an
    # active exception") after all work is done, and torchrun reports the run as failed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

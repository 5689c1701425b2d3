"""archdsl against torchvision on a GPU, side by side in one process: see bench/README.md.

    python bench/gpu.py                          # on a machine with CUDA (about 5 minutes)
    python bench/gpu.py --device cpu --quick     # a smoke run of this script, anywhere

For each network and mode (fp32, channels_last, autocast bf16 and fp16 with channels_last,
and archdsl's optimize_for_inference under bf16) both sides run on the same input with the
same weights: the table gives their outputs' largest difference relative to the largest
output, then interleaved timings (A B B A ..., each run synchronised), medians and the
median of the per-round ratios (archdsl / torchvision). Then a bf16 training step and
torch.compile of both. Prints Markdown (for docs/performance.md) and writes the raw
timings to --json.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

import archdsl
import measure
from measure import (
    SIZE_HELP,
    both,
    input_shape,
    interleaved,
    machine,
    pair,
    run_sections,
    table,
    torchvision_models,
)

NETWORKS = ("resnet50", "densenet121", "efficientnet_b0", "googlenet")
BATCHES = (1, 64)


def synchronised(device: torch.device, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn``, returning only once the device has finished its work (for timing)."""
    if device.type != "cuda":
        return fn

    def run() -> Any:
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


@contextlib.contextmanager
def mode(name: str, device: torch.device) -> Iterator[None]:
    """The autocast a mode runs under (none for the fp32 modes)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name.split()[-1])
    if dtype is None:
        yield
    else:
        with torch.autocast(device.type, dtype=dtype):
            yield


MODES = ("fp32", "channels_last fp32", "channels_last bf16", "channels_last fp16")


def side_by_side(
    device: torch.device,
    a: Callable[[torch.Tensor], Any],
    b: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    reps: int,
) -> dict[str, Any]:
    """``a(x)`` against ``b(x)``, interleaved, each run synchronised."""
    return interleaved(
        synchronised(device, functools.partial(a, x)),
        synchronised(device, functools.partial(b, x)),
        reps,
    )


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def inference(
    tvm: Any, nets: tuple[str, ...], device: torch.device, reps: int, batches: tuple[int, ...]
) -> tuple[str, dict[str, Any]]:
    rows, raw = [], {}
    for name in nets:
        tv, ad = pair(tvm, name)
        tv, ad = tv.to(device).eval(), ad.to(device).eval()
        shape = input_shape(name)
        for m in MODES:
            layout = (
                torch.channels_last if m.startswith("channels_last") else torch.contiguous_format
            )
            tv, ad = tv.to(memory_format=layout), ad.to(memory_format=layout)
            for batch in batches:
                x = torch.randn(batch, *shape, device=device).to(memory_format=layout)
                with torch.no_grad(), mode(m, device):
                    diff = relative_difference(ad(x), tv(x))
                    r = side_by_side(device, ad, tv, x, reps)
                raw[f"{name} {m} b{batch}"] = {**r, "rel_diff": diff}
                rows.append(
                    [
                        name,
                        m,
                        str(batch),
                        f"{diff:.1e}",
                        both(r, "b"),
                        both(r, "a"),
                        f"{r['ratio']:.3f}",
                    ]
                )
        fast = archdsl.optimize_for_inference(ad)
        for batch in batches:
            x = torch.randn(batch, *shape, device=device).to(memory_format=torch.channels_last)
            with torch.no_grad(), mode("bf16", device):
                diff = relative_difference(fast(x), tv(x))
                r = side_by_side(device, fast, tv, x, reps)
            raw[f"{name} optimised bf16 b{batch}"] = {**r, "rel_diff": diff}
            rows.append(
                [
                    name,
                    "optimize_for_inference, channels_last bf16",
                    str(batch),
                    f"{diff:.1e}",
                    both(r, "b"),
                    both(r, "a"),
                    f"{r['ratio']:.3f}",
                ]
            )
    header = [
        "network",
        "mode",
        "batch",
        "outputs differ by",
        "torchvision ms",
        "archdsl ms",
        "ratio",
    ]
    return table(header, rows), raw


def _train_step(model: nn.Module, x: torch.Tensor, device: torch.device) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    target = torch.zeros(x.shape[0], dtype=torch.long, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with mode("bf16", device):
            out = model(x)
            out = out[0] if isinstance(out, tuple) else out
            loss = nn.functional.cross_entropy(out, target)
        loss.backward()
        opt.step()

    return synchronised(device, step)


def channels_last_pair(
    tvm: Any, name: str, device: torch.device, batch: int
) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """torchvision's network and archdsl's with the same weights, and an input, all on
    ``device`` and channels_last."""
    tv, ad = (m.to(device).to(memory_format=torch.channels_last) for m in pair(tvm, name))
    x = torch.randn(batch, *input_shape(name), device=device)
    return tv, ad, x.to(memory_format=torch.channels_last)


def training(
    tvm: Any, nets: tuple[str, ...], device: torch.device, reps: int, batch: int
) -> tuple[str, dict[str, Any]]:
    rows, raw = [], {}
    for name in nets:
        tv, ad, x = channels_last_pair(tvm, name, device, batch)
        tv.train()
        ad.train()
        r = interleaved(_train_step(ad, x, device), _train_step(tv, x, device), reps)
        raw[f"{name} train bf16 b{batch}"] = r
        rows.append([name, str(batch), both(r, "b"), both(r, "a"), f"{r['ratio']:.3f}"])
    header = ["network (bf16, channels_last)", "batch", "torchvision ms", "archdsl ms", "ratio"]
    return table(header, rows), raw


def compiled(
    tvm: Any, nets: tuple[str, ...], device: torch.device, reps: int, batch: int
) -> tuple[str, dict[str, Any]]:
    rows, raw = [], {}
    for name in nets:
        tv, ad, x = channels_last_pair(tvm, name, device, batch)
        tv.eval()
        ad.eval()
        entry: dict[str, Any] = {}
        with torch.no_grad(), mode("bf16", device):
            torch._dynamo.reset()
            compiled_sides = []
            for side, model in (("torchvision", tv), ("archdsl", ad)):
                start = time.perf_counter()
                c = torch.compile(model)
                c(x)
                entry[f"compile_s_{side}"] = time.perf_counter() - start
                compiled_sides.append(c)
            tv_c, ad_c = compiled_sides
            entry["rel_diff"] = relative_difference(ad_c(x), tv_c(x))
            r = side_by_side(device, ad_c, tv_c, x, reps)
            eager_r = side_by_side(device, ad_c, tv, x, reps)
        entry.update(compiled_vs_compiled=r, compiled_vs_torchvision_eager=eager_r)
        raw[name] = entry
        rows.append(
            [
                name,
                str(batch),
                both(eager_r, "b"),
                both(r, "b"),
                both(r, "a"),
                f"{r['ratio']:.3f}",
                f"{entry['compile_s_torchvision']:.0f} / {entry['compile_s_archdsl']:.0f}",
            ]
        )
        torch._dynamo.reset()
    header = [
        "network (bf16, channels_last)",
        "batch",
        "torchvision eager ms",
        "torchvision compiled ms",
        "archdsl compiled ms",
        "ratio",
        "compile s (tv / archdsl)",
    ]
    return table(header, rows), raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="a smoke run (resnet50 only)")
    parser.add_argument("--networks", nargs="+", help=f"default: {' '.join(NETWORKS)}")
    parser.add_argument("--compile-networks", nargs="+", default=["resnet50"])
    parser.add_argument("--json", default=str(Path(__file__).parent / "results_gpu.json"))
    parser.add_argument("--size", type=int, help=SIZE_HELP)
    args = parser.parse_args(argv)
    measure.INPUT_SIZE = args.size
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; use --device cpu for a smoke run", file=sys.stderr)
        return 2
    nets = tuple(args.networks or (("resnet50",) if args.quick else NETWORKS))
    reps = 3 if args.quick else 21
    batches = (1, 2) if args.quick else BATCHES
    train_batch = 2 if args.quick else 64
    torch.backends.cudnn.benchmark = True  # both sides alike: the fastest algorithm per shape
    tvm = torchvision_models()
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "size": args.size}
    if device.type == "cuda":
        results["machine"]["gpu"] = torch.cuda.get_device_name(device)
        results["machine"]["cuda"] = torch.version.cuda
        results["machine"]["cudnn"] = torch.backends.cudnn.version()
    print("# archdsl on a GPU\n\n```\n" + json.dumps(results["machine"], indent=1) + "\n```")
    runs = [
        ("inference", "Inference", lambda: inference(tvm, nets, device, reps, batches)),
        ("training", "Training step", lambda: training(tvm, nets, device, reps, train_batch)),
        (
            "compiled",
            "torch.compile",
            lambda: compiled(tvm, tuple(args.compile_networks), device, reps, train_batch),
        ),
    ]
    run_sections(runs, results)
    Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print(f"\ntotal {results['total_seconds']:.0f} s; raw timings in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

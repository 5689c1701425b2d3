"""archdsl against torchvision, side by side in one process: see bench/README.md.

    python bench/bench.py            # the full run (about 15 minutes on 2 cores)
    python bench/bench.py --quick    # a smoke run: one network, few repetitions

Prints Markdown tables (the source of docs/performance.md) and adds the raw timings to
bench/results.json under a key named by the run's start ("run_2026-12-07_0142"), the
runs already recorded there kept; --json PATH writes this run alone to PATH instead.

Every comparison interleaves the two sides run by run (A B B A ...), so drift in the
machine's speed hits both; the tables give "median (best)" times, the median of the
per-round ratios (archdsl / torchvision: below 1 is faster) and the ratio of the best
runs, which is what an otherwise idle machine would show.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import archdsl
import measure
from inference import compiled, optimised
from measure import (
    NETWORKS,
    RESULTS,
    ROOT,
    SIZE_HELP,
    THREADS,
    Run,
    add_run,
    both,
    input_shape,
    interleaved,
    machine,
    median_time,
    ms,
    pair,
    run_sections,
    table,
    torchvision_models,
)

# ---- the sections ---------------------------------------------------------------------


def _child_cpu(cmd: list[str]) -> float:
    """CPU seconds (user + system) a command uses: unlike wall time, not inflated by other
    processes competing for the cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def frontend(quick: bool) -> tuple[str, dict[str, Any]]:
    """Parse -> elaborate -> checked IR, per bundled spec; and `archdsl check` wall time."""
    reps = 1 if quick else 9
    rows, raw = [], {}
    for name in archdsl.list_specs():
        try:
            t = median_time(lambda n=name: archdsl.load_graph(n), reps)
        except archdsl.ArchError as e:  # a spec another change broke: say so, go on
            rows.append([name, "error", str(e).splitlines()[0][:60]])
            continue
        graph = archdsl.load_graph(name)
        raw[name] = {"seconds": t, "nodes": len(graph)}
        rows.append([name, f"{len(graph):,}", ms(t)])
    # the console script beside this interpreter (not a version manager's shim, if any)
    exe = Path(sys.executable).parent / "archdsl"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "archdsl_cli.main"]
    spec = str(ROOT / "specs" / "resnet50.arch")
    wall = median_time(
        lambda: subprocess.run([*cmd, "check", spec], check=True, capture_output=True), reps
    )
    bare = median_time(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), reps)
    imports = median_time(
        lambda: subprocess.run([sys.executable, "-c", "import archdsl_cli.main"], check=True),
        reps,
    )
    cpu = statistics.median(_child_cpu([*cmd, "check", spec]) for _ in range(reps))
    raw["cli_check_resnet50_wall"] = wall
    raw["cli_check_resnet50_cpu"] = cpu
    raw["python_startup"] = bare
    raw["python_import_archdsl_cli"] = imports
    text = table(["spec", "IR nodes", "frontend ms (median)"], rows)
    text += (
        f"\n\n`archdsl check specs/resnet50.arch`: **{ms(wall)} ms** wall, {ms(cpu)} ms CPU"
        f" (user + system; medians of {reps});"
        f" of which Python start-up {ms(bare)} ms, importing archdsl's CLI {ms(imports - bare)}"
        " ms."
    )
    return text, raw


def construction(tvm: Any, nets: tuple[str, ...], quick: bool) -> tuple[str, dict[str, Any]]:
    """Module construction (with random init) vs the torchvision constructor; and loading
    a state_dict file (meta build + assign) vs reading the file alone."""
    reps = 3 if quick else 7
    rows, raw = [], {}
    tmp = Path(tempfile.mkdtemp())
    for name in nets:
        graph = archdsl.load_graph(name)
        r = interleaved(lambda g=graph: archdsl.build(g), getattr(tvm, name), reps)
        t_front = median_time(lambda n=name: archdsl.load_graph(n), reps)
        path = tmp / f"{name}.pth"
        torch.save(getattr(tvm, name)().state_dict(), path)
        t_read = median_time(lambda p=path: torch.load(p, weights_only=True, mmap=True), reps)
        t_read_all = median_time(lambda p=path: torch.load(p, weights_only=True), reps)
        t_weights = median_time(lambda n=name, p=path: archdsl.load(n, weights=p), reps)

        def tv_load(n: str = name, p: Path = path) -> None:
            getattr(tvm, n)().load_state_dict(torch.load(p, weights_only=True))

        t_tv_load = median_time(tv_load, reps)
        raw[name] = {
            "build": r,
            "frontend": t_front,
            "read_mmap": t_read,
            "read": t_read_all,
            "archdsl_load_weights": t_weights,
            "torchvision_construct_and_load": t_tv_load,
        }
        rows.append(
            [
                name,
                both(r, "b"),
                both(r, "a"),
                f"{r['ratio']:.2f} ({r['best_ratio']:.2f})",
                ms(t_front + r["a"]),
                ms(t_read_all),
                ms(t_weights),
                ms(t_tv_load),
            ]
        )
    shutil.rmtree(tmp, ignore_errors=True)
    header = [
        "network",
        "torchvision ctor ms",
        "archdsl build ms",
        "ratio",
        "archdsl frontend+build ms",
        "torch.load ms",
        "archdsl load(weights=) ms",
        "torchvision ctor + load_state_dict ms",
    ]
    return table(header, rows), raw


def _train_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    target = torch.zeros(x.shape[0], dtype=torch.long)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        nn.functional.cross_entropy(out, target).backward()
        opt.step()

    return step


def eager(tvm: Any, nets: tuple[str, ...], quick: bool) -> tuple[str, dict[str, Any]]:
    """Eager forward (eval, no_grad) at batch 1 and 8, and a training step at batch 8;
    and a batch-1 forward at 32x32, where Python's share of the time (module calls) shows.
    Many rounds: the target is 2%, and a shared 2-core VM drifts by more than that."""
    reps = {"forward b1": 31, "forward b1 32x32": 101, "forward b8": 15, "train step b8": 15}
    rows, raw = [], {}
    for name in nets:
        tv, ad = pair(tvm, name)
        res = input_shape(name)
        small = (res[0], 32, 32)
        for what, batch, size in (
            ("forward b1", 1, res),
            ("forward b1 32x32", 1, small),
            ("forward b8", 8, res),
            ("train step b8", 8, res),
        ):
            x = torch.randn(batch, *size)
            if what.startswith("train"):
                tv.train()
                ad.train()
                r = interleaved(_train_step(ad, x), _train_step(tv, x), 3 if quick else reps[what])
            else:
                tv.eval()
                ad.eval()
                with torch.no_grad():
                    r = interleaved(
                        lambda m=ad, x=x: m(x), lambda m=tv, x=x: m(x), 3 if quick else reps[what]
                    )
            raw[f"{name} {what}"] = r
            rows.append(
                [
                    name,
                    what,
                    both(r, "b"),
                    both(r, "a"),
                    f"{r['ratio']:.3f}",
                    f"{r['best_ratio']:.3f}",
                ]
            )
        del tv, ad
    header = ["network", "run", "torchvision ms", "archdsl ms", "ratio", "ratio of best"]
    return table(header, rows), raw


# Recomputed in the backward pass by each network's grad_checkpointing paths: the blocks
# of its stages (densenet121's dense layers are what torchvision's memory_efficient takes).
RECOMPUTED = {
    "resnet18": ("layer*.*",),  # tests/test_bench.py's quick run
    "resnet50": ("layer*.*",),
    "densenet121": ("features.denseblock*.denselayer*",),
    "efficientnet_b0": ("features.[1-7].*",),
    "googlenet": ("inception*",),
}


def saved_for_backward(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``model(x)`` (each
    save counted, as ``saved_tensors_hooks`` sees them), the forward's output dropped."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return total


def training_memory(tvm: Any, nets: tuple[str, ...], quick: bool) -> tuple[str, dict[str, Any]]:
    """A training step at batch 8 with :func:`archdsl.grad_checkpointing` of each network's
    blocks, against the same network without it: what autograd keeps, and the step's time
    (interleaved). densenet121 also against torchvision's ``memory_efficient=True``."""
    reps = 3 if quick else 9
    rows, raw = [], {}
    for name in nets:
        if name not in RECOMPUTED:
            continue
        tv, plain = pair(tvm, name)
        recomputing = archdsl.load(name)
        recomputing.load_state_dict(plain.state_dict())
        paths = archdsl.grad_checkpointing(recomputing, *RECOMPUTED[name])
        x = torch.randn(8, *input_shape(name))
        sides = {"archdsl": plain.train(), "archdsl recomputing": recomputing.train()}
        if name == "densenet121":
            torch.manual_seed(0)
            efficient = tvm.densenet121(memory_efficient=True).train()
            sides["torchvision memory_efficient"] = efficient
        kept = {side: saved_for_backward(m, x) for side, m in sides.items()}
        r = interleaved(_train_step(recomputing, x), _train_step(plain, x), reps)
        entry = {"recomputed": len(paths), "saved_bytes": kept, "step": r}
        row = [
            name,
            f"{len(paths)}",
            f"{kept['archdsl'] / 2**20:,.0f}",
            f"{kept['archdsl recomputing'] / 2**20:,.0f}",
            both(r, "b"),
            both(r, "a"),
            f"{r['ratio']:.2f}",
        ]
        if "torchvision memory_efficient" in sides:
            e = interleaved(_train_step(recomputing, x), _train_step(efficient, x), reps)
            entry["vs_memory_efficient"] = e
            row.append(
                f"{kept['torchvision memory_efficient'] / 2**20:,.0f} MB, "
                f"{both(e, 'b')} ms; archdsl recomputing / it {e['ratio']:.2f}"
            )
        else:
            row.append("")
        raw[name] = entry
        rows.append(row)
        del tv, plain, recomputing, sides
    header = [
        "network (train, b8)",
        "modules recomputed",
        "kept MB",
        "kept MB recomputing",
        "step ms",
        "step ms recomputing",
        "time ratio",
        "torchvision memory_efficient",
    ]
    return table(header, rows), raw


def generated_spec(units: int) -> str:
    """A spec whose text grows with its size: ``units`` residual units written out one by
    one (7 IR nodes each: conv, bn, relu, conv, bn, add, relu), after a stem."""
    lines = [
        "block unit(c) {",
        "  add { (conv1: conv(c, 3, padding=1, bias=false) -> bn1: bn -> relu",
        "         -> conv2: conv(c, 3, padding=1, bias=false) -> bn2: bn); () }",
        "  -> relu",
        "}",
        "network generated {",
        "  input [3, 16, 16]",
        "  stem: conv(8, 3, padding=1)",
    ]
    lines += [f"  -> u{i}: unit(8)" for i in range(units)]
    lines += ["  -> pool: global_avgpool(flatten=true) -> fc: linear(10)", "}"]
    return "\n".join(lines) + "\n"


def scaling(quick: bool) -> tuple[str, dict[str, Any]]:
    """Frontend and build time against spec size, 10 to 10,000 layers; the frontend alone
    for chains of up to 100,000."""
    sizes = (1, 16, 166, 1666) if not quick else (1, 16, 166)  # about 10 ... 10,000 layers
    rows, raw = [], {}
    for units in sizes:
        text = generated_spec(units)
        reps = 5 if units < 1000 else 2
        t_front = median_time(lambda t=text: archdsl.check(t), reps)
        graph = archdsl.check(text)
        t_build = median_time(lambda g=graph: archdsl.build(g), reps)
        layers = sum(1 for n in graph.nodes() if n.path is not None)
        raw[str(layers)] = {"frontend": t_front, "build": t_build, "nodes": len(graph)}
        rows.append(
            [
                f"{layers:,}",
                f"{len(text):,}",
                ms(t_front),
                f"{t_front / layers * 1e6:.0f}",
                ms(t_build),
                f"{t_build / layers * 1e6:.0f}",
            ]
        )
    header = ["layers", "spec bytes", "frontend ms", "µs/layer", "build ms", "µs/layer"]
    text = table(header, rows)
    # the largest spec the limits admit: a chain of 100,000 layers in ~800 kB
    # (tests/test_limits.py::test_a_spec_within_the_limits_checks_quickly)
    chain_rows = []
    for n in (1_000, 10_000) if quick else (1_000, 10_000, 100_000):
        chain = "network n { input [3, 8, 8]; " + " -> ".join(["relu"] * n) + " }"
        t = median_time(lambda c=chain: archdsl.check(c), 3 if n < 100_000 else 1)
        raw[f"relu_chain_{n}"] = {"frontend": t, "bytes": len(chain)}
        chain_rows.append([f"{n:,}", f"{len(chain):,}", ms(t), f"{t / n * 1e6:.0f}"])
    text += "\n\nA chain of ReLUs on one line (check only):\n\n"
    text += table(["layers", "spec bytes", "frontend ms", "µs/layer"], chain_rows)
    return text, raw


# An input every network takes (inception_v3 needs 75 pixels or more).
SWEEP_SIZE = 64
SWEEP_SIZES = {"inception_v3": 80}


def every_network(tvm: Any, quick: bool) -> tuple[str, dict[str, Any]]:
    """Every bundled network torchvision also builds, against torchvision's with the same
    weights: whether the outputs are the same bits, and an eval forward at batch 2 on a
    small input, interleaved (9 rounds of 3 calls: a sweep for a family far behind, noisier
    than the eager section's rounds)."""
    names = [n for n in archdsl.list_specs() if hasattr(tvm, n)]
    rows, raw = [], {}
    for name in ("resnet18",) if quick else names:
        tv, ad = pair(tvm, name)
        tv.eval()
        ad.eval()
        size = SWEEP_SIZES.get(name, SWEEP_SIZE)
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            want, got = tv(x), ad(x)
            r = interleaved(
                lambda m=ad, x=x: [m(x) for _ in range(3)],
                lambda m=tv, x=x: [m(x) for _ in range(3)],
                3 if quick else 9,
            )
        diff = ((got - want).abs().max() / want.abs().max()).item()
        raw[name] = {**r, "identical": torch.equal(got, want), "max_rel_diff": diff}
        same = "identical" if torch.equal(got, want) else f"{diff:.1e} apart"
        rows.append([name, both(r, "b"), both(r, "a"), f"{r['ratio']:.3f}", same])
        del tv, ad
    header = ["network", "torchvision ms", "archdsl ms", "ratio", "outputs"]
    return table(header, rows), raw


SECTIONS = (
    "frontend",
    "construction",
    "eager",
    "training_memory",
    "optimised",
    "compiled",
    "scaling",
    "every",
)
# Run only when asked for (--only every; --quick runs it on resnet18): all 68 networks
# take about 6 minutes.
OPT_IN = frozenset({"every"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (resnet50 only)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run these sections")
    parser.add_argument("--networks", nargs="+", help=f"default: {' '.join(NETWORKS)}")
    parser.add_argument(
        "--compile-networks",
        nargs="+",
        help="default: the --networks (resnet50 alone with --quick)",
    )
    parser.add_argument(
        "--json",
        help="write this run alone to JSON (default: add it to "
        "bench/results.json under a key named by its start)",
    )
    parser.add_argument(
        "--keep-memory",
        action="store_true",
        help="glibc keeps freed memory for reuse (archdsl.keep_freed_memory)",
    )
    parser.add_argument("--size", type=int, help=SIZE_HELP)
    args = parser.parse_args(argv)
    measure.INPUT_SIZE = args.size
    started = time.time()
    kept = archdsl.keep_freed_memory() if args.keep_memory else False
    torch.set_num_threads(THREADS)
    nets = tuple(args.networks or (("resnet50",) if args.quick else NETWORKS))
    nets = tuple(n for n in nets if n in archdsl.list_specs())
    only = set(args.only or (SECTIONS if args.quick else set(SECTIONS) - OPT_IN))
    tvm = torchvision_models()
    results: dict[str, Any] = {
        "machine": {**machine(), "keep_memory": kept},
        "quick": args.quick,
        "size": args.size,
    }
    print("# archdsl benchmark\n\n```\n" + json.dumps(results["machine"], indent=1) + "\n```")
    runs: list[Run] = [
        ("frontend", "Frontend", lambda: frontend(args.quick)),
        ("construction", "Construction", lambda: construction(tvm, nets, args.quick)),
        ("eager", "Eager", lambda: eager(tvm, nets, args.quick)),
        ("training_memory", "Training memory", lambda: training_memory(tvm, nets, args.quick)),
        ("optimised", "Optimised inference", lambda: optimised(tvm, nets, args.quick)),
        (
            "compiled",
            "torch.compile",
            lambda: compiled(tvm, tuple(args.compile_networks or nets), args.quick),
        ),
        ("scaling", "Scaling", lambda: scaling(args.quick)),
        ("every", "Every torchvision network", lambda: every_network(tvm, args.quick)),
    ]
    run_sections([r for r in runs if r[0] in only], results)
    if args.json:
        path = Path(args.json)
        path.write_text(json.dumps(results, indent=1, default=str))
    else:
        path = RESULTS
        add_run(path, time.strftime("run_%Y-%m-%d_%H%M", time.localtime(started)), results)
    print(f"\ntotal {results['total_seconds']:.0f} s; raw timings in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmark's sections share: the networks compared, timing side by side
(interleaved runs, medians, ratios), the machine's description, tables, and the harness
that runs sections and records their raw timings (bench/README.md)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

import archdsl

THREADS = 2
NETWORKS = ("resnet50", "densenet121", "efficientnet_b0", "googlenet")
ROOT = Path(__file__).resolve().parent.parent


def torchvision_models() -> Any:
    """torchvision's model definitions. Its compiled ops are built for CUDA and fail to
    register against this CPU torch; the models themselves are pure Python, so the module
    that registers the ops is stubbed out before the import (here only, never in archdsl)."""
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    import torchvision.models

    return torchvision.models


SIZE_HELP = "height and width of every input (default: each spec's); for smoke runs"
INPUT_SIZE: int | None = None
"""``--size``: the height and width of every input, in place of each spec's own (a smoke
run's small inputs); None for the spec's."""


def input_shape(name: str) -> tuple[int, ...]:
    """The per-sample input shape the benchmark feeds network ``name``: its spec's, or
    ``[C, INPUT_SIZE, INPUT_SIZE]`` under ``--size``."""
    shape = archdsl.load_graph(name).input_shape
    return shape if INPUT_SIZE is None else (shape[0], INPUT_SIZE, INPUT_SIZE)


def pair(tvm: Any, name: str) -> tuple[nn.Module, nn.Module]:
    """torchvision's network and archdsl's, with the same weights."""
    torch.manual_seed(0)
    tv = getattr(tvm, name)()
    ad = archdsl.load(name)
    ad.load_state_dict(tv.state_dict())
    return tv, ad


# ---- timing -------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    a: Callable[[], Any], b: Callable[[], Any], reps: int, warmup: int = 1
) -> dict[str, Any]:
    """Run ``a`` and ``b`` alternately (ABBA order), after ``warmup`` runs of each."""
    for _ in range(warmup):
        a()
        b()
    ta: list[float] = []
    tb: list[float] = []
    for i in range(reps):
        if i % 2 == 0:
            ta.append(timed(a))
            tb.append(timed(b))
        else:
            tb.append(timed(b))
            ta.append(timed(a))
    return {
        "a": statistics.median(ta),
        "b": statistics.median(tb),
        "ratio": statistics.median(x / y for x, y in zip(ta, tb)),
        "a_best": min(ta),
        "b_best": min(tb),
        "best_ratio": min(ta) / min(tb),
        "a_runs": ta,
        "b_runs": tb,
    }


def median_time(fn: Callable[[], Any], reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn) for _ in range(reps))


def both(r: dict[str, Any], side: str) -> str:
    """``median (best)`` of one side of an interleaved comparison, in ms."""
    return f"{ms(r[side])} ({ms(r[side + '_best'])})"


def ms(t: float) -> str:
    return f"{t * 1000:,.1f}" if t < 10 else f"{t * 1000:,.0f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ---- the machine ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "isa": torch.backends.cpu.get_cpu_capability(),
        "loadavg_at_start": os.getloadavg(),
    }
    for pkg in ("torchvision", "onnxruntime", "onnx"):
        with contextlib.suppress(Exception):
            info[pkg] = __import__(pkg).__version__
    return info


def faults_per_call(fn: Callable[[], Any], calls: int = 3) -> float:
    """Minor page faults per call of ``fn`` (most are first touches of memory the OS
    handed out, zeroed), after one call to warm up."""
    fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# ---- running sections ---------------------------------------------------------------


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    start = time.perf_counter()
    print(f"\n## {title}\n", flush=True)
    yield
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n({time.perf_counter() - start:.0f} s; load average after: {load})", flush=True)


RESULTS = Path(__file__).parent / "results.json"


def add_run(path: Path, key: str, results: dict[str, Any]) -> None:
    """Add one run's ``results`` to the JSON record at ``path`` under ``key``, keeping
    the runs already there (a second run in the same minute gets a suffix)."""
    record = json.loads(path.read_text()) if path.exists() else {}
    name, n = key, 1
    while name in record:
        n += 1
        name = f"{key}_{n}"
    record[name] = results
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")


Run = tuple[str, str, Callable[[], tuple[str, dict[str, Any]]]]


def run_sections(runs: list[Run], results: dict[str, Any]) -> None:
    """Run each section (key, title, run), printing its table and putting its raw timings
    in ``results`` under its key."""
    start = time.perf_counter()
    for key, title, run in runs:
        with section(title):
            text, raw = run()
            print(text, flush=True)
            results[key] = raw
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["total_seconds"] = time.perf_counter() - start

"""The benchmark's inference sections: ``archdsl.optimize_for_inference`` against
torchvision eager and onnxruntime, and torch.compile of both networks with archdsl's
fastest path (``archdsl.compile_for_inference``) against onnxruntime."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

import archdsl
from measure import (
    THREADS,
    both,
    faults_per_call,
    have,
    input_shape,
    interleaved,
    pair,
    table,
)


def _onnx_session(model: nn.Module, x: torch.Tensor, path: Path) -> Callable[[], Any]:
    import onnxruntime as ort

    archdsl.export(model, path, example=x)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    # Idle onnxruntime threads spin by default, taking the cores from torch's runs that
    # alternate with them; without spinning both sides get the machine to themselves.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


def optimised(tvm: Any, nets: tuple[str, ...], quick: bool) -> tuple[str, dict[str, Any]]:
    """archdsl.optimize_for_inference vs torchvision eager, and vs onnxruntime running the
    ONNX export of the same optimised network (batch 8 and 1, no torch.compile)."""
    reps = 3 if quick else 5
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in nets:
            for batch, entry, row in _optimised_one(tvm, name, reps, Path(tmp)):
                raw[f"{name} b{batch}"] = entry
                rows.append(row)
    header = [
        "network",
        "batch",
        "torchvision eager ms",
        "archdsl optimised ms",
        "speed-up",
        "speed-up of best",
        "onnxruntime ms",
        "optimised / onnxruntime",
        "of best",
        "page faults per forward (tv / optimised / ort)",
    ]
    return table(header, rows), raw


def _optimised_one(tvm: Any, name: str, reps: int, tmp: Path) -> Iterator[tuple[int, dict, list]]:
    tv, ad = pair(tvm, name)
    tv.eval()
    fast = archdsl.optimize_for_inference(ad)
    res = input_shape(name)
    for batch in (8, 1):
        x = torch.randn(batch, *res)
        with torch.no_grad():
            expected = tv(x)
            err = float((fast(x) - expected).abs().max() / expected.abs().max())
            r = interleaved(lambda x=x: fast(x), lambda x=x: tv(x), reps)
            row = [
                name,
                str(batch),
                both(r, "b"),
                both(r, "a"),
                f"{1 / r['ratio']:.2f}x",
                f"{1 / r['best_ratio']:.2f}x",
            ]
            entry: dict[str, Any] = {"vs_torchvision": r, "rel_error": err}
            faults = [faults_per_call(lambda x=x: tv(x)), faults_per_call(lambda x=x: fast(x))]
            if have("onnxruntime") and have("onnxscript"):
                ort_run = _onnx_session(fast, x, tmp / f"{name}_{batch}.onnx")
                o = interleaved(lambda x=x: fast(x), ort_run, reps)
                entry["vs_onnxruntime"] = o
                faults.append(faults_per_call(ort_run))
                row += [both(o, "b"), f"{o['ratio']:.2f}", f"{o['best_ratio']:.2f}"]
            else:
                row += ["n/a", "n/a", "n/a"]
            entry["faults_per_forward"] = faults
            row.append(" / ".join(f"{f:,.0f}" for f in faults))
        yield batch, entry, row


def compiled(tvm: Any, nets: tuple[str, ...], quick: bool) -> tuple[str, dict[str, Any]]:
    """torch.compile (inductor) of torchvision's network and of archdsl's, plus archdsl's
    fastest path (:func:`archdsl.compile_for_inference`); and onnxruntime on the ONNX
    export for reference. Batch 8 (the fastest path against onnxruntime at batch 1 too),
    eval, no_grad."""
    reps = 3 if quick else 7
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in nets:
            entry = _compiled_one(tvm, name, reps, Path(tmp))
            raw[name] = entry
            f, r = entry["frozen_vs_torchvision_eager"], entry["compiled_vs_compiled"]
            o = entry.get("frozen_vs_onnxruntime")
            o1 = entry.get("frozen_vs_onnxruntime_b1")
            rows.append(
                [
                    name,
                    both(f, "b"),
                    both(r, "b"),
                    both(r, "a"),
                    both(f, "a"),
                    f"{both(o, 'a')} / {both(o, 'b')}" if o else "n/a",
                    f"{o['ratio']:.2f} ({o['best_ratio']:.2f})" if o else "n/a",
                    f"{both(o1, 'a')} / {both(o1, 'b')}" if o1 else "n/a",
                    f"{o1['ratio']:.2f} ({o1['best_ratio']:.2f})" if o1 else "n/a",
                    f"{entry['compile_s_torchvision']:.0f} / {entry['compile_s_archdsl']:.0f}"
                    f" / {entry['compile_s_archdsl_optimised_frozen']:.0f}",
                ]
            )
    header = [
        "network (b8)",
        "torchvision eager ms",
        "torchvision compiled ms",
        "archdsl compiled ms",
        "archdsl optimised + compiled (freezing, cpp_wrapper) ms",
        "the same / onnxruntime, side by side, ms",
        "fastest archdsl / onnxruntime",
        "batch 1: the same / onnxruntime, ms",
        "batch 1: fastest / onnxruntime",
        "compile s (tv / archdsl / frozen)",
    ]
    return table(header, rows), raw


def _frozen() -> bool:
    """Whether the last compilation froze the weights: inductor's freezing passes prepack
    the convolutions' weights (its counters say how many), the plain compile does not."""
    from torch._dynamo.utils import counters

    return counters["inductor"]["mkldnn_conv_weight_pack_matcher_count"] > 0


def _compiled_one(tvm: Any, name: str, reps: int, tmp: Path) -> dict[str, Any]:
    tv, ad = pair(tvm, name)
    tv.eval()
    ad.eval()
    x = torch.randn(8, *input_shape(name))
    entry: dict[str, Any] = {}
    with torch.no_grad():
        torch._dynamo.reset()
        t0 = time.perf_counter()
        tv_c = torch.compile(tv)
        tv_c(x)
        entry["compile_s_torchvision"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ad_c = torch.compile(ad)
        ad_c(x)
        entry["compile_s_archdsl"] = time.perf_counter() - t0
        entry["compiled_vs_compiled"] = interleaved(lambda: ad_c(x), lambda: tv_c(x), reps)
        fast = archdsl.optimize_for_inference(ad)  # onnxruntime runs its ONNX export
        from torch._dynamo.utils import counters

        counters.clear()
        t0 = time.perf_counter()
        fast_c = archdsl.compile_for_inference(ad)
        fast_c(x)
        entry["compile_s_archdsl_optimised_frozen"] = time.perf_counter() - t0
        entry["frozen"] = _frozen()
        if not entry["frozen"]:
            print(
                f"warning: {name}: the optimised network compiled without freezing", file=sys.stderr
            )
        expected = tv(x)
        entry["rel_error_frozen"] = float((fast_c(x) - expected).abs().max() / expected.abs().max())
        entry["frozen_vs_torchvision_eager"] = interleaved(lambda: fast_c(x), lambda: tv(x), reps)
        entry["faults_per_forward_frozen"] = faults_per_call(lambda: fast_c(x))
        entry["frozen_vs_torchvision_compiled"] = interleaved(
            lambda: fast_c(x), lambda: tv_c(x), reps
        )
        if have("onnxruntime") and have("onnxscript"):
            ort_run = _onnx_session(fast, x, tmp / f"{name}.onnx")
            entry["frozen_vs_onnxruntime"] = interleaved(lambda: fast_c(x), ort_run, 2 * reps + 1)
            # batch 1, where what runs around the kernels (guards, calls) weighs more
            x1 = x[:1].clone()
            fast_c(x1)  # compiles for this shape
            ort_one = _onnx_session(fast, x1, tmp / f"{name}_b1.onnx")
            entry["frozen_vs_onnxruntime_b1"] = interleaved(
                lambda: fast_c(x1), ort_one, 4 * reps + 1
            )
        torch._dynamo.reset()
    return entry

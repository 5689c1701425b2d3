"""The benchmark still runs: ``bench/bench.py --quick`` on one small network, every
section, its raw results read back. Nothing is timed here (timings on a shared machine
are noise; docs/performance.md has them). This keeps the script that produces the
performance page working between the runs made by hand, and checks what it checks on the
way: the optimised and the compiled networks give torchvision's outputs, and the fastest
path really froze its weights.

torchvision is installed for this test only (``--no-deps``, README's test command); the
library never imports it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _load_bench():
    # the script imports its sibling modules (measure, inference), as `python bench/bench.py` can
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench", ROOT / "bench" / "bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


BENCH = _load_bench()
# Small inputs: what runs is the same code, at a fraction of the time (bf16 and fp16 on a
# CPU without them in hardware are slow at 224x224).
SMALL = ("--size", "64")
SECTIONS = BENCH.SECTIONS


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    for module in ("torchvision", "onnxruntime", "onnxscript"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the benchmark needs {module}")
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "bench/bench.py",
            "--quick",
            *SMALL,
            "--networks",
            "resnet18",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout + proc.stderr


def test_every_section_runs_and_is_written(quick_run: tuple[dict, str]) -> None:
    results, log = quick_run
    assert results["quick"] is True
    assert [key for key in results if key in SECTIONS] == list(SECTIONS)
    assert "warning" not in log
    for key in SECTIONS:
        assert results[key], key
    for title in ("## Frontend", "## Eager", "## Optimised inference", "## torch.compile"):
        assert title in log


def test_the_frontend_section_times_every_bundled_spec(quick_run: tuple[dict, str]) -> None:
    import archdsl

    results, _ = quick_run
    timed = results["frontend"]
    assert set(archdsl.list_specs()) <= set(timed)


def test_the_compared_networks_agree_with_torchvision(quick_run: tuple[dict, str]) -> None:
    results, _ = quick_run
    for batch in ("b1", "b8"):
        optimised = results["optimised"][f"resnet18 {batch}"]
        assert set(optimised) >= {"vs_torchvision", "vs_onnxruntime", "rel_error"}
        assert 0 <= optimised["rel_error"] < 1e-4
    assert results["every"]["resnet18"]["identical"] is True  # the same bits in float32
    compiled = results["compiled"]["resnet18"]
    assert compiled["frozen"] is True
    assert 0 <= compiled["rel_error_frozen"] < 1e-4
    for pair in ("compiled_vs_compiled", "frozen_vs_onnxruntime", "frozen_vs_onnxruntime_b1"):
        assert compiled[pair]["a"] > 0 and compiled[pair]["b"] > 0


def test_the_gpu_script_runs_on_the_cpu(tmp_path: Path) -> None:
    """bench/gpu.py waits for a lent GPU, with minutes to spend: a bug found there would
    waste them. Its ``--device cpu`` smoke run goes through every section here; the same
    network on both sides gives the same outputs in every mode (bitwise in fp32 and under
    autocast; within bf16's precision after optimize_for_inference folds batch norm)."""
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("the benchmark needs torchvision")
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [
            sys.executable,
            "bench/gpu.py",
            "--device",
            "cpu",
            "--quick",
            *SMALL,
            "--networks",
            "resnet18",
            "--compile-networks",
            "resnet18",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(out.read_text())
    modes = {key.removeprefix("resnet18 ").rsplit(" b", 1)[0] for key in results["inference"]}
    assert modes == {
        "fp32",
        "channels_last fp32",
        "channels_last bf16",
        "channels_last fp16",
        "optimised bf16",
    }
    for key, entry in results["inference"].items():
        assert entry["a"] > 0 and entry["b"] > 0
        assert entry["rel_diff"] < (2e-2 if "optimised" in key else 1e-6), key
    assert results["training"] and results["compiled"]["resnet18"]["rel_diff"] < 1e-4


def test_a_run_is_added_to_the_record_not_written_over_it(tmp_path: Path) -> None:
    record = tmp_path / "results.json"
    record.write_text(json.dumps({"machine": {"cpu": "x"}, "compiled_runs_old": {"a": 1}}))
    BENCH.add_run(record, "run_2026-12-07_0142", {"compiled": {"b": 2}})
    BENCH.add_run(record, "run_2026-12-07_0142", {"compiled": {"b": 3}})
    assert json.loads(record.read_text()) == {
        "machine": {"cpu": "x"},
        "compiled_runs_old": {"a": 1},
        "run_2026-12-07_0142": {"compiled": {"b": 2}},
        "run_2026-12-07_0142_2": {"compiled": {"b": 3}},
    }
    fresh = tmp_path / "fresh.json"
    BENCH.add_run(fresh, "run_1", {"quick": True})
    assert json.loads(fresh.read_text()) == {"run_1": {"quick": True}}

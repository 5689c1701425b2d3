"""What keeps archdsl fast, asserted without timing anything (timings on a shared machine
are noise; docs/performance.md has them): ``check`` imports neither torch nor a graph
library, the grammar is analysed once per machine, checking does work linear in the size
of the spec, and building generates each scope's code once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import archdsl
from archdsl.passes import infer_shapes, verify

# ---- start-up: what `check` imports, the grammar cache --------------------------------------


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_check_imports_neither_torch_nor_networkx_nor_the_analyses() -> None:
    code = (
        "import sys, archdsl\n"
        "graph = archdsl.check_file(archdsl.spec_path('resnet50'))\n"
        "heavy = ('torch', 'networkx', 'archdsl.analysis', 'archdsl.backends')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy"
        " or m.startswith(heavy[2:])))\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_lazy_attributes_are_there() -> None:
    assert callable(archdsl.summary)
    assert "summary" in dir(archdsl)
    with pytest.raises(AttributeError):
        archdsl.no_such_thing  # noqa: B018


def test_the_analysed_grammar_is_cached_in_the_user_cache_folder(tmp_path: Path) -> None:
    code = (
        "import archdsl; print(archdsl.check('network n { input [3, 8, 8]; relu }').output_shape)"
    )
    for _ in range(2):  # the first run writes the cache, the second reads it
        proc = _run(code, XDG_CACHE_HOME=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "(3, 8, 8)"
    (cached,) = (tmp_path / "archdsl").iterdir()
    assert cached.name.endswith(".lark-cache")


def test_an_unusable_cache_folder_only_costs_time(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    code = "import archdsl; print(archdsl.check('network n { input [4]; relu }').output_shape)"
    proc = _run(code, XDG_CACHE_HOME=str(blocked))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(4,)"


# ---- linear work: Python calls counted, not time --------------------------------------------


def generated_spec(units: int) -> str:
    """bench/bench.py's scaling spec: ``units`` residual units written out one per line."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    try:
        from bench import generated_spec as spec
    finally:
        sys.path.pop(0)
    return spec(units)


def steps(fn: Callable[[], Any]) -> int:
    """Python lines executed by ``fn()``: every pass of a loop or comprehension counts, so
    a loop over all nodes inside a loop over all scopes shows as what it is."""
    count = 0

    def trace(frame: object, event: str, arg: object) -> Callable[..., Any]:
        nonlocal count
        count += 1
        return trace

    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


SMALL, LARGE = 20, 80  # units: about 150 and 570 layers


@pytest.mark.parametrize("stage", ["check", "infer_shapes", "verify"])
def test_the_frontend_does_work_linear_in_the_spec(stage: str) -> None:
    def work(units: int) -> int:
        text = generated_spec(units)
        if stage == "check":
            return steps(lambda: archdsl.check(text))
        graph = archdsl.check(text)
        return steps(lambda: (infer_shapes if stage == "infer_shapes" else verify)(graph))

    archdsl.check(generated_spec(1))  # the grammar, loaded once per process
    small, large = work(SMALL), work(LARGE)
    assert large / small < LARGE / SMALL * 1.1, (small, large)


def test_a_long_chain_is_linear_too() -> None:
    def chain(n: int) -> str:
        return "network n { input [3, 8, 8]; " + " -> ".join(["relu"] * n) + " }"

    archdsl.check(chain(1))
    small, large = (
        steps(lambda: archdsl.check(chain(500))),
        steps(lambda: archdsl.check(chain(2000))),
    )
    assert large / small < 4 * 1.1, (small, large)


# ---- building: each scope's code generated once ------------------------------------------------


def test_build_generates_the_code_of_each_distinct_scope_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torch import fx

    import archdsl.backends.fx_scopes  # noqa: F401 - its import makes one probe GraphModule

    graph = archdsl.load_graph("efficientnet_b0")
    generated: Counter[str] = Counter()
    original = fx.graph.CodeGen._gen_python_code

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        code = original(self, *args, **kwargs)
        generated[code.src] += 1
        return code

    monkeypatch.setattr(fx.graph.CodeGen, "_gen_python_code", counting)
    module = archdsl.build(graph)
    scopes = [m for m in module.modules() if isinstance(m, fx.GraphModule)]
    assert len(scopes) == len(graph.scopes) + 1
    assert set(generated.values()) == {1}  # no scope's code twice (it was 554 times for 107)
    assert len(generated) == len({m.code for m in scopes}) < len(scopes)


def test_build_compiles_the_forward_of_each_distinct_scope_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scopes with the same generated code share one compiled ``forward`` (and, with the
    same class name, one class): compiling and exec'ing the source was torch.fx's largest
    fixed cost per scope."""
    from torch import fx
    from torch.fx import graph_module

    graph = archdsl.load_graph("efficientnet_b0")
    compiled: Counter[str] = Counter()
    original = graph_module._forward_from_src

    def counting(src: str, *args: Any, **kwargs: Any) -> Any:
        compiled[src] += 1
        return original(src, *args, **kwargs)

    monkeypatch.setattr(graph_module, "_forward_from_src", counting)
    module = archdsl.build(graph)
    scopes = [m for m in module.modules() if isinstance(m, fx.GraphModule)]
    assert set(compiled.values()) == {1}
    assert len(compiled) == len({m.code for m in scopes}) == len({type(m).forward for m in scopes})
    assert len({type(m) for m in scopes}) == len({(m.code, type(m).__name__) for m in scopes})

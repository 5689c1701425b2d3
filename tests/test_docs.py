"""The docs cannot rot: ops.md is generated, code blocks run, spec blocks check."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

import archdsl
from archdsl import docgen

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks(page: str, language: str) -> list[tuple[str, str]]:
    """(info string, code) of each fenced block in ``language`` on a docs page."""
    text = (DOCS / page).read_text()
    return [(info, code) for info, code in FENCE.findall(text) if info.split()[:1] == [language]]


def _has_dot() -> bool:
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


def test_ci_runs_the_test_command_of_the_readme() -> None:
    """README's second command is what CI runs, verbatim: the last line of .ci/run."""
    root = DOCS.parent
    readme = [
        code
        for info, code in FENCE.findall((root / "README.md").read_text())
        if info == "sh" and "pytest" in code
    ]
    ci = (root / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert readme == [ci + "\n"]


def test_ops_reference_is_generated() -> None:
    assert (DOCS / "ops.md").read_text() == docgen.ops_markdown(), (
        "docs/ops.md is stale: run python -m archdsl.docgen"
    )


def test_ops_reference_covers_every_op() -> None:
    from archdsl.ops.registry import ALL_OPS

    text = docgen.ops_markdown()
    for opdef in ALL_OPS:
        assert f"## `{opdef.name}`" in text
        for param in opdef.params:
            assert f"| `{param.name}` |" in text


def test_docgen_check(tmp_path: Path) -> None:
    out = tmp_path / "ops.md"
    assert docgen.main(["--check", "-o", str(out)]) == 1
    assert docgen.main(["-o", str(out)]) == 0
    assert docgen.main(["--check", "-o", str(out)]) == 0


@pytest.mark.parametrize("page", ["tutorial.md", "api.md"])
def test_python_blocks_run(page: str) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page}"}
    ran = 0
    for info, code in blocks(page, "python"):
        if "no-run" in info.split():
            compile(code, page, "exec")  # still valid Python
            continue
        if "needs-dot" in info.split() and not _has_dot():
            continue
        exec(compile(code, page, "exec"), namespace)  # noqa: S102 - our own docs
        ran += 1
    assert ran > 0


@pytest.mark.parametrize("page", ["tutorial.md", "api.md", "language.md"])
def test_archdsl_blocks_check(page: str) -> None:
    for _, code in blocks(page, "archdsl"):
        archdsl.check(code)


def test_tutorial_covers_its_topics() -> None:
    text = (DOCS / "tutorial.md").read_text()
    for topic in (
        "first spec",
        "custom block",
        "Scaling a family",
        "torchvision weights",
        "Fast inference",
        "grad_checkpointing",
        "Rendering",
    ):
        assert topic.lower() in text.lower()
    assert blocks("tutorial.md", "archdsl")


def test_api_page_names_every_public_function() -> None:
    text = (DOCS / "api.md").read_text()
    missing = [n for n in archdsl.__all__ if not n[0].isupper() and f"{n}(" not in text]
    assert missing == [], f"document these in docs/api.md: {missing}"


# ---- notebooks ------------------------------------------------------------------

TINY = "network tiny { input [3, 8, 8]; c1: conv(4, 3) -> relu }"


@pytest.mark.skipif(not _has_dot(), reason="needs graphviz and dot")
def test_repr_svg_of_graph_and_module() -> None:
    graph = archdsl.check(TINY)
    svg = graph._repr_svg_()
    assert svg is not None and "<svg" in svg and "c1" in svg
    module = archdsl.build(graph)
    assert "<svg" in module._repr_svg_()
    other = archdsl.build(archdsl.check(TINY.replace("c1", "k9")))
    assert "k9" in other._repr_svg_() and "c1" not in other._repr_svg_()


def test_repr_svg_without_graphviz(monkeypatch: pytest.MonkeyPatch) -> None:
    import archdsl.backends.graphviz as gv

    def missing(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("graphviz")

    monkeypatch.setattr(gv, "to_dot", missing)
    assert archdsl.check(TINY)._repr_svg_() is None  # the notebook falls back to text


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.match(r"\d+(?:\.\d+)*", text).group().split("."))


def test_every_accepted_torch_release_tried_has_passed():
    """pyproject.toml's torch range and docs/torch-versions.md agree: the lowest release
    it accepts was tried, and no release tried inside the range failed."""
    import tomllib

    project = tomllib.loads((DOCS.parent / "pyproject.toml").read_text())["project"]
    (torch_req,) = [r for r in project["dependencies"] if r.startswith("torch")]
    lowest, below = (
        _release(v) for v in re.fullmatch(r"torch>=([\d.]+),<([\d.]+)", torch_req).groups()
    )
    rows = re.findall(
        r"^\| (\d+\.\d+\.\d+)\S* \| [^|]+ \| ([^|]+) \|$",
        (DOCS / "torch-versions.md").read_text(),
        re.M,
    )
    tried = {_release(version): result for version, result in rows}
    assert any(v[:2] == lowest[:2] for v in tried), f"torch {lowest} is accepted but not tried"
    inside = {v: r for v, r in tried.items() if lowest <= v < below}
    assert _release(torch.__version__) in inside  # the one this suite runs on
    assert all("passed" in r and "failed" not in r for r in inside.values()), inside
    assert all("failed" in r for v, r in tried.items() if v < lowest)  # why the bound is there


def test_every_subpackage_is_installed():
    """pyproject.toml lists the packages by hand (it renames two folders): a subpackage
    missing from the list would be left out of `pip install .`, README's first command,
    while the editable install the tests run from still finds it."""
    import tomllib

    root = DOCS.parent
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(root).parts)
        for init in (root / "archdsl").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)

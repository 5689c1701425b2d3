"""Golden error messages: every spec in ``tests/bad_specs/`` must fail with its message.

Each case is ``tests/bad_specs/NN_short_name.arch``; its first line names the expected
error class (``# expect: ArchShapeError``) and ``NN_short_name.expected`` holds the exact
``e.render()`` text: ``file:line:col: error: message``, the source line, a caret and the
notes. Files in ``tests/bad_specs/inc/`` are helpers the cases import, not cases.

Specs are checked from the repository root with the relative path
``tests/bad_specs/NN_short_name.arch``, so the paths in the messages are relative too.
The bundled spec folder (absolute, install-dependent) is written as ``<bundled-specs>``
in the golden files.

The ``.expected`` files change only on an explicit accept: run

    ARCHDSL_UPDATE_GOLDEN=1 python -m pytest tests/test_bad_specs.py

to (re)write them from the current messages, then review the diff. Without the variable a
missing or different ``.expected`` file fails the test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import archdsl
from archdsl.elaborate.loader import bundled_spec_root
from archdsl_cli.main import main

ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = Path("tests") / "bad_specs"
CASES = sorted(p.stem for p in (ROOT / CASES_DIR).glob("*.arch"))
UPDATE = os.environ.get("ARCHDSL_UPDATE_GOLDEN") == "1"

_EXPECT = re.compile(r"#\s*expect:\s*(\w+)")
_BUNDLED = "<bundled-specs>"


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def _spec(name: str) -> str:
    return str(CASES_DIR / f"{name}.arch")


def _expected_class(name: str) -> type[archdsl.ArchError]:
    first = (ROOT / _spec(name)).read_text(encoding="utf-8").splitlines()[0]
    m = _EXPECT.match(first)
    assert m, f"{_spec(name)}: the first line must be '# expect: <ArchError subclass>'"
    cls = getattr(archdsl, m.group(1), None)
    assert isinstance(cls, type) and issubclass(cls, archdsl.ArchError), m.group(1)
    return cls


def _normalize(text: str) -> str:
    return text.replace(str(bundled_spec_root()), _BUNDLED)


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30
    names = {name.split("_", 1)[0] for name in CASES}
    assert len(names) == len(CASES), "case numbers must be unique"
    orphans = {p.stem for p in (ROOT / CASES_DIR).glob("*.expected")} - set(CASES)
    assert not orphans, f"expected files without a spec: {sorted(orphans)}"


@pytest.mark.parametrize("name", CASES)
def test_bad_spec_message(name: str) -> None:
    cls = _expected_class(name)
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.check_file(_spec(name))
    err = info.value
    assert type(err) is cls, f"{type(err).__name__}: {err}"
    rendered = _normalize(err.render())
    golden = ROOT / CASES_DIR / f"{name}.expected"
    if UPDATE:
        golden.write_text(rendered + "\n", encoding="utf-8")
    assert golden.is_file(), f"no {golden.name}; run with ARCHDSL_UPDATE_GOLDEN=1 to create it"
    assert rendered == golden.read_text(encoding="utf-8").rstrip("\n")
    # Every message points into a file, at a real line, with the source line and a caret,
    # except a file-wide problem (no network in it), which names the file alone.
    if WHOLE_FILE.get(name):
        assert err.line == 0 and str(err).startswith(f"{err.path}: error: "), str(err)
        return
    assert err.line > 0 and err.column > 0, str(err)
    assert rendered.splitlines()[2].lstrip().startswith("^"), rendered


WHOLE_FILE = {"37_no_network": True}


@pytest.mark.parametrize("name", CASES)
def test_bad_spec_through_cli(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", _spec(name)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    golden = (ROOT / CASES_DIR / f"{name}.expected").read_text(encoding="utf-8")
    assert _normalize(err) == golden

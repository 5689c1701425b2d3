"""Spec files and imports: each file becomes a :class:`SpecModule` of top-level names."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archdsl.elaborate.evaluate import Budget, Env, evaluate
from archdsl.elaborate.values import closest, show
from archdsl.errors import ArchError, ArchImportError, ArchLimitError, ArchNameError, Span
from archdsl.frontend import ast, parse
from archdsl.frontend.parser import MAX_NESTING, MAX_SOURCE_BYTES

MAX_IMPORT_DEPTH = 32


@dataclass(frozen=True)
class BlockRef:
    """A block definition together with the file whose names it sees."""

    defn: ast.BlockDef
    module: SpecModule


@dataclass(frozen=True)
class NetworkRef:
    defn: ast.NetworkDef | ast.NetworkAlias
    module: SpecModule


@dataclass(eq=False)
class SpecModule:
    """The top-level names of one spec file: blocks, networks and constants."""

    path: str
    source: str
    ast: ast.Module
    names: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Span] = field(default_factory=dict)
    local_networks: list[str] = field(default_factory=list)
    env: Env = field(default_factory=lambda: Env({}))

    def define(self, name: str, value: Any, span: Span) -> None:
        if name in self.names and not _same_definition(self.names[name], value):
            first, prev = self.origins[name], self.names[name]
            values = not isinstance(prev, (BlockRef, NetworkRef)) and not isinstance(
                value, (BlockRef, NetworkRef)
            )
            differ = f" as {show(prev)}, here {show(value)}" if values else ""
            message = f"'{name}' is already defined at {first}{differ}"
            raise ArchNameError(message, span, self.source)
        self.names[name] = value
        self.origins[name] = span
        self.env.set(name, value)


def _same_definition(a: Any, b: Any, depth: int = 0) -> bool:
    """Whether a second definition of a name repeats the first: the same block or network
    (a file imported along two paths), or an equal value of the same type, so that
    ``v = 1000`` twice agrees and ``1``, ``1.0`` and ``true`` differ. Lists nested deeper
    than brackets can write count as different."""
    if a is b:
        return True
    if isinstance(a, (BlockRef, NetworkRef)) or isinstance(b, (BlockRef, NetworkRef)):
        return False
    if a.__class__ is not b.__class__:
        return False
    if isinstance(a, tuple):
        return (
            len(a) == len(b)
            and depth < MAX_NESTING
            and all(_same_definition(x, y, depth + 1) for x, y in zip(a, b))
        )
    return a == b  # type: ignore[no-any-return]


def bundled_spec_root() -> Path:
    """The folder of the specs shipped with archdsl (works after a non-editable install)."""
    from importlib import resources

    return Path(str(resources.files("archdsl.specs")))


class Loader:
    """Loads spec files once each, resolving imports relative to the importing file first,
    then along the search path (the bundled spec library last)."""

    def __init__(self, search_path: list[Path] | None = None):
        self.search_path = list(search_path or []) + [bundled_spec_root()]
        self.cache: dict[str, SpecModule] = {}
        self.stack: list[str] = []
        self.budget = Budget()  # the evaluation steps of every file's top-level constants
        # Imports may only read files under these folders: the entry file's folder (set
        # when it is loaded) and the search path. Symlinks are resolved before the check.
        self.roots: list[str] = [os.path.realpath(p) for p in self.search_path]

    def load_file(self, path: str | os.PathLike[str], span: Span | None = None) -> SpecModule:
        real = os.path.realpath(path)
        if real in self.cache:
            return self.cache[real]
        where = span or Span(str(path), 0, 0)
        if real in self.stack:
            cycle = " -> ".join(os.path.basename(p) for p in self.stack[self.stack.index(real) :])
            raise ArchImportError(f"import cycle: {cycle} -> {os.path.basename(real)}", where)
        if len(self.stack) >= MAX_IMPORT_DEPTH:
            raise ArchLimitError(f"imports nested deeper than {MAX_IMPORT_DEPTH}", where)
        try:
            with open(real, encoding="utf-8") as f:
                text = f.read(MAX_SOURCE_BYTES + 1)  # parse() refuses anything longer
        except UnicodeDecodeError as e:
            raise ArchImportError(f"{path} is not UTF-8 text ({e.reason})", where) from None
        except OSError as e:
            raise ArchImportError(f"cannot read {path}: {e.strerror}", where) from None
        if not self.stack and span is None:  # the entry file: its folder is a spec root
            self.roots.insert(0, os.path.dirname(real))  # (and the folder of a link to it)
            self.roots.insert(0, os.path.realpath(os.path.dirname(os.path.abspath(path))))
        return self.load_source(text, str(path), key=real)

    def load_source(self, text: str, path: str = "<string>", key: str | None = None) -> SpecModule:
        key = key or path
        if not self.stack and not path.startswith("<") and key == path:  # check(text, path=P)
            self.roots.insert(0, os.path.realpath(os.path.dirname(os.path.abspath(path))))
        tree = parse(text, path)
        module = SpecModule(path, text, tree, env=Env({}, budget=self.budget))
        self.stack.append(key)
        try:
            self._define_all(module)
        except ArchError as e:
            if e.source is None and e.span.path == path:
                e.source = text
            raise
        finally:
            self.stack.pop()
        self.cache[key] = module
        return module

    def _define_all(self, module: SpecModule) -> None:
        for d in module.ast.defs:
            if isinstance(d, ast.Import):
                imported = self.load_file(self._resolve(d, module), d.span)
                for name, value in imported.names.items():
                    module.define(name, value, d.span)
            elif isinstance(d, ast.BlockDef):
                module.define(d.name, BlockRef(d, module), d.span)
            elif isinstance(d, (ast.NetworkDef, ast.NetworkAlias)):
                module.define(d.name, NetworkRef(d, module), d.span)
                module.local_networks.append(d.name)
            elif isinstance(d, ast.Assign):
                module.define(d.name, evaluate(d.value, module.env), d.span)

    def _resolve(self, imp: ast.Import, module: SpecModule) -> str:
        rel = imp.path
        if not rel or os.path.isabs(rel):
            raise ArchImportError(f'import path must be relative, got "{rel}"', imp.span)
        candidates = []
        if not module.path.startswith("<"):
            candidates.append(Path(module.path).parent / rel)
        else:
            candidates.append(Path.cwd() / rel)
            if os.path.realpath(Path.cwd()) not in self.roots:
                self.roots.insert(0, os.path.realpath(Path.cwd()))
        candidates += [root / rel for root in self.search_path]
        for c in candidates:
            try:
                found = c.is_file()
            except OSError:  # e.g. a name longer than the OS allows
                found = False
            if found:
                real = os.path.realpath(c)
                if not any(
                    real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots
                ):
                    raise ArchImportError(
                        f'import "{rel}" reads {real}, outside the spec roots '
                        f"({', '.join(self.roots)}); add its folder to the search path to allow it",
                        imp.span,
                    )
                return str(c)
        looked = ", ".join(str(c.parent) for c in candidates)
        hint = _closest_spec_file(rel, candidates)
        raise ArchImportError(f'cannot find "{rel}"{hint} (looked in {looked})', imp.span)


def _closest_spec_file(rel: str, candidates: list[Path]) -> str:
    """``"; did you mean 'lib/resnet.arch'?"`` for a missing import ``lib/resnt.arch``: the
    ``.arch`` file whose name is closest, among those in the folders the import looked in;
    names are compared without the folder and the suffix all of them share."""
    stems: set[str] = set()
    for c in candidates:
        try:
            stems.update(
                e.name[: -len(".arch")]
                for e in os.scandir(c.parent)
                if e.name.endswith(".arch") and e.is_file()
            )
        except OSError:  # no such folder, or one we may not read
            continue
    folder, name = os.path.split(rel)
    stem = closest(name.removesuffix(".arch"), sorted(stems))
    if stem is None:
        return ""
    return f"; did you mean '{folder}/{stem}.arch'?" if folder else f"; did you mean '{stem}.arch'?"

"""The commands of the command line (``archdsl check``, ``compile``, ...), each a function
of argparse's namespace returning an exit code, and what they share: reading a SPEC,
``--set`` values, the report, the exit codes. :mod:`archdsl_cli.main` parses the arguments
and turns exceptions into messages and exit codes.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import archdsl
from archdsl.api import check_and_lint
from archdsl.elaborate.evaluate import Env, evaluate
from archdsl.elaborate.values import did_you_mean
from archdsl.frontend import ast, parse
from archdsl.frontend.parser import MAX_SOURCE_BYTES
from archdsl.ir import Graph

EXIT_OK = 0
EXIT_SPEC = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

# -o FILE: the extension picks the format (archdsl.backends.export.FORMATS, which needs torch)
SAVE_EXTENSIONS = {
    ".py": "standalone PyTorch source",
    ".pt2": "torch.export program",
    ".onnx": "ONNX",
    ".pt": "state_dict",
    ".pth": "state_dict",
    ".safetensors": "state_dict, safetensors",
}
STATE_DICT_EXTENSIONS = (".pt", ".pth", ".safetensors")
OPTIMIZE_LEVELS = ("inference",)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_LITERAL_WORDS = ("true", "false", "none")


class UsageError(Exception):
    """A bad command line (exit 2). ``detail`` lines are printed under the message."""

    def __init__(self, message: str, detail: Sequence[str] = ()):
        super().__init__(message)
        self.message = message
        self.detail = list(detail)


class RunError(Exception):
    """A failure that is neither the spec's nor the command line's, e.g. an unwritable -o."""


# ---- --set name=value -------------------------------------------------------------


class _BareWordEnv(Env):
    """An empty scope in which every name reads as its own text: ``[relu, gelu]``."""

    def lookup(self, name: str) -> Any:
        return name


def parse_set(item: str) -> tuple[str, Any]:
    """``"num_classes=10"`` -> ``("num_classes", 10)``; the value is a language literal.

    Ints, floats, ``true``/``false``/``none``, ``"strings"``, bare words (as strings) and
    lists of these. The value goes through archdsl's own parser and evaluator (never
    Python's ``eval``), as the right-hand side of ``v = <value>``.

    >>> parse_set("layers=[3, 4, 6, 3]")
    ('layers', (3, 4, 6, 3))
    >>> parse_set("mode=fan_out")
    ('mode', 'fan_out')
    """
    name, eq, value = item.partition("=")
    name, value = name.strip(), value.strip()
    if not eq:
        raise UsageError(f"--set needs name=value, got '{item}'")
    if not _NAME.match(name):
        raise UsageError(f"--set: '{name}' is not a parameter name (letters, digits, '_')")
    if not value:
        raise UsageError(f"--set {name}= needs a value, e.g. {name}=10")
    if _NAME.match(value) and value not in _LITERAL_WORDS:
        return name, value
    if "\n" in value or "\r" in value:
        raise UsageError(f"--set {name}: the value must be on one line")
    prefix = "v = "
    try:
        module = parse(prefix + value, "<--set>")
        defs = module.defs
        if len(defs) != 1 or not isinstance(defs[0], ast.Assign):
            raise UsageError(f"--set {name}: expected one value, got '{value}'")
        return name, evaluate(defs[0].value, _BareWordEnv({}))
    except archdsl.ArchError as e:
        column = max(e.column - len(prefix), 1)
        shown = f"{name}={value}"
        caret = " " * (len(name) + 1 + column - 1) + "^"
        raise UsageError(f"--set {name}: {e.message}", [shown, caret]) from None


# ---- the report -------------------------------------------------------------------


count_params = archdsl.count_params


def batched(shape: Sequence[int]) -> str:
    """``(3, 224, 224)`` -> ``"[N, 3, 224, 224]"``."""
    return "[" + ", ".join(["N", *(str(d) for d in shape)]) + "]"


def _seconds(t: float) -> str:
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def report(
    graph: Graph,
    path: str,
    params: int,
    times: Sequence[tuple[str, float]],
    saved: str | None = None,
    saved_as: str = "state_dict",
    others: Sequence[Graph] = (),
) -> str:
    """The few lines ``compile`` and ``check`` print; ``others``, networks of the file
    checked besides ``graph``, are named on a line of their own."""
    rows = [
        ("network", f"{graph.name}  ({path})"),
        *([("also checked", ", ".join(g.name for g in others))] if others else []),
        ("shape", f"{batched(graph.input_shape)} -> {_returned(graph)}"),
        ("parameters", f"{params:,}"),
        *((what, _seconds(t)) for what, t in times),
    ]
    if saved is not None:
        rows.append(("saved", f"{saved} ({saved_as})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _returned(graph: Graph) -> str:
    """The output's shape; each value's, by field, for a network that returns several."""
    if not graph.returns_fields:
        return batched(graph.output_shape)
    return ", ".join(
        f"{name} {batched(graph.node(node_id).shape)}"
        for name, node_id in graph.output_fields.items()
    )


# ---- commands ---------------------------------------------------------------------


STDIN = "-"  # SPEC (and fmt's FILE) naming standard input, as editors and pipes pass a spec
STDIN_PATH = "<stdin>"  # the file name errors give it


def read_stdin() -> str:
    """The spec text on standard input, as UTF-8, and no more of it than a spec may hold
    (``archdsl check - < /dev/zero`` ends); its imports are read from the current folder."""
    limit = MAX_SOURCE_BYTES + 1  # parse() refuses anything longer, as for a file
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream (a test's, say)
        return sys.stdin.read(limit)
    text = io.TextIOWrapper(stream, encoding="utf-8")
    try:
        return text.read(limit)
    except UnicodeDecodeError as e:
        raise archdsl.ArchImportError(
            f"standard input is not UTF-8 text ({e.reason})", archdsl.errors.Span(STDIN_PATH, 0, 0)
        ) from None
    finally:
        text.detach()  # leave sys.stdin's buffer open


def resolve_spec(spec: str) -> str:
    """A spec file path, or the file of the bundled spec so named (a file wins)."""
    if os.path.isfile(spec):
        return spec
    if os.path.exists(spec):
        raise UsageError(f"{spec} is not a spec file")
    names = archdsl.list_specs()
    if spec in names:
        return str(archdsl.spec_path(spec))
    if os.sep in spec or "/" in spec or spec.endswith(".arch"):
        raise UsageError(f"no such spec file: {spec}")
    raise UsageError(
        f"'{spec}' is neither a spec file nor a bundled spec{did_you_mean(spec, names)}"
        " ('archdsl list' shows the bundled specs)"
    )


def _spec_source(args: argparse.Namespace) -> tuple[str, str | None]:
    """The spec's path, and its text when it comes from standard input (``-``)."""
    if args.spec == STDIN:
        return STDIN_PATH, read_stdin()
    return resolve_spec(args.spec), None


def _check(args: argparse.Namespace) -> tuple[Graph, str, float]:
    path, source = _spec_source(args)
    params = dict(parse_set(item) for item in args.set)
    start = time.perf_counter()
    if source is not None:
        graph = archdsl.check(
            source, path=path, network=args.network, params=params, search_path=args.search_path
        )
    else:
        graph = archdsl.check_file(
            path, network=args.network, params=params, search_path=args.search_path
        )
    return graph, path, time.perf_counter() - start


def cmd_check(args: argparse.Namespace) -> int:
    path, source = _spec_source(args)
    params = dict(parse_set(item) for item in args.set)
    start = time.perf_counter()
    graphs, warnings = check_and_lint(
        path, network=args.network, params=params, search_path=args.search_path, source=source
    )
    t_check = time.perf_counter() - start
    graph = graphs[-1]
    print(report(graph, path, count_params(graph), [("check", t_check)], others=graphs[:-1]))
    for warning in warnings:  # file:line:col: warning: ... (archdsl.passes.lint)
        print_error(str(warning))
    return EXIT_SPEC if warnings and args.strict else EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    out = args.output
    ext = os.path.splitext(out)[1].lower() if out is not None else None
    if out is not None and ext not in SAVE_EXTENSIONS:
        raise UsageError(
            f"-o {out}: unsupported extension; supported: "
            + ", ".join(f"{e} ({what})" for e, what in SAVE_EXTENSIONS.items())
        )
    if args.optimize and (ext == ".py" or ext in STATE_DICT_EXTENSIONS):
        raise UsageError(
            f"--optimize {args.optimize} changes the module, not the network: it applies to"
            f" .pt2 and .onnx outputs; -o {out} writes the network itself"
        )
    if args.weights is not None and not os.path.isfile(args.weights):
        raise UsageError(f"--weights {args.weights}: no such file")
    if out is not None and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        # before the work, and clearer than torch's RuntimeError for this
        raise RunError(
            f"cannot write {out}: no such directory {os.path.dirname(os.path.abspath(out))}"
        )
    if out is not None and os.path.isdir(out):
        raise RunError(f"cannot write {out}: it is a directory")
    graph, path, t_check = _check(args)
    times = [("check", t_check), *_import_torch()]
    start = time.perf_counter()
    try:
        if args.weights is not None:
            model = archdsl.api.build_with_weights(graph, args.weights)
        else:
            model = archdsl.build(graph, max_params=args.max_params)
    except (RuntimeError, MemoryError) as e:  # torch cannot allocate the weights
        size = count_params(graph)
        raise RunError(
            f"cannot build {graph.name}: {size:,} parameters ({size * 4 / 2**30:,.1f} GiB as "
            f"float32); torch: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    times.append(("load" if args.weights else "build", time.perf_counter() - start))
    params = sum(p.numel() for p in model.parameters())
    if args.optimize:
        start = time.perf_counter()
        model = archdsl.optimize_for_inference(model)
        times.append(("optimize", time.perf_counter() - start))
    if out is not None:
        start = time.perf_counter()
        _save(model, out)
        times.append(("save", time.perf_counter() - start))
    print(report(graph, path, params, times, out, SAVE_EXTENSIONS.get(ext or "", "")))
    if args.weights is not None and ext == ".py":  # checked against the network, not written
        reader = "torch.load"
        if args.weights.lower().endswith(".safetensors"):
            reader = "safetensors.torch.load_file"
        print(
            f"the weights fit, but {out} is source only: its class loads them with "
            f"load_state_dict({reader}({args.weights!r}))"
        )
    return EXIT_OK


def _import_torch() -> list[tuple[str, float]]:
    """Import torch (with archdsl's backend) and time it apart from the build: in a fresh
    process it is most of ``compile``'s time (over a second; resnet50 builds in 0.1 s).
    No row when torch was already imported."""
    if "torch" in sys.modules:
        return []
    start = time.perf_counter()
    import archdsl.backends.torch_backend  # noqa: F401 - imported for its cost, used by build

    return [("import torch", time.perf_counter() - start)]


def _save(model: Any, out: str) -> None:
    """Write ``model`` to ``out`` (format from the extension); failures are RunErrors."""
    try:
        archdsl.export(model, out)
    except ModuleNotFoundError as e:
        raise RunError(
            f"cannot write {out}: the {os.path.splitext(out)[1]} output needs the package "
            f"'{e.name}' (pip install 'archdsl[onnx]')"
        ) from None
    except (OSError, RuntimeError) as e:
        reason = getattr(e, "strerror", None) or (str(e).splitlines() or [type(e).__name__])[0]
        raise RunError(f"cannot write {out}: {reason}") from None


def cmd_summary(args: argparse.Namespace) -> int:
    from archdsl.analysis import summary

    graph, _, _ = _check(args)
    # --outputs layer2,layer3 and --outputs layer2 --outputs layer3 alike
    outputs = [name.strip() for item in args.outputs for name in item.split(",") if name.strip()]
    if args.outputs and not outputs:
        raise UsageError("--outputs: name at least one module path, e.g. --outputs layer3,layer4")
    try:
        result = summary(
            graph,
            depth=args.depth,
            expand=args.expand,
            batch=args.batch,
            dtype=args.dtype,
            outputs=outputs or None,
        )
        print(result.render(args.format))
    except ValueError as e:
        raise UsageError(str(e)) from None
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from archdsl.backends.graphviz import render

    graph, _, _ = _check(args)
    try:
        written = render(
            graph, args.output, depth=args.depth, expand=args.expand, rankdir=args.rankdir
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise RunError(f"cannot write {args.output}: {e.strerror or e}") from None
    print(f"wrote {written}")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    """Which tensors of spec A carry over to spec B (built on the meta device)."""
    sides = []
    for spec, sets in ((args.spec, args.set), (args.other, args.set_b)):
        params = dict(parse_set(item) for item in sets)
        sides.append(archdsl.check_file(resolve_spec(spec), network=args.network, params=params))
    report = archdsl.diff(*sides)
    print(report.to_json() if args.format == "json" else report.render(verbose=args.verbose))
    return EXIT_OK


def cmd_fmt(args: argparse.Namespace) -> int:
    """Rewrite spec files in their canonical layout; ``--check`` only reports."""
    from archdsl.fmt import format_source

    status = EXIT_OK
    for path in args.files:
        stdin = path == STDIN
        try:
            if stdin:
                text = read_stdin()
            else:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
        try:
            formatted = format_source(text, path=STDIN_PATH if stdin else path)
        except archdsl.ArchError as e:
            print_error(e.render())
            status = EXIT_SPEC
            continue
        if stdin and not args.check:  # a filter: the text out, changed or not
            sys.stdout.write(formatted)
            continue
        if formatted == text:
            continue
        if args.check:
            print(f"would reformat {path}")
            status = EXIT_SPEC
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(formatted)
            print(f"reformatted {path}")
    return status


def spec_description(path: str) -> str:
    """A spec's one-line description: its first line that starts with ``#:``, or ``""``."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#:"):
                return line[2:].strip()
    return ""


def cmd_list(args: argparse.Namespace) -> int:
    names = archdsl.list_specs()
    if args.names:
        print("\n".join(names))
        return EXIT_OK
    width = max(map(len, names))
    for name in names:
        path = archdsl.spec_path(name)
        params = archdsl.count_params(archdsl.check_file(path))
        print(f"{name:<{width}}  {params:>12,}  {spec_description(str(path))}")
    return EXIT_OK


# ---- argument parsing and the error boundary --------------------------------------


def print_error(line: str) -> None:
    """A line of an error (or warning) message, on standard error."""
    print(line, file=sys.stderr)

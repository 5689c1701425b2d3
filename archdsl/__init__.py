"""archdsl: a language for convolutional network architectures, and its compiler.

>>> import archdsl
>>> g = archdsl.check("network tiny { input [3, 8, 8]; conv(4, 3) -> relu }")
>>> g.output_shape
(4, 6, 6)
"""

from typing import TYPE_CHECKING, Any

from archdsl.api import (
    build,
    check,
    check_file,
    compile,
    compile_file,
    compile_for_inference,
    count_params,
    emit_python,
    export,
    lint,
    list_specs,
    load,
    load_graph,
    optimize_for_inference,
    parse_value,
    spec_path,
)
from archdsl.backbone import backbone_strides, feature_info
from archdsl.errors import (
    ArchError,
    ArchImportError,
    ArchLimitError,
    ArchNameError,
    ArchShapeError,
    ArchSyntaxError,
    ArchTypeError,
)
from archdsl.memory import grad_checkpointing, keep_freed_memory
from archdsl.ops.custom import OpRegistrationError, register_op, unregister_op
from archdsl.transfer import TransferReport, diff, transfer

if TYPE_CHECKING:
    from archdsl.analysis import summary

__version__ = "0.1.0"

_LAZY = ("summary",)


def __getattr__(name: str) -> Any:
    """What is imported on first use, so that `import archdsl` (and `archdsl check`) stays
    cheap: the analyses (``summary``)."""
    if name == "summary":
        from archdsl.analysis import summary

        globals()["summary"] = summary
        return summary
    raise AttributeError(f"module 'archdsl' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _svg(obj: object) -> str | None:
    """A checked graph's or a compiled module's diagram as SVG text: Jupyter's
    ``_repr_svg_``. None (the notebook falls back to text) without graphviz or ``dot``."""
    try:
        from archdsl.backends.graphviz import to_dot

        graph: Any = getattr(obj, "archdsl_graph", obj)  # a module's, or obj itself
        return str(to_dot(graph).pipe(format="svg").decode())
    except (ImportError, RuntimeError, OSError):  # no graphviz package, no `dot` program
        return None


__all__ = [
    "ArchError",
    "ArchImportError",
    "ArchLimitError",
    "ArchNameError",
    "ArchShapeError",
    "ArchSyntaxError",
    "ArchTypeError",
    "OpRegistrationError",
    "TransferReport",
    "backbone_strides",
    "build",
    "check",
    "check_file",
    "compile",
    "compile_file",
    "compile_for_inference",
    "count_params",
    "diff",
    "emit_python",
    "export",
    "feature_info",
    "grad_checkpointing",
    "keep_freed_memory",
    "lint",
    "list_specs",
    "load",
    "load_graph",
    "optimize_for_inference",
    "parse_value",
    "register_op",
    "spec_path",
    "summary",
    "transfer",
    "unregister_op",
]

"""archdsl: a language for convolutional network architectures, and its compiler.

>>> import archdsl
>>> g = archdsl.check("network tiny { input [3, 8, 8]; conv(4, 3) -> relu }")
>>> g.output_shape
(4, 6, 6)
"""

from archdsl.api import (
    build,
    check,
    check_file,
    compile,
    compile_file,
    count_params,
    list_specs,
    load,
    load_graph,
    parse_value,
    spec_path,
)
from archdsl.analysis import summary
from archdsl.errors import (
    ArchError,
    ArchImportError,
    ArchLimitError,
    ArchNameError,
    ArchShapeError,
    ArchSyntaxError,
    ArchTypeError,
)

__version__ = "0.1.0"

__all__ = [
    "ArchError",
    "ArchImportError",
    "ArchLimitError",
    "ArchNameError",
    "ArchShapeError",
    "ArchSyntaxError",
    "ArchTypeError",
    "build",
    "check",
    "check_file",
    "compile",
    "compile_file",
    "count_params",
    "list_specs",
    "load",
    "load_graph",
    "parse_value",
    "spec_path",
    "summary",
]

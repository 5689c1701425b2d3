"""Frontend: the grammar (``archdsl.lark``), the parser and the AST."""

from archdsl.frontend.parser import parse

__all__ = ["parse"]

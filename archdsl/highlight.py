"""A Pygments lexer for archdsl specs, registered as ``archdsl`` (aliases ``arch``).

Pygments finds it through the ``pygments.lexers`` entry point, so Markdown renderers,
Sphinx and ``pygmentize -l archdsl spec.arch`` highlight specs once archdsl is installed.
Op and function names come from the registries, so a new op is highlighted without an
edit here.

>>> from pygments import lex
>>> [(str(t), v) for t, v in lex("conv(64, 3)", ArchdslLexer())][:2]
[('Token.Name.Builtin', 'conv'), ('Token.Punctuation', '(')]
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

from archdsl.elaborate.builtins import BUILTINS, SCALING_BUILTINS
from archdsl.elaborate.network_rules import INIT_FUNCTIONS
from archdsl.ops.registry import OPS

KEYWORDS = (
    "import",
    "assert",
    "block",
    "network",
    "input",
    "init",
    "outputs",
    "side",
    "seq",
    "if",
    "else",
    "for",
    "in",
    "scaled",
)
MERGES = ("add", "concat", "mul")
WORD_OPERATORS = ("and", "or", "not", "x")
CONSTANTS = ("true", "false", "none")
OP_NAMES = tuple(sorted(set(OPS) - set(MERGES)))
FUNCTIONS = tuple(sorted({*BUILTINS, *SCALING_BUILTINS, *INIT_FUNCTIONS}))


class ArchdslLexer(RegexLexer):
    """Spec files: keywords, ops, functions, labels, references, numbers, strings and
    comments."""

    name = "archdsl"
    aliases = ["archdsl", "arch"]
    filenames = ["*.arch"]
    mimetypes = ["text/x-archdsl"]
    url = "https://github.com/archdsl/archdsl"

    tokens = {
        "root": [
            (r"[ \t\f\r]+", Whitespace),
            (r"\n", Whitespace),
            (r"#.*$", Comment.Single),
            (r'"[^"\\\n]*"|\'[^\'\\\n]*\'', String),
            (r"(\d+\.\d*|\.\d+)([eE][+-]?\d+)?|\d+[eE][+-]?\d+", Number.Float),
            (r"\d+", Number.Integer),
            (
                r"(block|network)(\s+)([A-Za-z_]\w*)",
                bygroups(Keyword.Declaration, Whitespace, Name.Class),
            ),
            (r"(import)\b", Keyword.Namespace),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (words(WORD_OPERATORS, suffix=r"\b"), Operator.Word),
            (words(MERGES, suffix=r"(?=\s*(\{|if\b))"), Keyword),
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (r"@[A-Za-z_]\w*(?:[-.]\w+)*", Name.Variable),  # a reference: @backbone.layer3
            (r"([A-Za-z_]\w*(?:-\w+)*)(\s*)(:)", bygroups(Name.Label, Text, Punctuation)),
            (words(OP_NAMES, suffix=r"\b"), Name.Builtin),
            (words(FUNCTIONS, suffix=r"(?=\s*\()"), Name.Function),
            (words(("zeros", "ones", "default"), suffix=r"\b"), Name.Function),
            (r"[A-Za-z_]\w*", Name),
            (r"->|\*\*|//|==|!=|<=|>=|[-+*/%<>=]", Operator),
            (r"[()\[\]{},.;:]", Punctuation),
        ],
    }


__all__ = ["ArchdslLexer"]

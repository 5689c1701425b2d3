"""``archdsl compile | check | list``: the command line, a thin client of :mod:`archdsl`.

>>> main(["check", "resnet18", "--set", "num_classes=10"])  # doctest: +ELLIPSIS
network     resnet18  (...resnet18.arch)
shape       [N, 3, 224, 224] -> [N, 10]
parameters  11,181,642
check       ...
0

SPEC is a spec file, a bundled spec's name, or ``-`` for standard input (named ``<stdin>``
in messages, its imports read from the current folder); ``fmt -`` is a filter.

Exit codes:

- 0: success. ``check`` also prints lint warnings (``file:line:col: warning: message``)
  on stderr; they do not fail it.
- 1: the spec is wrong (any :class:`archdsl.ArchError`, printed with ``e.render()``:
  ``file:line:col: error: message``, the source line, a caret and notes; then each further
  independent error found by the same check likewise, and ``N errors``), a spec too deep
  or too large to process (torch cannot allocate its weights), or an unwritable ``-o``;
  and ``check --strict`` of a spec with warnings.
- 2: the command line is wrong: argparse errors, a bad ``--set``, an ``-o`` extension
  other than ``.py``, ``.pt2``, ``.onnx``, ``.pt``, ``.pth`` and ``.safetensors``, a missing
  ``--weights`` file, and a SPEC that names neither a file nor a bundled spec (nothing was
  read, so this is a usage error, not a spec error). A weights file that does not fit the
  network is a spec error.
- 3: an internal error (a bug in archdsl): one line; set ``ARCHDSL_DEBUG=1`` for the
  traceback.

torch is imported only by ``compile``, the one command that builds a module.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import archdsl
from archdsl_cli.commands import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_SPEC,
    EXIT_USAGE,
    OPTIMIZE_LEVELS,
    SAVE_EXTENSIONS,
    STATE_DICT_EXTENSIONS,
    RunError,
    UsageError,
    cmd_check,
    cmd_compile,
    cmd_diff,
    cmd_fmt,
    cmd_list,
    cmd_render,
    cmd_summary,
    parse_set,
    print_error,
)

__all__ = [
    "main",
    "build_parser",
    "parse_set",
    "UsageError",
    "SAVE_EXTENSIONS",
    "STATE_DICT_EXTENSIONS",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archdsl",
        description="Check CNN architecture specs and compile them to torch modules.",
        epilog="Exit codes: 0 ok, 1 error in the spec, 2 bad command line, 3 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"archdsl {archdsl.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def spec_command(
        name: str, summary: str, func: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.add_argument(
            "spec",
            metavar="SPEC",
            help="a spec file, the name of a bundled spec (see 'archdsl list'), or - to read "
            "the spec from standard input",
        )
        sub.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="override a network parameter; VALUE is a literal: 10, 0.5, "
            'true, none, "text", word, [1, 2] (repeatable)',
        )
        sub.add_argument(
            "--network",
            metavar="NAME",
            help="the network to use (default: the last one the file defines)",
        )
        sub.add_argument(
            "-I",
            "--search-path",
            action="append",
            default=[],
            metavar="DIR",
            help="also import specs from DIR (imports may only read under the spec's own "
            "folder, these folders and the bundled library)",
        )
        sub.set_defaults(func=func, parser=sub)
        return sub

    compile_ = spec_command(
        "compile", "check a spec, build the torch module, print a report", cmd_compile
    )
    compile_.add_argument(
        "--max-params",
        type=int,
        default=archdsl.api.MAX_PARAMS,
        metavar="N",
        help=f"refuse to build a network of more than N parameters (default {archdsl.api.MAX_PARAMS:,})",
    )
    compile_.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the network; the extension picks the format: .py (standalone PyTorch "
        "source), .pt2 (torch.export), .onnx, .pt or .pth (state_dict), .safetensors",
    )
    compile_.add_argument(
        "--weights",
        metavar="FILE",
        help="load a state_dict file (torchvision's .pth, timm's .safetensors) into the network, strictly",
    )
    compile_.add_argument(
        "--optimize",
        choices=OPTIMIZE_LEVELS,
        help="inference: eval mode, batch norm folded, channels_last (for .pt2/.onnx output)",
    )
    check_ = spec_command(
        "check", "shape-check a spec's networks without building them (no torch)", cmd_check
    )
    check_.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when there are warnings (unused blocks or parameters, "
        "shadowed names, a conv's bias before batch norm)",
    )

    def view_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--depth",
            type=int,
            default=None,
            metavar="N",
            help="show blocks nested down to depth N",
        )
        sub.add_argument(
            "--expand",
            action="store_true",
            help="show repeated identical blocks one by one instead of 'name x N'",
        )

    summary_ = spec_command(
        "summary",
        "a table of layers: shapes, params, MACs, receptive field (no torch)",
        cmd_summary,
    )
    view_options(summary_)
    summary_.add_argument("--format", choices=("text", "markdown", "json", "csv"), default="text")
    summary_.add_argument("--batch", type=int, default=1, help="batch size for memory estimates")
    summary_.add_argument("--dtype", default="float32", help="dtype for memory estimates")
    summary_.add_argument(
        "--outputs",
        action="append",
        default=[],
        metavar="NAMES",
        help="also show the channels, size and stride of these feature maps (module paths, "
        "comma-separated or repeated: --outputs layer2,layer3,layer4), as a backbone "
        "built with outputs= returns them",
    )
    render_ = spec_command("render", "draw the network with Graphviz (no torch)", cmd_render)
    view_options(render_)
    render_.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="the image; its extension picks the format: svg, png, pdf, dot",
    )
    render_.add_argument("--rankdir", default="TB", choices=("TB", "LR", "BT", "RL"))
    diff_ = spec_command(
        "diff",
        "which tensors carry over from spec A to spec B: same, reshaped, new, dropped",
        cmd_diff,
    )
    diff_.add_argument("other", metavar="SPEC_B", help="the spec the weights go to")
    diff_.add_argument(
        "--set-b",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter of SPEC_B (--set applies to SPEC)",
    )
    diff_.add_argument("--format", choices=("text", "json"), default="text")
    diff_.add_argument("-v", "--verbose", action="store_true", help="list unchanged tensors too")
    fmt = commands.add_parser(
        "fmt",
        help="rewrite spec files in the canonical layout (comments kept)",
        description="rewrite spec files in the canonical layout (comments kept)",
    )
    fmt.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="spec files; - formats standard input to standard output",
    )
    fmt.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 when a file would be reformatted",
    )
    fmt.set_defaults(func=cmd_fmt, parser=fmt)
    listing = commands.add_parser(
        "list",
        help="the bundled networks: name, parameters, description and paper",
        description="the bundled networks, one per line: name, parameter count and the "
        "spec's one-line description (its '#:' comment), which names the paper",
    )
    listing.add_argument("--names", action="store_true", help="names only")
    listing.set_defaults(func=cmd_list, parser=listing)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help, --version (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    prog = args.parser.prog
    try:
        return int(args.func(args))
    except archdsl.ArchError as e:
        print_error(e.render())
        return EXIT_SPEC
    except UsageError as e:
        args.parser.print_usage(sys.stderr)
        print_error(f"{prog}: error: {e.message}")
        for line in e.detail:
            print_error(f"  {line}")
        return EXIT_USAGE
    except RunError as e:
        print_error(f"{prog}: error: {e}")
        return EXIT_SPEC
    except RecursionError:
        print_error(
            f"{prog}: error: {getattr(args, 'spec', '')}: the spec is nested too deeply to process"
        )
        return EXIT_SPEC
    except MemoryError:
        print_error(
            f"{prog}: error: {getattr(args, 'spec', '')}: out of memory while processing the spec"
        )
        return EXIT_SPEC
    except KeyboardInterrupt:
        print_error(f"{prog}: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `archdsl list | head -1`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return EXIT_OK
    except Exception as e:
        if os.environ.get("ARCHDSL_DEBUG"):
            raise
        print_error(
            f"{prog}: internal error: {type(e).__name__}: {e} "
            "(a bug in archdsl; set ARCHDSL_DEBUG=1 for the traceback)"
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

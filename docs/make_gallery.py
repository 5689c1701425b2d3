"""Regenerate the diagram gallery: ``python docs/make_gallery.py``.

Renders every bundled network to ``docs/gallery/<name>.svg`` (block-level view, repeats
collapsed) and writes the index ``docs/gallery.md``. Needs Graphviz's ``dot``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import archdsl
from archdsl.analysis import summary
from archdsl.backends.graphviz import render

DOCS = Path(__file__).parent


def main() -> int:
    out_dir = DOCS / "gallery"
    out_dir.mkdir(exist_ok=True)
    rows = ["# Gallery", "", "Every bundled network, as `archdsl render SPEC -o NAME.svg` draws it",
            "(regenerate with `python docs/make_gallery.py`).", "",
            "| network | input | params | MACs | diagram |", "|---|---|---|---|---|"]
    for name in archdsl.list_specs():
        graph = archdsl.load_graph(name)
        written = render(graph, out_dir / f"{name}.svg")
        if written.suffix != ".svg":
            print("Graphviz's dot is needed to draw the gallery", file=sys.stderr)
            return 1
        s = summary(graph)
        rows.append(f"| {name} | {list(graph.input_shape)} | {s.params:,} | {s.macs / 1e9:.2f} G "
                    f"| [svg](gallery/{name}.svg) |")
        print(name, flush=True)
    (DOCS / "gallery.md").write_text("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

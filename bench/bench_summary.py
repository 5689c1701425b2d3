"""Static analysis speed: `archdsl.summary` and `to_dot` for every bundled network.

    python bench/bench_summary.py            # prints a Markdown table

Times are medians of 5 runs, in one process, with the spec already checked (the
frontend is measured by bench.py). Nothing here imports torch.
"""

from __future__ import annotations

import statistics
import sys
import time

import archdsl
from archdsl.analysis import summary
from archdsl.backends.graphviz import to_dot


def _median(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rows = []
    for name in archdsl.list_specs():
        graph = archdsl.load_graph(name)
        rows.append(
            (
                len(graph),
                name,
                _median(lambda g=graph: summary(g)),
                _median(lambda g=graph: to_dot(g), runs=3),
            )
        )
    rows.sort(reverse=True)
    print("| network | nodes | summary (ms) | diagram source (ms) |")
    print("|---|---|---|---|")
    for nodes, name, t_summary, t_dot in rows:
        print(f"| {name} | {nodes} | {t_summary * 1e3:.1f} | {t_dot * 1e3:.1f} |")
    assert "torch" not in sys.modules, "static analysis imported torch"


if __name__ == "__main__":
    main()

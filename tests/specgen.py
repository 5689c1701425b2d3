"""Random valid specs, for checking what archdsl emits against what it builds.

The fuzzer (``test_fuzz.py``) draws mostly meaningless specs to attack the frontend; few of
them check. These are networks a user might write: one to three blocks (residuals with a
projection under an ``if``, dense concatenation in a ``for`` with templated labels, squeeze
and excitation, ``seq``, labelled groups, repetition, pooling, dropout, stochastic depth,
blocks inside blocks, a residual under ``add if``, ShuffleNet's channel split and shuffle),
half their layers labelled (some with a ``-``, as ``stage-1``) and half numbered, called
with different widths, strides, expansions and kernel sizes (widths and paddings written as
arithmetic over the block's parameters, as ``c * 2``, ``(k - 1) // 2``), sometimes with
side outputs; a stage gated by an earlier one, read by a reference (``@stage1``), at the
top or inside a ``seq`` it then opens, or inside a block into its own ``seq``; a pooled
context resized to another value's size (``resize(@top)``); stages
returned beside the logits by ``outputs(...)``; ConvNeXt's MLP over the channels and its layer scale. Every block is as wide as its ``c``, so widths stay small. A rare draw may
fail to check (a residual whose branch changed the width); callers skip those.

>>> import random, archdsl
>>> archdsl.check(spec(random.Random(0))).name
'net'
"""

from __future__ import annotations

import random
import re

ACTIVATIONS = ["relu", "relu6", "silu", "hardswish", "leaky_relu(0.1)"]
RESIZE_MODES = ["", ', mode="bilinear"']


def spec(r: random.Random) -> str:
    """One spec file: its blocks, then ``network net`` on a 3 x 16 x 16 input."""
    blocks: list[str] = []
    text = []
    for i in range(r.randint(1, 3)):
        text.append(_block(r, f"blk{i}", blocks))
        blocks.append(f"blk{i}")
    items = []
    labelled = []  # the stages a reference can name
    for j in range(r.randint(2, 5)):
        args = [str(r.choice([4, 8, 12]))]
        for name, values, p in (
            ("s", [1, 2], 0.5),
            ("t", [1, 2, 3], 0.4),
            ("n", [1, 2, 3], 0.4),
            ("k", [1, 3, 5], 0.4),
        ):
            if r.random() < p:
                args.append(f"{name}={r.choice(values)}")
        label = _label(r, f"stage{j}")
        item = f"{label}{r.choice(blocks)}({', '.join(args)})"
        if r.random() < 0.15:
            item += f" x {r.randint(1, 3)}"
        if labelled and r.random() < 0.3:  # gated by an earlier stage, read by a reference
            gate = f"mul {{ (); @{r.choice(labelled)} -> global_avgpool -> conv({args[0]}, 1) -> sigmoid }}"
            # inside a seq, the reference reads into it: the seq is opened
            item += f" -> {gate}" if r.random() < 0.5 else f" -> gate{j}: seq {{ relu; {gate} }}"
        if label:
            labelled.append(label.removesuffix(": "))
        items.append(item)
        if r.random() < 0.15:
            items.append(f"side aux{j}: (global_avgpool(flatten=true) -> linear(3))")
    chain = " -> ".join(["conv(8, 3, padding=1)", *items, "global_avgpool(flatten=true)"])
    head = "input [3, 16, 16]"
    if labelled and not any(i.startswith("side ") for i in items) and r.random() < 0.3:
        # the network returns stages beside its logits: by label, or by reference
        fields = [
            name if name.isidentifier() and r.random() < 0.5 else f"v{k}=@{name}"
            for k, name in enumerate(r.sample(labelled, min(len(labelled), r.randint(1, 2))))
        ]
        fields.insert(r.randint(0, len(fields)), r.choice(["out", "logits=out"]))
        head += f"\n  outputs({', '.join(fields)})"
    text.append(f"network net {{\n  {head}\n  {chain} -> linear(5)\n}}")
    return "\n".join(text)


def _label(r: random.Random, name: str) -> str:
    # a dash before the number, as torchvision's RegNet: block1-0 (not after a keyword:
    # seq-0 reads as the keyword seq)
    if r.random() < 0.1 and re.sub(r"\d+$", "", name) != "seq":
        name = re.sub(r"(\d+)$", r"-\1", name)
    return f"{name}: " if r.random() < 0.5 else ""


def _block(r: random.Random, name: str, blocks: list[str]) -> str:
    head = "conv(c, 3, stride=s, padding=1) -> "
    shapes = [
        f"if s == 1 and in.c == c {{ add {{ (); ({_chain(r, 'c', blocks)}) }} }} "
        f"else {{ {head}{_chain(r, 'c', blocks)} }}",
        f"{head}for i in range(n) {{ layer{{i + 1}}: concat {{ (); "
        "(bn -> relu -> conv(4, 3, padding=1)) } } -> conv(c, 1)",
        f"{_label(r, 'pre')}conv(c, 1, stride=s) -> concat {{ ({_chain(r, 'c', blocks)}); "
        f"({_chain(r, 'h', blocks)}) }} -> conv(c, 1)",  # c wide, as every block: no blow-up
        f"{head}mul {{ (); global_avgpool -> conv(max(1, c // 4), 1) -> relu -> conv(c, 1) "
        "-> sigmoid }",
        f"{_label(r, 'body')}seq {{ {head}{_chain(r, 'c', blocks)} }}",
        f"for i in range(n) {{ u{{i}}: ({_chain(r, 'c', blocks)}) }}\n  conv(c, 1, stride=s)",
        f"add {{ ({head}{_chain(r, 'c', blocks)}); if s != 1 or in.c != c {{ "
        f"{_label(r, 'downsample')}seq {{ conv(c, 1, stride=s, bias=false); bn }} }} }} -> relu",
        # the residual only where the shape is kept, the layers the block's own
        f"add if s == 1 and in.c == c {{ (); ({head}{_chain(r, 'c', blocks)}) }}",
        # a reference inside the block, into its own seq (opened in every instance)
        f"a: seq {{ conv(c, 3, stride=s, padding=1); relu }} -> {_chain(r, 'c', blocks)} "
        "-> add { (); @a.0 -> conv(c, 1) }",
        # a pooled context brought back to the map's size, read when the network runs
        f"top: {head}{_chain(r, 'c', blocks)} -> concat {{ (); (adaptive_avgpool(2) "
        f"-> conv(4, 1) -> resize(@top{r.choice(RESIZE_MODES)})) }} -> conv(c, 1)",
        # ShuffleNetV2: one half of the channels convolved, then the channels shuffled
        f"conv(c * 2, 1, stride=s) -> concat {{ channel_slice(0, c); (channel_slice(c, c * 2) "
        f"-> {_label(r, 'branch2')}seq {{ {_chain(r, 'c', blocks)} }}) }} -> channel_shuffle(2) "
        "-> conv(c, 1)",
    ]
    t = r.choice([1, 2])
    n = r.choice([1, 2])
    k = r.choice([1, 3])
    return (
        f"block {name}(c, s = 1, t = {t}, n = {n}, k = {k}) {{\n  h = in.c * t\n  "
        f"{r.choice(shapes)}\n}}"
    )


def _chain(r: random.Random, out: str, blocks: list[str]) -> str:
    n = r.randint(1, 3)
    widths = [r.choice([out, "h", "in.c", f"{out} * 2", f"{out} // 2 + 1"]) for _ in range(n - 1)]
    widths.append(out)
    base = 10 * r.randrange(1000)  # labels apart from those of another chain beside this one
    return " -> ".join(_unit(r, w, blocks, base + i) for i, w in enumerate(widths))


def _unit(r: random.Random, out: str, blocks: list[str], i: int) -> str:
    kind = r.choice(["conv"] * 5 + ["block", "group", "pool", "seq", "repeat", "concat", "mlp"])
    k = r.choice([1, 3])
    if kind == "block" and blocks:
        return f"{_label(r, f'inner{i}')}{r.choice(blocks)}({out})"
    if kind == "group":
        last = r.choice(["dropout(0.1)", "identity", "scale(0.5)", "drop_path(0.1)", "relu"])
        return f"{_label(r, f'grp{i}')}(conv({out}, 1) -> {last})"
    if kind == "pool":
        pool = r.choice(["maxpool", "avgpool"])
        return f"conv({out}, 1) -> {_label(r, f'pool{i}')}{pool}(3, stride=1, padding=1)"
    if kind == "seq":
        return f"{_label(r, f'seq{i}')}seq {{ conv({out}, 1); {r.choice(['bn', 'relu'])} }}"
    if kind == "repeat":
        repeated = f"(conv({out}, 3, padding=1) -> relu) x {r.randint(1, 3)}"
        return f"conv({out}, 1) -> {_label(r, f'rep{i}')}{repeated}"
    if kind == "concat":
        return f"concat {{ conv({out}, 1); (conv(4, 1) -> relu) }} -> conv({out}, 1)"
    if kind == "mlp":  # ConvNeXt's: over the channels, then the block's own layer scale
        dash = "-" if r.random() < 0.1 else ""
        flat = ", flat=true" if r.random() < 0.5 else ""
        return (
            f"conv({out}, 1) -> layernorm -> channel_linear({out} * 2) -> gelu "
            f"-> {_label(r, f'fc{i}')}channel_linear({out}) -> ls{dash}{i}: layer_scale(0.5{flat})"
        )
    bias = ", bias=false" if r.random() < 0.5 else ""
    kernel = r.choice([f"{k}, padding={k // 2}", "k, padding=(k - 1) // 2", "k, padding=k // 2"])
    text = f"{_label(r, f'conv{i}')}conv({out}, {kernel}{bias})"
    if r.random() < 0.5:
        text += f" -> {_label(r, f'bn{i}')}bn"
    if r.random() < 0.5:
        text += f" -> {r.choice(ACTIVATIONS)}"
    return text

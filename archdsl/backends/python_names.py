"""Class names for the ``.py`` output when one block is built with several structures.

A block whose instances differ in structure (ResNet's ``bottleneck`` with and without its
``downsample``) becomes one class per structure. The structure with the fewest members
keeps the block's name; each other one is named by what it has that the plainest lacks:

* members (``BottleneckDownsample``, ``MbconvStochasticDepth``);
* the size of a numbered family of members (``DenseBlock6`` ... ``DenseBlock24``);
* a member of another class in the same place (``DeformConv2d`` for ``Conv2d``:
  ``BottleneckDeform``);
* failing those, the block arguments it moves off a neutral value the plainest has (1, 0,
  false): ``expand_ratio`` 6 where the plainest has 1 gives ``InvertedResidualExpand``
  (also where member names alone would repeat a name: ``MbconvStochasticDepthExpand``),
  a flag ``use_se`` true gives ``Se``; and a string argument with another value than the
  plainest's, that value (``act = "HS"``: ``BneckHs``); then its input added to its
  result, a residual (``InvertedResidualExpandSkip``).

A structure that none of these tells apart keeps a number (``Block2``). Every class of such
a block says in its docstring which arguments of the block make it this one (``with
expand_ratio = 6``), when the instances agree on any.
"""

from __future__ import annotations

import re
from typing import Any

from archdsl.backends.python_analysis import Analysis, ClassPlan
from archdsl.backends.python_forward import identifier
from archdsl.backends.torch_backend import camel

_NUMBERED = re.compile(r"(.*[^\d])(\d+)")


def name_variants(analysis: Analysis, classes: list[ClassPlan]) -> None:
    """Rename the classes of each block built with several structures (see above), and set
    each one's ``variant``: the block arguments that tell it from the others."""
    by_name: dict[str, list[ClassPlan]] = {}
    for cls in classes:
        by_name.setdefault(cls.name, []).append(cls)
    for variants in by_name.values():
        if len(variants) < 2:
            continue
        attrs = {
            id(c): [m.attr for m in c.members if m.attr and identifier(m.attr)] for c in variants
        }
        plain = min(variants, key=lambda c: (len(attrs[id(c)]), c.shortcut))
        extras = {id(c): [a for a in attrs[id(c)] if a not in attrs[id(plain)]] for c in variants}
        telling = _telling(analysis, variants) if variants[0].scope_kind == "block" else {}
        for cls in variants:
            values = telling.get(id(cls), {})
            cls.variant = ", ".join(f"{n} = {_show(v)}" for n, v in list(values.items())[:3])
        family = _numbered_family([a for c in variants if c is not plain for a in extras[id(c)]])
        if family is not None:
            for cls in variants:
                numbered = (_NUMBERED.fullmatch(a) for a in attrs[id(cls)])
                cls.name += str(sum(1 for m in numbered if m and m.group(1) == family))
            continue
        plain_leaves = _leaf_classes(analysis, plain)
        taken = {plain.name}
        for cls in variants:
            if cls is plain:
                continue
            words = _member_words(extras[id(cls)])
            words += _replaced(plain_leaves, _leaf_classes(analysis, cls))
            raised = _raised(telling.get(id(plain), {}), telling.get(id(cls), {}))
            if not words:
                words = raised + (["Skip"] if cls.shortcut and not plain.shortcut else [])
            elif cls.name + "".join(words) in taken:
                words += raised  # MbconvStochasticDepth with and without expansion
            cls.name += "".join(words)
            taken.add(cls.name)


def _member_words(attrs: list[str]) -> list[str]:
    """The first two words for members a class adds, each once: ``channel_slice`` and
    ``channel_slice_2`` (a second unlabelled one) are one ``ChannelSlice``."""
    words: list[str] = []
    for attr in attrs:
        word = camel(re.sub(r"_\d+$", "", attr))
        if word not in words:
            words.append(word)
    return words[:2]


def _numbered_family(names: list[str]) -> str | None:
    """The prefix every one of ``names`` shares before its number (``denselayer`` of
    ``denselayer7``, ``denselayer8``), or None."""
    matches = [_NUMBERED.fullmatch(n) for n in names]
    prefixes = {m.group(1) if m else None for m in matches}
    if len(prefixes) != 1 or None in prefixes:
        return None
    return prefixes.pop()


def _leaf_classes(analysis: Analysis, cls: ClassPlan) -> dict[str, str]:
    """The class every leaf module of ``cls`` is written with, by attribute path (through
    the ``nn.Sequential``s written inline)."""
    out: dict[str, str] = {}

    def visit(members: list[Any], prefix: str) -> None:
        for m in members:
            if not m.attr or m.shared:
                continue
            if m.leaf is not None:
                out[prefix + m.attr] = m.leaf.func.rsplit(".", 1)[-1]
            elif m.scope is not None and analysis.inline[m.scope.path]:
                visit(analysis.members[m.scope.path], f"{prefix}{m.attr}.")

    visit(cls.members, "")
    return out


def _replaced(plain: dict[str, str], other: dict[str, str]) -> list[str]:
    """Words for the leaves of ``other`` that specialise those of ``plain`` in the same
    places, when ``other`` has a leaf everywhere ``plain`` has one: what the new class's
    name adds to the old (``Deform`` for ``DeformConv2d`` over ``Conv2d``)."""
    words: list[str] = []
    if not plain.keys() <= other.keys():
        return words
    for path, old in plain.items():
        new = other[path]
        if new != old and new.endswith(old) and new[: -len(old)] not in words:
            words.append(new[: -len(old)])
    return words[:2]


def _telling(analysis: Analysis, variants: list[ClassPlan]) -> dict[int, dict[str, Any]]:
    """For each class of one block (by ``id``), the block's arguments (and locals) that are
    the same for all of its instances and differ between the classes, with their values."""
    frames = [[analysis.graph.scopes[path].values for path in cls.instances] for cls in variants]
    names = [n for n in frames[0][0] if all(n in f for fs in frames for f in fs)]
    telling = []
    for name in names:
        per_class = [{_show(f[name]) for f in fs} for fs in frames]
        if all(len(values) == 1 for values in per_class) and len(set.union(*per_class)) > 1:
            telling.append(name)
    return {id(cls): {n: fs[0][n] for n in telling} for cls, fs in zip(variants, frames)}


def _raised(plain: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """Words for the arguments the plainest class has at a neutral value (1, 0, false)
    and ``other`` has not: ``Expand`` for ``expand_ratio`` 6 where the plainest has 1,
    ``Se`` for ``use_se`` true; and for a string argument ``other`` has another value of,
    that value (``Hs`` for ``act = "HS"`` where the plainest has ``"RE"``)."""
    words = []
    for name, value in plain.items():
        new = other.get(name, value)
        neutral = value is False or (type(value) in (int, float) and value in (0, 1))
        if neutral and new != value:
            words.append(camel(_topic(name)))
        elif isinstance(value, str) and isinstance(new, str) and new != value:
            if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", new):
                words.append(camel(new.lower()))
    return words[:2]


# the first words of a flag's name that say only that it is one: use_se, has_skip
_FLAG_WORDS = {"use", "has", "have", "with", "is", "do", "add", "apply", "enable"}


def _topic(name: str) -> str:
    """What an argument's name is about: its first word that is not a flag word."""
    words = [w for w in name.split("_") if w]
    topical = [w for w in words if w.lower() not in _FLAG_WORDS]
    return (topical or words or [name])[0]


def _show(value: Any) -> str:
    """A value as the spec writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    return repr(value)

"""The plan of the ``.py`` output's classes: what :mod:`~archdsl.backends.python_analysis`
finds and :mod:`~archdsl.backends.python_source` writes, one dataclass each for a class's
member, constructor parameter and the class itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from archdsl.backends.python_layout import Group
from archdsl.backends.python_leaves import NO_DEFAULT, Leaf
from archdsl.ir import OpNode, Scope

if TYPE_CHECKING:
    from archdsl.backends.python_exprs import Derived


@dataclass
class Member:
    """One statement-worthy thing a scope owns: a leaf module, a child scope or a merge."""

    name: str  # local name (state_dict component); "" for merges
    inputs: list[str]  # value (node) ids
    output: str
    node: OpNode | None = None  # a leaf or merge
    scope: Scope | None = None  # a child scope
    module: nn.Module | None = None  # the leaf module, built on the meta device (None for a
    # merge, and for a parameter of the block itself: `leaf` says how to make it)
    leaf: Leaf | None = None  # how to write the leaf module
    attr: str = ""  # attribute in the emitted class ("" for merges and aliases)
    shared: bool = False  # a stateless module another member already registered


@dataclass
class ClassParam:
    """A constructor parameter of an emitted class: an argument that differs between the
    scopes the class stands for."""

    name: str
    kind: str  # "channels" or the argument name
    values: tuple[Any, ...]  # one per instance
    first: tuple[str, str]  # the first slot (member path, argument) it fills
    qualifier: str = ""  # that slot's member path as a name: "conv2", "branch2_conv1"
    word: bool = False  # named by the spec (a parameter or local of the block)
    default: Any = NO_DEFAULT  # the block parameter's literal default, when it names this


@dataclass
class ClassPlan:
    """One emitted class: the structure its instances share, and its parameters."""

    name: str
    scope_kind: str  # "root", "block", "seq" or "group"
    block: str
    span: Any
    members: list[Member]  # of the first instance: the structure all instances share
    lines: list[tuple[str, str | Group]]  # forward body: (prefix, expression)
    instances: list[str] = field(default_factory=list)  # scope paths
    shapes: list[list[Any]] = field(default_factory=list)  # per instance, per line
    params: list[ClassParam] = field(default_factory=list)
    slots: dict[tuple[str, str], ClassParam] = field(default_factory=dict)
    derived: dict[tuple[str, str], Derived] = field(default_factory=dict)  # slot -> arithmetic
    shortcut: bool = False  # the forward adds the class's input to a result (a residual)
    variant: str = ""  # for one of a block's classes, the arguments that make it this one

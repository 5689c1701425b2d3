"""Reference facts about the classic networks, and the rule their golden logits depend on.

The JSON files in ``tests/data/reference/`` are compact copies of the reference records
(see the README there). A compiled spec reproduces a record's ``golden_logits`` when its
state_dict has the same keys and shapes, is filled with :func:`fill`, cast to float64,
put in eval mode and run on :func:`golden_input`.
"""

from __future__ import annotations

import functools
import json
import math
import zlib
from pathlib import Path

import torch

REFERENCE_DIR = Path(__file__).parent / "data" / "reference"


def reference_names() -> list[str]:
    """Names of every reference network, sorted."""
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))


@functools.cache
def _load(name: str) -> str:
    path = REFERENCE_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"no reference record for {name!r}; known: {', '.join(reference_names())}")
    return path.read_text()


def load_reference(name: str) -> dict:
    """The record of one network: name, source, resolution, params, flops, output_shape,
    state_dict (key -> shape) and golden_logits (float64, batch 2). A fresh dict each call."""
    return json.loads(_load(name))


def _fill_value(name: str, t: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return torch.rand(t.shape, generator=g) + 0.5
    if leaf == "running_mean":
        return torch.randn(t.shape, generator=g) * 0.1
    if t.dim() <= 1:
        base = 1.0 if leaf == "weight" else 0.0
        return torch.randn(t.shape, generator=g) * 0.1 + base
    fan_in = t[0].numel()
    return torch.randn(t.shape, generator=g) * math.sqrt(2.0 / fan_in)


def fill(module: torch.nn.Module) -> torch.nn.Module:
    """Overwrite every floating tensor of ``module``'s state_dict, keyed by its name.

    Each tensor is drawn in float32 from a generator seeded with the CRC-32 of its
    state_dict key, so the values depend only on the key and the shape, never on the
    order of modules. Cast the module with ``.double()`` afterwards, as the reference
    did. Returns ``module`` for chaining.
    """
    sd = module.state_dict()
    with torch.no_grad():
        for name in sorted(sd):
            t = sd[name]
            if t.is_floating_point():
                t.copy_(_fill_value(name, t))
    return module


def golden_input(resolution: int | tuple[int, int]) -> torch.Tensor:
    """The float64 batch of 2 the golden logits were computed on."""
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0)).double()


BRANCH_SCALE = 0.1  # see tests/data/conditioned/make_conditioned.py


def condition(module: torch.nn.Module, scale: float = BRANCH_SCALE) -> torch.nn.Module:
    """Scale the last batch norm of every residual branch (keys ``layer*.*.bn3.*``) of a
    filled SENet, which makes its float64 logits well conditioned. Returns ``module``."""
    with torch.no_grad():
        for key, t in module.state_dict().items():
            if key.startswith("layer") and key.endswith(("bn3.weight", "bn3.bias")):
                t.mul_(scale)
    return module


def load_conditioned(name: str) -> dict:
    """A golden run under ``condition`` (tests/data/conditioned/): name, source,
    branch_scale, resolution and golden_logits."""
    path = Path(__file__).parent / "data" / "conditioned" / f"{name}.json"
    return json.loads(path.read_text())

"""Write ``regnet_space.json``: RegNet networks drawn from the design space, as torchvision
builds them (``BlockParams.from_init_params`` and ``RegNet``), for the bundled spec's
``regnet(...)`` to be checked against away from the fifteen published settings: bottleneck
multipliers other than 1, groups wider than a stage, a single stage, many.

Each entry: ``args`` (the parameters, as the spec names them), torchvision's ``depths``,
``widths`` and ``group_widths`` per stage, and ``state_dict`` (every key in order, with its
shape). Run by hand, with torchvision 0.28 importable, from the repository root:
``python tests/data/regnet_space/make_space.py``. The tests never import it.
"""

from __future__ import annotations

import json
import random
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).parent
COUNT = 40


def draw(rng: random.Random) -> dict:
    args = {
        "depth": rng.randint(1, 28),
        "w_0": 8 * rng.randint(1, 40),
        "w_a": 0.0 if rng.random() < 0.15 else round(rng.uniform(0, 120), 2),
        "w_m": round(rng.uniform(1.3, 3.0), 2),
        "group_width": rng.choice([1, 2, 4, 8, 16, 24, 48, 64, 120, 256]),
        "bottleneck": rng.choice([1.0, 1.0, 0.25, 0.5, 2.0, 4.0]),
    }
    if rng.random() < 0.5:
        args["se_ratio"] = rng.choice([0.25, 0.5])
    return args


def entry(args: dict) -> dict:
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    from torchvision.models.regnet import BlockParams, RegNet

    kwargs = {k: v for k, v in args.items() if k != "bottleneck"}
    params = BlockParams.from_init_params(bottleneck_multiplier=args["bottleneck"], **kwargs)
    with torch.device("meta"):
        net = RegNet(params)
    return {
        "args": args,
        "depths": params.depths,
        "widths": params.widths,
        "group_widths": params.group_widths,
        "state_dict": [[k, list(v.shape)] for k, v in net.state_dict().items()],
    }


if __name__ == "__main__":
    rng = random.Random(2020)
    entries = [entry(draw(rng)) for _ in range(COUNT)]
    (HERE / "regnet_space.json").write_text(json.dumps(entries, separators=(",", ":")))
    print("wrote", len(entries), "networks")

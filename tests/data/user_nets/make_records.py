"""Write the record of each network in this folder from the library it was written after.

Each ``<name>.arch`` here is a network a user might write from a paper and a library's
code, for a network archdsl does not bundle; ``<name>.json`` holds what that library's
model says of it: its source, the spec's input resolution, the parameter count, every
state_dict key with its shape, and golden logits in float64 under the reference fill
(``tests/reference.py``: ``fill``, then ``.double()``, eval mode, on ``golden_input``).

Run by hand, with torchvision 0.28 and timm 1.0.31 importable, from the repository root:
``python tests/data/user_nets/make_records.py [NAME ...]`` (every record, or those
named). The tests never import either library.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/, for reference.py

from reference import fill, golden_input  # noqa: E402

import archdsl  # noqa: E402

# name -> the library whose model the spec follows, and that model's name there
SOURCES = {
    "mobilenetv3_large_100": ("timm", "mobilenetv3_large_100"),
    "regnety_004": ("timm", "regnety_004"),
    "legacy_xception": ("timm", "legacy_xception"),
    "resnet50d": ("timm", "resnet50d"),
    "efficientnet_lite2": ("timm", "efficientnet_lite2"),
    "convnext_tiny_timm": ("timm", "convnext_tiny"),
}


def reference_model(name: str) -> torch.nn.Module:
    # torchvision's compiled ops need a CUDA build of torch; its model definitions do not
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    library, model = SOURCES[name]
    if library == "torchvision":
        import torchvision.models as tvm

        return getattr(tvm, model)()
    import timm

    return timm.create_model(model, pretrained=False)


def record(name: str) -> dict:
    resolution = archdsl.check_file(HERE / f"{name}.arch").input_shape[1]
    model = reference_model(name)
    fill(model)
    model = model.double().eval()
    with torch.no_grad():
        logits = model(golden_input(resolution))
    return {
        "name": name,
        "source": SOURCES[name][0],
        "resolution": resolution,
        "params": sum(p.numel() for p in model.parameters()),
        "state_dict": {k: list(v.shape) for k, v in model.state_dict().items()},
        "golden_logits": logits.tolist(),
    }


if __name__ == "__main__":
    for name in sys.argv[1:] or SOURCES:
        (HERE / f"{name}.json").write_text(json.dumps(record(name), separators=(",", ":")))
        print("wrote", name)

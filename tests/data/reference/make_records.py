"""Write reference records, in this folder's format, for bundled networks that the shared
reference data lacks (ConvNeXt, EfficientNetV2, MNASNet, MobileNetV3, RegNet,
ShuffleNetV2, SqueezeNet, and torchvision's FCN, DeepLabV3 and LR-ASPP): made from the
libraries by the procedure of the shared ``reference/make_reference.py`` (see README.md
here), trimmed as the copies are. A segmentation network's output is a map per class: its golden logits
are those of every ``GOLDEN_STRIDE``-th row and column, flattened per sample.

Run by hand, with torchvision 0.28 importable, from the repository root:
``python tests/data/reference/make_records.py [NAME ...]``; ``--aux`` writes
``tests/data/segmentation_aux.json``, the segmentation networks with their auxiliary head
(:func:`aux_record`); ``--fpn`` writes ``tests/data/detection_fpn.json``, torchvision's
ResNet-50 feature pyramid backbone (:func:`fpn_record`), ``--retinanet``
``tests/data/detection_retinanet.json``, RetinaNet's (the same, P3 to P7); ``--odd`` writes
``tests/data/segmentation_odd.json``, segmentation maps at a size that is not a multiple of
8 (:func:`odd_record`). The tests never import it.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/, for reference.py

from reference import fill, golden_input  # noqa: E402

# name -> (library, input resolution)
SOURCES = {
    "convnext_tiny": ("torchvision", 224),
    "convnext_small": ("torchvision", 224),
    "convnext_base": ("torchvision", 224),
    "convnext_large": ("torchvision", 224),
    "regnet_x_400mf": ("torchvision", 224),
    "regnet_x_800mf": ("torchvision", 224),
    "regnet_x_1_6gf": ("torchvision", 224),
    "regnet_x_3_2gf": ("torchvision", 224),
    "regnet_x_8gf": ("torchvision", 224),
    "regnet_x_16gf": ("torchvision", 224),
    "regnet_x_32gf": ("torchvision", 224),
    "regnet_y_400mf": ("torchvision", 224),
    "regnet_y_800mf": ("torchvision", 224),
    "regnet_y_1_6gf": ("torchvision", 224),
    "regnet_y_3_2gf": ("torchvision", 224),
    "regnet_y_8gf": ("torchvision", 224),
    "regnet_y_16gf": ("torchvision", 224),
    "regnet_y_32gf": ("torchvision", 224),
    "regnet_y_128gf": ("torchvision", 224),
    "mnasnet0_5": ("torchvision", 224),
    "mnasnet0_75": ("torchvision", 224),
    "mnasnet1_0": ("torchvision", 224),
    "mnasnet1_3": ("torchvision", 224),
    "mobilenet_v3_large": ("torchvision", 224),
    "mobilenet_v3_small": ("torchvision", 224),
    "shufflenet_v2_x0_5": ("torchvision", 224),
    "shufflenet_v2_x1_0": ("torchvision", 224),
    "shufflenet_v2_x1_5": ("torchvision", 224),
    "shufflenet_v2_x2_0": ("torchvision", 224),
    "squeezenet1_0": ("torchvision", 224),
    "squeezenet1_1": ("torchvision", 224),
    # at the resolution of torchvision's weights' transforms
    "efficientnet_v2_s": ("torchvision", 384),
    "efficientnet_v2_m": ("torchvision", 480),
    "efficientnet_v2_l": ("torchvision", 480),
    # torchvision.models.segmentation, without weights or the auxiliary head, at the
    # resolution of its weights' transforms
    "fcn_resnet50": ("torchvision", 520),
    "fcn_resnet101": ("torchvision", 520),
    "deeplabv3_resnet50": ("torchvision", 520),
    "deeplabv3_resnet101": ("torchvision", 520),
    "lraspp_mobilenet_v3_large": ("torchvision", 520),
}
SEGMENTATION = {
    "fcn_resnet50",
    "fcn_resnet101",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "lraspp_mobilenet_v3_large",
}
WITH_AUX = SEGMENTATION - {"lraspp_mobilenet_v3_large"}  # LR-ASPP has no auxiliary head
GOLDEN_STRIDE = 40  # 520 / 40: 13 x 13 positions of each class map


def model(name: str) -> torch.nn.Module:
    # torchvision's compiled ops need a CUDA build of torch; its model definitions do not
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    import torchvision.models as tvm

    torch.manual_seed(0)
    if name in SEGMENTATION:
        return getattr(tvm.segmentation, name)(weights_backbone=None, aux_loss=False)
    return getattr(tvm, name)()


class Out(torch.nn.Module):
    """A segmentation network's ``{"out": map}`` as the map."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


def record(name: str) -> dict:
    source, resolution = SOURCES[name]
    net = model(name).eval()
    fill(net)
    net = net.double()
    run = Out(net) if name in SEGMENTATION else net
    with torch.no_grad():
        logits = run(golden_input(resolution))
        with FlopCounterMode(display=False) as counter:
            run(torch.zeros(1, 3, resolution, resolution, dtype=torch.float64))
    extra = {}
    if logits.dim() == 4:
        extra["golden_stride"] = GOLDEN_STRIDE
        shown = logits[:, :, ::GOLDEN_STRIDE, ::GOLDEN_STRIDE].flatten(1)
    else:
        shown = logits
    return {
        "name": name,
        "source": source,
        "resolution": resolution,
        "params": sum(p.numel() for p in net.parameters()),
        "flops": counter.get_total_flops(),
        "output_shape": list(logits.shape),
        "state_dict": {k: list(v.shape) for k, v in net.state_dict().items()},
        "golden_logits": [[float(v) for v in row] for row in shown],
        **extra,
    }


AUX_RESOLUTION, AUX_STRIDE = 64, 16  # 4 x 4 positions of each class map


def aux_record(name: str) -> dict:
    """A segmentation network built with its auxiliary head (``aux_loss=True``, as its
    published weights are): every key and shape, parameters, and both of its maps, ``out``
    and ``aux`` (torchvision returns both in eval mode), at a small resolution."""
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    import torchvision.models as tvm

    torch.manual_seed(0)
    net = getattr(tvm.segmentation, name)(weights_backbone=None, aux_loss=True).eval()
    fill(net)
    net = net.double()
    with torch.no_grad():
        maps = net(golden_input(AUX_RESOLUTION))
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "state_dict": {k: list(v.shape) for k, v in net.state_dict().items()},
        **{
            key: [[float(v) for v in row] for row in m[:, :, ::AUX_STRIDE, ::AUX_STRIDE].flatten(1)]
            for key, m in maps.items()
        },
    }


ODD_RESOLUTION, ODD_STRIDE = 100, 9  # not a multiple of 8 (nor 16): 12 x 12 positions
ODD = ("fcn_resnet50", "deeplabv3_resnet50", "lraspp_mobilenet_v3_large")


def odd_record(name: str) -> dict:
    """A segmentation network's map at ``ODD_RESOLUTION``, where its feature maps are not a
    whole fraction of the input (13 x 13 at output stride 8, 7 x 7 at 16) and each map is
    interpolated to another's size: every ``ODD_STRIDE``-th row and column, flattened."""
    net = model(name).eval()
    fill(net)
    net = Out(net.double())
    with torch.no_grad():
        out = net(golden_input(ODD_RESOLUTION))
    shown = out[:, :, ::ODD_STRIDE, ::ODD_STRIDE].flatten(1)
    return {"shape": list(out.shape), "out": [[float(v) for v in row] for row in shown]}


FPN_RESOLUTION, FPN_CHANNEL_STRIDE, FPN_POSITIONS = 224, 32, 7
FPN_ODD_RESOLUTION = 200  # not a multiple of 32: levels of 50, 25, 13 and 7


def fpn_record(retinanet: bool = False) -> dict:
    """torchvision's ``resnet_fpn_backbone("resnet50")`` (the backbone of
    ``fasterrcnn_resnet50_fpn``, frozen batch norm, ``LastLevelMaxPool``), without weights,
    or with ``retinanet`` the backbone of ``retinanet_resnet50_fpn`` as its published
    weights have it (frozen batch norm, layer2 to layer4, ``LastLevelP6P7(256, 256)``):
    every key and shape, its parameters, and each of its five levels at every
    ``FPN_CHANNEL_STRIDE``-th channel and about ``FPN_POSITIONS`` rows and columns (every
    ``stride``-th, recorded per level), flattened per sample; the levels again at
    ``FPN_ODD_RESOLUTION`` (``odd``), where each level is not twice the next."""
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import (
        _resnet_fpn_extractor,
        resnet_fpn_backbone,
    )
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    torch.manual_seed(0)
    if retinanet:
        body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        net = _resnet_fpn_extractor(body, 5, [2, 3, 4], LastLevelP6P7(256, 256))
    else:
        net = resnet_fpn_backbone(backbone_name="resnet50", weights=None)
    net = net.eval()
    fill(net)
    net = net.double()

    def levels_at(resolution: int) -> dict:
        with torch.no_grad():
            levels = net(golden_input(resolution))
        out: dict = {}
        for key, m in levels.items():
            stride = max(1, m.shape[-1] // FPN_POSITIONS)
            shown = m[:, ::FPN_CHANNEL_STRIDE, ::stride, ::stride].flatten(1)
            out[key] = {
                "shape": list(m.shape),
                "stride": stride,
                "values": [[float(v) for v in row] for row in shown],
            }
        return out

    return {
        "resolution": FPN_RESOLUTION,
        "channel_stride": FPN_CHANNEL_STRIDE,
        "params": sum(p.numel() for p in net.parameters()),
        "state_dict": {k: list(v.shape) for k, v in net.state_dict().items()},
        "levels": levels_at(FPN_RESOLUTION),
        "odd": {"resolution": FPN_ODD_RESOLUTION, "levels": levels_at(FPN_ODD_RESOLUTION)},
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--fpn"]:  # tests/data/detection_fpn.json
        (HERE.parent / "detection_fpn.json").write_text(
            json.dumps(fpn_record(), separators=(",", ":"))
        )
        sys.exit()
    if sys.argv[1:] == ["--retinanet"]:  # tests/data/detection_retinanet.json
        (HERE.parent / "detection_retinanet.json").write_text(
            json.dumps(fpn_record(retinanet=True), separators=(",", ":"))
        )
        sys.exit()
    if sys.argv[1:] == ["--odd"]:  # tests/data/segmentation_odd.json
        records = {"resolution": ODD_RESOLUTION, "stride": ODD_STRIDE}
        records |= {name: odd_record(name) for name in ODD}
        (HERE.parent / "segmentation_odd.json").write_text(
            json.dumps(records, separators=(",", ":"))
        )
        sys.exit()
    if sys.argv[1:] == ["--aux"]:  # tests/data/segmentation_aux.json
        records = {"resolution": AUX_RESOLUTION, "stride": AUX_STRIDE}
        records |= {name: aux_record(name) for name in sorted(WITH_AUX)}
        (HERE.parent / "segmentation_aux.json").write_text(
            json.dumps(records, separators=(",", ":"))
        )
        sys.exit()
    for name in sys.argv[1:] or SOURCES:
        (HERE / f"{name}.json").write_text(json.dumps(record(name), separators=(",", ":")))
        print("wrote", name)

"""The fill rule in tests/reference.py is the one the golden logits were made with."""

import torch
from torch import nn

from reference import fill, golden_input, load_reference, reference_names


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


# First three values of each tensor of small_net() as the reference fill wrote them
# (computed once with shared/reference/make_reference.py's `fill`).
EXPECTED = {
    "0.weight": [-0.037167392671108246, 0.011190924793481827, 0.1451587826013565],
    "0.bias": [-0.0003658429777715355, -0.023699749261140823, 0.028544578701257706],
    "1.weight": [1.1896108388900757, 0.9019501209259033, 1.0462965965270996],
    "1.bias": [-0.042812615633010864, 0.03288125991821289, 0.07287850230932236],
    "1.running_mean": [-0.013734680600464344, 0.14507463574409485, -0.04993255063891411],
    "1.running_var": [0.6968883275985718, 1.1447969675064087, 1.3944005966186523],
}


def test_fill_matches_reference_values():
    sd = fill(small_net()).state_dict()
    for key, first in EXPECTED.items():
        assert torch.equal(sd[key].flatten()[:3], torch.tensor(first, dtype=torch.float32)), key
    assert sd["1.num_batches_tracked"].item() == 0


def test_fill_is_deterministic_and_independent_of_prior_state():
    torch.manual_seed(1)
    a = fill(small_net()).state_dict()
    torch.manual_seed(2)
    b = fill(small_net()).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_fill_depends_on_key_not_module_order():
    # The same key in a different network gets the same values.
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 8, 1))
    sd = fill(other).state_dict()
    ref = fill(small_net()).state_dict()
    for key in ref:
        assert torch.equal(sd[key], ref[key]), key


def test_fill_ranges():
    sd = fill(small_net()).state_dict()
    var = sd["1.running_var"]
    assert bool(((var >= 0.5) & (var < 1.5)).all())
    assert abs(float(sd["1.weight"].mean()) - 1.0) < 0.5
    assert abs(float(sd["1.bias"].mean())) < 0.5


def alexnet() -> nn.Module:
    """torchvision's AlexNet, written out so its state_dict keys match the reference."""

    class AlexNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 11, stride=4, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2),
            )
            self.avgpool = nn.AdaptiveAvgPool2d(6)
            self.classifier = nn.Sequential(
                nn.Dropout(0.5),
                nn.Linear(256 * 36, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Linear(4096, 1000),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return AlexNet()


def test_fill_and_golden_input_reproduce_alexnet_logits():
    ref = load_reference("alexnet")
    model = alexnet().eval()
    sd = model.state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == ref["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == ref["params"]
    fill(model)
    model.double()
    with torch.no_grad():
        y = model(golden_input(ref["resolution"]))
    golden = torch.tensor(ref["golden_logits"], dtype=torch.float64)
    assert list(y.shape) == ref["output_shape"]
    assert float((y - golden).abs().max()) <= 1e-6 * float(golden.abs().max())


def test_reference_records_are_complete():
    names = reference_names()
    # the shared data's 38; made here: ConvNeXt's 4, EfficientNetV2's 3, MNASNet's 4,
    # MobileNetV3's 2, RegNet's 15, ShuffleNetV2's 4, SqueezeNet's 2, FCN's 2, DeepLabV3's 2,
    # LR-ASPP's 1
    assert len(names) == 77
    for name in names:
        ref = load_reference(name)
        assert ref["name"] == name
        fields = {"name", "source", "resolution", "params", "flops", "output_shape"}
        fields |= {"state_dict", "golden_logits"}
        shape = list(ref["output_shape"])
        if len(shape) == 4:  # a map per class: every golden_stride-th row and column
            assert set(ref) == fields | {"golden_stride"}
            step = ref["golden_stride"]
            shape = [shape[0], shape[1] * -(-shape[2] // step) * -(-shape[3] // step)]
        else:
            assert set(ref) == fields
        assert shape == [len(ref["golden_logits"]), len(ref["golden_logits"][0])]

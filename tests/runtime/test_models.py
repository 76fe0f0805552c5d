"""Model families and the registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lepton_runtime.contract import LeptonNetSpec, MLPSpec, UserModelSpec
from lepton_runtime.errors import JobError
from lepton_runtime.models import build_model, input_shape, spec_fingerprint
from lepton_runtime.models.leptonnet import ConvBlock, LeptonNet, Normalize, group_count

pytestmark = pytest.mark.runtime

STOCK_PARAMETERS = 278_890
"""Parameters of the default LeptonNet, before stages/kernel/activation/norm existed."""
STOCK_FINGERPRINT = "99175b2e5743e488"
"""spec_fingerprint(LeptonNetSpec()) before the new fields: checkpoints carry it."""


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class _StockConvBlock(nn.Sequential):
    """The conv3x3-bn-relu block as it was before the architecture knobs (a frozen copy)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class _StockLeptonNet(nn.Module):
    """The three-stage LeptonNet as it was before the architecture knobs (a frozen copy)."""

    def __init__(self, width_multiplier: float = 1.0, depth_multiplier: float = 1.0) -> None:
        super().__init__()
        self.normalize = Normalize(0.1307, 0.3081)
        stages: list[nn.Module] = []
        channels = 1
        for index, (base_width, base_depth) in enumerate(
            zip((32, 64, 128), (1, 2, 2), strict=True)
        ):
            width = max(4, round(base_width * width_multiplier))
            depth = max(1, math.ceil(base_depth * depth_multiplier))
            blocks: list[nn.Module] = [nn.MaxPool2d(2)] if index > 0 else []
            for _ in range(depth):
                blocks.append(_StockConvBlock(channels, width))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(channels, 10)


def _layout(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in model.state_dict().items()]


def _leaves(model: nn.Module) -> list[tuple[str, str]]:
    """Name and repr (class and hyperparameters) of every module without children."""
    return [(name, repr(m)) for name, m in model.named_modules() if not list(m.children())]


def _stages(model: nn.Module) -> list[nn.Module]:
    return list(model.get_submodule("features").children())


def _blocks_per_stage(model: nn.Module) -> list[int]:
    return [sum(isinstance(m, ConvBlock) for m in stage.children()) for stage in _stages(model)]


def _conv_blocks(model: nn.Module) -> list[ConvBlock]:
    return [m for m in model.modules() if isinstance(m, ConvBlock)]


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def _tiny(**fields: object) -> nn.Module:
    return build_model(LeptonNetSpec.model_validate({"width_multiplier": 0.25, **fields}))


def test_leptonnet_multipliers_scale_the_network() -> None:
    small = build_model(LeptonNetSpec(width_multiplier=0.25, depth_multiplier=0.5))
    base = build_model(LeptonNetSpec())
    deep = build_model(LeptonNetSpec(depth_multiplier=2.0))
    assert _params(small) < _params(base) < _params(deep)
    x = torch.rand(3, *input_shape(LeptonNetSpec()))
    assert tuple(base.eval()(x).shape) == (3, 10)


def test_mlp_and_user_models_build() -> None:
    mlp = build_model(MLPSpec(hidden_sizes=[16, 8], num_classes=5))
    assert tuple(mlp(torch.rand(2, 1, 28, 28)).shape) == (2, 5)
    user = build_model(UserModelSpec(factory="helpers_models:small_mlp", kwargs={"hidden": 4}))
    assert tuple(user(torch.rand(2, 1, 28, 28)).shape) == (2, 10)


def test_missing_user_model_is_a_runtime_failure() -> None:
    with pytest.raises(JobError, match="cannot import"):
        build_model(UserModelSpec(factory="no_such_module:factory"))


def test_fingerprint_tells_architectures_apart() -> None:
    assert spec_fingerprint(LeptonNetSpec()) == spec_fingerprint(LeptonNetSpec())
    assert spec_fingerprint(LeptonNetSpec()) != spec_fingerprint(LeptonNetSpec(width_multiplier=2))


@pytest.mark.parametrize(
    ("width", "depth"), [(1.0, 1.0), (0.25, 0.5), (2.0, 2.0)], ids=["default", "small", "big"]
)
def test_default_knobs_give_the_stock_network(width: float, depth: float) -> None:
    """Artifacts and checkpoints written before the knobs existed must still load."""
    stock = _StockLeptonNet(width, depth)
    model = build_model(LeptonNetSpec(width_multiplier=width, depth_multiplier=depth))
    assert _layout(model) == _layout(stock)
    assert _leaves(model) == _leaves(stock)
    assert _params(model) == _params(stock)
    model.load_state_dict(stock.state_dict(), strict=True)


def test_default_network_is_pinned() -> None:
    model = build_model(LeptonNetSpec())
    assert _params(model) == STOCK_PARAMETERS and len(model.state_dict()) == 32
    assert [len(list(stage.children())) for stage in _stages(model)] == [1, 3, 3]  # pool + 2
    assert spec_fingerprint(LeptonNetSpec()) == STOCK_FINGERPRINT


VARIANTS: dict[str, dict[str, object]] = {
    "one-stage": {"stages": 1},
    "two-stages": {"stages": 2},
    "four-stages": {"stages": 4},
    "one-block": {"blocks_per_stage": 1},
    "three-blocks": {"blocks_per_stage": 3},
    "kernel-5": {"kernel_size": 5},
    "kernel-7": {"kernel_size": 7},
    "gelu": {"activation": "gelu"},
    "silu": {"activation": "silu"},
    "group-norm": {"normalization": "group"},
    "no-norm": {"normalization": "none"},
    "mixed": {"stages": 4, "kernel_size": 5, "activation": "gelu", "normalization": "group"},
    "separable": {"convolution": "separable", "kernel_size": 5},
}
NORMS = {"batch": nn.BatchNorm2d, "group": nn.GroupNorm, "none": nn.Identity}
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


@pytest.mark.parametrize("fields", VARIANTS.values(), ids=VARIANTS.keys())
def test_variants_build_and_run(fields: dict[str, object]) -> None:
    spec = LeptonNetSpec.model_validate({"width_multiplier": 0.25, **fields})
    model = build_model(spec)
    logits = model.train()(torch.rand(2, *input_shape(spec)))
    assert tuple(logits.shape) == (2, 10) and torch.isfinite(logits).all()
    assert tuple(model.eval()(torch.rand(2, 1, 28, 28)).shape) == (2, 10)
    for block in _conv_blocks(model):  # the (conv, norm, activation) layout compression needs
        conv, norm, activation = block
        assert isinstance(conv, nn.Conv2d)
        kernel = 1 if _is_pointwise(conv, spec) else spec.kernel_size
        assert conv.kernel_size == (kernel,) * 2
        assert conv.padding == (kernel // 2,) * 2
        assert (conv.bias is not None) == (spec.normalization == "none")
        assert type(norm) is NORMS[spec.normalization]
        assert type(activation) is ACTIVATIONS[spec.activation]


def _is_pointwise(conv: nn.Conv2d, spec: LeptonNetSpec) -> bool:
    """The 1 x 1 half of a separable block: every block's conv but the first sees features."""
    return spec.convolution == "separable" and conv.groups == 1 and conv.in_channels > 1


def test_separable_blocks_are_depthwise_then_pointwise() -> None:
    spec = LeptonNetSpec(width_multiplier=0.5, convolution="separable")
    convs = _convs(build_model(spec))
    standard = _convs(build_model(LeptonNetSpec(width_multiplier=0.5)))
    first, rest = convs[0], convs[1:]
    # The first block sees the one-channel image: it stays the standard conv.
    assert (first.in_channels, first.out_channels, first.groups) == (1, 16, 1)
    assert len(rest) == 2 * (len(standard) - 1)
    for depthwise, pointwise, replaced in zip(rest[::2], rest[1::2], standard[1:], strict=True):
        channels = replaced.in_channels
        assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == channels
        assert depthwise.weight.shape == (channels, 1, 3, 3)
        assert pointwise.kernel_size == (1, 1) and pointwise.groups == 1
        assert (pointwise.in_channels, pointwise.out_channels) == (channels, replaced.out_channels)


@pytest.mark.parametrize("width", [0.5, 1.0, 2.0])
def test_separable_convolutions_need_far_fewer_parameters(width: float) -> None:
    standard = _params(build_model(LeptonNetSpec(width_multiplier=width)))
    separable = _params(build_model(LeptonNetSpec(width_multiplier=width, convolution="separable")))
    assert separable * 4 < standard  # 36,298 against 278,890 at width 1.0


def test_four_stages_pool_28_to_3() -> None:
    model = _tiny(stages=4).eval()
    x = model.get_submodule("normalize")(torch.rand(2, 1, 28, 28))
    sides = []
    for stage in _stages(model):
        x = stage(x)
        sides.append(x.shape[-1])
    assert sides == [28, 14, 7, 3]
    assert [block[0].out_channels for block in _conv_blocks(model)][-1] == 64  # 256 * 0.25


def test_blocks_per_stage_overrides_the_depth_multiplier() -> None:
    model = build_model(
        LeptonNetSpec(width_multiplier=0.25, depth_multiplier=3, blocks_per_stage=2)
    )
    assert isinstance(model, LeptonNet) and _blocks_per_stage(model) == [2, 2, 2]
    deep = build_model(LeptonNetSpec(width_multiplier=0.25, depth_multiplier=1.5, stages=4))
    assert _blocks_per_stage(deep) == [2, 3, 3, 3]


def test_fewer_stages_or_blocks_mean_fewer_parameters() -> None:
    by_stages = [_params(_tiny(stages=n)) for n in (1, 2, 3, 4)]
    assert by_stages == sorted(set(by_stages))
    assert (
        _params(_tiny(blocks_per_stage=1)) < _params(_tiny()) < _params(_tiny(blocks_per_stage=3))
    )
    assert (
        _params(_tiny(kernel_size=3))
        < _params(_tiny(kernel_size=5))
        < _params(_tiny(kernel_size=7))
    )


@pytest.mark.parametrize(
    ("channels", "groups"), [(4, 1), (6, 1), (8, 2), (12, 3), (16, 4), (24, 6), (32, 8), (256, 8)]
)
def test_group_norm_keeps_at_least_four_channels_per_group(channels: int, groups: int) -> None:
    assert group_count(channels) == groups


def test_group_norm_layers_use_group_count() -> None:
    model = build_model(LeptonNetSpec(width_multiplier=0.375, normalization="group"))
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert [(n.num_channels, n.num_groups) for n in norms] == [(12, 3)] + [(24, 6)] * 2 + [
        (48, 8)
    ] * 2


def test_every_knob_changes_the_fingerprint() -> None:
    fingerprints = {spec_fingerprint(LeptonNetSpec.model_validate(f)) for f in VARIANTS.values()}
    assert len(fingerprints) == len(VARIANTS)
    assert STOCK_FINGERPRINT not in fingerprints
    explicit_defaults = LeptonNetSpec(stages=3, kernel_size=3, activation="relu")
    assert spec_fingerprint(explicit_defaults) == STOCK_FINGERPRINT

"""LeptonNet: a small hierarchical CNN family for 28x28 images.

One to four stages of conv-norm-activation blocks with max-pooling between them, global average
pooling and a linear head. Width and depth multipliers scale channels and blocks, so the same
code gives a tiny model for tests and a 99%-class model for MNIST; kernel size, activation,
normalisation and the convolution (standard, or depthwise-separable as in MobileNet) are the
other knobs. With every default it is the original three-stage
conv3x3-bn-relu network, so artifacts written before the knobs existed still load. Inputs are
raw pixels in [0, 1]; the normalisation lives inside the model so a served model needs no
client-side preprocessing.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
from torch import nn

BASE_CHANNELS = (32, 64, 128, 256)
BASE_BLOCKS = (1, 2, 2, 2)
MAX_GROUPS = 8
MIN_GROUP_CHANNELS = 4
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

Activation = Literal["relu", "gelu", "silu"]
Normalization = Literal["batch", "group", "none"]
Convolution = Literal["standard", "separable"]


def group_count(channels: int) -> int:
    """GroupNorm groups: the most (up to 8) dividing `channels` with >= 4 channels each, or 1."""
    candidates = range(MAX_GROUPS, 0, -1)
    fitting = (g for g in candidates if channels % g == 0 and channels // g >= MIN_GROUP_CHANNELS)
    return next(fitting, 1)


def make_norm(kind: Normalization, channels: int) -> nn.Module:
    """The normalisation after a convolution."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    return nn.Identity()


def make_activation(kind: Activation) -> nn.Module:
    """The non-linearity after a normalisation."""
    if kind == "gelu":
        return nn.GELU()
    if kind == "silu":
        return nn.SiLU()
    return nn.ReLU(inplace=True)


class ConvBlock(nn.Sequential):
    """conv -> norm -> activation at indexes 0, 1, 2: the unit pruning and int8 fusion work on."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        activation: Activation = "relu",
        normalization: Normalization = "batch",
        groups: int = 1,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size=kernel_size,
                padding=kernel_size // 2,
                groups=groups,
                # A norm's shift makes a conv bias redundant; without a norm the conv needs it.
                bias=normalization == "none",
            ),
            make_norm(normalization, out_channels),
            make_activation(activation),
        )


class Normalize(nn.Module):
    """Fixed per-dataset standardisation, part of the model so clients send raw pixels."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv_blocks(
    in_channels: int,
    out_channels: int,
    *,
    separable: bool,
    kernel_size: int,
    activation: Activation,
    normalization: Normalization,
) -> list[ConvBlock]:
    """One standard ConvBlock, or its depthwise-separable form: a k x k ConvBlock per channel
    (groups = channels) and a 1 x 1 ConvBlock that mixes them, k * k + out_channels weights per
    input channel instead of k * k * out_channels. Both halves keep the conv-norm-activation
    layout, so pruning, batch-norm folding, weight sharing and int8 fusion treat them as any
    other block."""
    block = functools.partial(ConvBlock, activation=activation, normalization=normalization)
    if not separable:
        return [block(in_channels, out_channels, kernel_size=kernel_size)]
    return [
        block(in_channels, in_channels, kernel_size=kernel_size, groups=in_channels),
        block(in_channels, out_channels, kernel_size=1),
    ]


def stage_depths(stages: int, depth_multiplier: float, blocks_per_stage: int | None) -> list[int]:
    """Blocks per stage: `blocks_per_stage` everywhere, else 1/2/2/2 scaled (at least 1)."""
    if not 1 <= stages <= len(BASE_BLOCKS):
        raise ValueError(f"stages must be 1..{len(BASE_BLOCKS)}, got {stages}")
    if blocks_per_stage is not None:
        return [blocks_per_stage] * stages
    return [max(1, math.ceil(base * depth_multiplier)) for base in BASE_BLOCKS[:stages]]


class LeptonNet(nn.Module):
    """Stages of ConvBlocks, pooled between stages, then GAP + dropout + linear."""

    def __init__(
        self,
        width_multiplier: float = 1.0,
        depth_multiplier: float = 1.0,
        num_classes: int = 10,
        in_channels: int = 1,
        dropout: float = 0.1,
        *,
        stages: int = 3,
        blocks_per_stage: int | None = None,
        kernel_size: int = 3,
        activation: Activation = "relu",
        normalization: Normalization = "batch",
        convolution: Convolution = "standard",
    ) -> None:
        super().__init__()
        self.normalize = Normalize(MNIST_MEAN, MNIST_STD)
        depths = stage_depths(stages, depth_multiplier, blocks_per_stage)
        layers: list[nn.Module] = []
        channels = in_channels
        for index, (base_width, depth) in enumerate(zip(BASE_CHANNELS, depths, strict=False)):
            width = max(4, round(base_width * width_multiplier))
            blocks: list[nn.Module] = [nn.MaxPool2d(2)] if index > 0 else []
            for _ in range(depth):
                blocks.extend(
                    conv_blocks(
                        channels,
                        width,
                        # The first block sees the raw image: a depthwise conv over its one
                        # channel would only scale it, so that block stays standard (as in
                        # MobileNet).
                        separable=convolution == "separable" and (index > 0 or bool(blocks)),
                        kernel_size=kernel_size,
                        activation=activation,
                        normalization=normalization,
                    )
                )
                channels = width
            layers.append(nn.Sequential(*blocks))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        x = torch.flatten(self.pool(x), 1)
        return self.head(self.dropout(x))  # type: ignore[no-any-return]

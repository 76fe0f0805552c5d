"""LeptonNet: a small hierarchical CNN family for 28x28 images.

Three stages of conv-bn-relu blocks with max-pooling between them, global average pooling and
a linear head. Width and depth multipliers scale channels and blocks, so the same code gives a
tiny model for tests and a 99%-class model for MNIST. Inputs are raw pixels in [0, 1]; the
normalisation lives inside the model so a served model needs no client-side preprocessing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BASE_CHANNELS = (32, 64, 128)
BASE_BLOCKS = (1, 2, 2)
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class ConvBlock(nn.Sequential):
    """conv3x3 -> batch norm -> ReLU; the unit that pruning and int8 fusion work on."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Normalize(nn.Module):
    """Fixed per-dataset standardisation, part of the model so clients send raw pixels."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class LeptonNet(nn.Module):
    """Stages of ConvBlocks, pooled between stages, then GAP + dropout + linear."""

    def __init__(
        self,
        width_multiplier: float = 1.0,
        depth_multiplier: float = 1.0,
        num_classes: int = 10,
        in_channels: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(MNIST_MEAN, MNIST_STD)
        stages: list[nn.Module] = []
        channels = in_channels
        for index, (base_width, base_depth) in enumerate(
            zip(BASE_CHANNELS, BASE_BLOCKS, strict=True)
        ):
            width = max(4, round(base_width * width_multiplier))
            depth = max(1, math.ceil(base_depth * depth_multiplier))
            blocks: list[nn.Module] = [nn.MaxPool2d(2)] if index > 0 else []
            for _ in range(depth):
                blocks.append(ConvBlock(channels, width))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        x = torch.flatten(self.pool(x), 1)
        return self.head(self.dropout(x))  # type: ignore[no-any-return]

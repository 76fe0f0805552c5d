"""A multi-layer perceptron over flattened images: the simplest baseline, all-Linear (so
dynamic int8 quantization covers every weight)."""

from __future__ import annotations

import torch
from torch import nn

from lepton_runtime.models.leptonnet import MNIST_MEAN, MNIST_STD, Normalize


class MLP(nn.Module):
    """Flatten -> (Linear -> ReLU)* -> Linear."""

    def __init__(self, input_size: int, hidden_sizes: list[int], num_classes: int) -> None:
        super().__init__()
        self.normalize = Normalize(MNIST_MEAN, MNIST_STD)
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_size
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.normalize(x))  # type: ignore[no-any-return]

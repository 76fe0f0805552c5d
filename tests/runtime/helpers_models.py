"""User-model factories that tests reference by import path (`helpers_models:...`)."""

import torch
from torch import nn


class _Diverging(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.linear(x.flatten(1))
        return logits * float("nan")


def diverging() -> nn.Module:
    """A model whose loss is NaN from the first step."""
    return _Diverging()


def small_mlp(hidden: int = 32) -> nn.Module:
    """A user-defined MLP."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

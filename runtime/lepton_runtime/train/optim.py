"""Optimiser and learning-rate schedule from the hyperparameters."""

from __future__ import annotations

import math

import torch
from torch import nn

from lepton_runtime.contract import Hyperparameters


def make_optimizer(model: nn.Module, hp: Hyperparameters) -> torch.optim.Optimizer:
    """sgd (momentum 0.9, nesterov), adam or adamw."""
    params = model.parameters()
    if hp.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=hp.learning_rate, momentum=0.9, nesterov=True, weight_decay=hp.weight_decay
        )
    if hp.optimizer == "adam":
        return torch.optim.Adam(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    return torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)


def make_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 5% of steps, then cosine decay to zero."""
    warmup = max(1, total_steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

"""Model measurements that training and compression both report: size and batch-1 latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _synchronizer(device: torch.device) -> Callable[[], None]:
    # CUDA calls return once kernels are queued: wait for them, or we time only the launch.
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@torch.no_grad()
def latency_ms(
    module: nn.Module | torch.jit.ScriptModule,
    samples: torch.Tensor,
    runs: int = 50,
    warmup: int = 5,
    device: torch.device | None = None,
) -> float:
    """Median batch-1 latency in milliseconds of `module` in eval mode on `device`.

    Calls take the first `runs` samples one at a time (cycling if there are fewer), after
    `warmup` untimed calls; inputs are moved to the device beforehand, outside the timing.
    """
    if len(samples) == 0:
        raise ValueError("latency needs at least one sample")
    device = device or samples.device
    inputs = [samples[i : i + 1].to(device) for i in range(min(runs, len(samples)))]
    sync = _synchronizer(device)
    module.eval()
    for index in range(warmup):
        module(inputs[index % len(inputs)])
    sync()
    timings = []
    for index in range(runs):
        started = time.perf_counter()
        module(inputs[index % len(inputs)])
        sync()
        timings.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(timings)

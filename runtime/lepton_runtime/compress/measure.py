"""What we report per trial, measured on the artifact we would ship (not the eager model)."""

from __future__ import annotations

import statistics
import time

import torch


@torch.no_grad()
def latency_ms(
    module: torch.nn.Module | torch.jit.ScriptModule, sample: torch.Tensor, runs: int = 50
) -> float:
    """Median batch-1 latency in milliseconds, after a few warm-up calls."""
    one = sample[:1]
    for _ in range(5):
        module(one)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        module(one)
        timings.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(timings)

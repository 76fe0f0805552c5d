"""The inner loops shared by training and compression fine-tuning."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from lepton_runtime.data.sources import Split
from lepton_runtime.errors import JobError
from lepton_runtime.train.distributed import DistContext


def shard_batches(
    split: Split, batch_size: int, ctx: DistContext, *, seed: int, epoch: int, skip: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's batches of one epoch, like DistributedSampler(shuffle=True, drop_last=True).

    The order depends only on (seed, epoch), so a resumed run can `skip` the batches it had
    already trained on and continue with exactly the same data.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(split), generator=generator)
    per_rank = len(order) // ctx.world_size
    mine = order[ctx.rank * per_rank : (ctx.rank + 1) * per_rank]
    batches = max(1, per_rank // batch_size) if per_rank >= batch_size else 1
    for index in range(skip, batches):
        chunk = mine[index * batch_size : (index + 1) * batch_size]
        yield split.images[chunk], split.labels[chunk]


def step_seeds(seed: int, step: int, rank: int) -> tuple[int, int]:
    """Two independent seeds for one optimiser step of one rank: (augmentation, modules).

    Every random draw of a step (augmentation, dropout) comes from streams that depend only on
    (seed, step, rank), not on the draws before it, so a run resumed from a checkpoint at any
    step draws exactly what the uninterrupted run would have: a hyperband rung that continues
    a trial ends where one job of all its epochs ends. NumPy's SeedSequence mixes the key into
    well-separated seeds.
    """
    augmentation, modules = np.random.SeedSequence([seed, step, rank]).generate_state(2)
    return int(augmentation), int(modules)


def seed_modules(seed: int, device: torch.device) -> None:
    """Seed the generators that modules (dropout) draw from on `device`: the CPU's, and the
    current GPU's on CUDA. `torch.manual_seed` goes through every backend's hook as well:
    ~80 us a call on a 2-core CPU machine, where this takes ~1 us."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def batches_per_epoch(samples: int, batch_size: int, world_size: int) -> int:
    """Steps per epoch for each rank (the same on every rank, so DDP stays in lockstep)."""
    per_rank = samples // world_size
    return max(1, per_rank // batch_size) if per_rank >= batch_size else 1


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Small random rotations, scalings and shifts: cheap regularisation for digits."""
    count = images.shape[0]
    angle = (torch.rand(count, generator=generator) - 0.5) * (2 * math.pi * 10 / 360)
    scale = 1.0 + (torch.rand(count, generator=generator) - 0.5) * 0.2
    shift = (torch.rand(count, 2, generator=generator) - 0.5) * (2 * 2.5 / 14)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    autocast: Callable[[], torch.autocast] | None,
    step: int,
) -> float:
    """One optimiser step; raises JobError when the loss or gradients stop being finite.

    The check uses the gradient norm, which DDP has already all-reduced: every rank sees the
    same value and fails at the same step, so no rank is left waiting in a collective.
    """
    optimizer.zero_grad(set_to_none=True)
    if autocast is not None:
        with autocast():
            loss = F.cross_entropy(model(images), labels)
    else:
        loss = F.cross_entropy(model(images), labels)
    loss.backward()  # type: ignore[no-untyped-call]
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e6)
    value = float(loss.detach())
    if not math.isfinite(value) or not math.isfinite(float(grad_norm)):
        raise JobError(f"loss is not finite at step {step} (loss={value}); lower the learning rate")
    optimizer.step()
    return value


@torch.no_grad()
def evaluate(
    model: nn.Module | torch.jit.ScriptModule,
    split: Split,
    ctx: DistContext | None = None,
    batch_size: int = 500,
) -> float:
    """Top-1 accuracy; with a DistContext each rank scores a shard and the counts are summed."""
    model.eval()
    rank, world = (ctx.rank, ctx.world_size) if ctx else (0, 1)
    device = ctx.device if ctx else torch.device("cpu")
    indices = torch.arange(rank, len(split), world)
    correct = 0
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        logits = model(split.images[chunk].to(device))
        correct += int((logits.argmax(1).cpu() == split.labels[chunk]).sum())
    totals = ctx.all_reduce_sum([float(correct), float(len(indices))]) if ctx else None
    if totals is not None:
        return totals[0] / max(totals[1], 1.0)
    return correct / max(len(indices), 1)

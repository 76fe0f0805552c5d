"""Magnitude pruning with masks that survive fine-tuning.

Each round computes fresh masks from the current weights (so already-pruned zeros stay pruned:
they have the smallest magnitude) and installs them with `torch.nn.utils.prune`, whose forward
pre-hooks keep masked weights at zero while fine-tuning updates the rest. `make_permanent`
bakes the masks into plain weights before quantization and export.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from lepton_runtime.errors import JobError

PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_modules(model: nn.Module, method: str) -> list[nn.Module]:
    """Weights the method prunes: conv + linear (unstructured) or conv only (structured)."""
    kinds: tuple[type[nn.Module], ...] = (nn.Conv2d,) if method == "l1-structured" else PRUNABLE
    return [module for module in model.modules() if isinstance(module, kinds)]


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight.detach()


def _global_unstructured_masks(modules: list[nn.Module], sparsity: float) -> list[torch.Tensor]:
    magnitudes = torch.cat([_weight(m).abs().flatten() for m in modules])
    count = round(sparsity * magnitudes.numel())
    if count == 0:
        return [torch.ones_like(_weight(m)) for m in modules]
    threshold = torch.kthvalue(magnitudes, count).values
    return [(_weight(m).abs() > threshold).float() for m in modules]


def _structured_masks(modules: list[nn.Module], sparsity: float) -> list[torch.Tensor]:
    """Whole output channels with the smallest L1 norm, per layer (keeps at least one)."""
    masks = []
    for module in modules:
        weight = _weight(module)
        norms = weight.abs().flatten(1).sum(1)
        drop = min(round(sparsity * len(norms)), len(norms) - 1)
        mask = torch.ones_like(weight)
        if drop > 0:
            mask[torch.argsort(norms)[:drop]] = 0.0
        masks.append(mask)
    return masks


def apply_sparsity(model: nn.Module, method: str, sparsity: float) -> None:
    """Prune `model` in place to `sparsity` of its prunable weights (masks stay attached)."""
    make_permanent(model)
    modules = prunable_modules(model, method)
    if not modules:
        return
    if method == "l1-structured":
        masks = _structured_masks(modules, sparsity)
    else:
        masks = _global_unstructured_masks(modules, sparsity)
    for module, mask in zip(modules, masks, strict=True):
        prune.custom_from_mask(module, "weight", mask)  # type: ignore[no-untyped-call]


def make_permanent(model: nn.Module) -> None:
    """Remove pruning re-parametrisations, leaving zeros in plain `weight` tensors."""
    for module in model.modules():
        if prune.is_pruned(module) and hasattr(module, "weight_orig"):
            prune.remove(module, "weight")  # type: ignore[no-untyped-call]


def measure_sparsity(model: nn.Module, method: str = "l1-unstructured") -> float:
    """Fraction of exactly-zero weights among the prunable ones."""
    modules = prunable_modules(model, method)
    total = sum(_weight(m).numel() for m in modules)
    zeros = sum(int((_weight(m) == 0).sum()) for m in modules)
    return zeros / total if total else 0.0


def count_weights(model: nn.Module) -> tuple[int, int]:
    """(all, non-zero) weights of the conv and linear layers: what pruning papers count."""
    modules = prunable_modules(model, "l1-unstructured")
    return (
        sum(_weight(m).numel() for m in modules),
        sum(int((_weight(m) != 0).sum()) for m in modules),
    )


def reachable_sparsity(model: nn.Module, method: str) -> float:
    """The most sparsity `method` can reach on `model` (structured keeps a channel a layer)."""
    modules = prunable_modules(model, method)
    total = sum(_weight(m).numel() for m in modules)
    if not total:
        return 0.0
    if method != "l1-structured":
        return (total - 1) / total
    kept = sum(_weight(m)[0].numel() for m in modules)
    return (total - kept) / total


def check_reachable(model: nn.Module, method: str, target: float) -> None:
    """JobError naming pruning.targetSparsity when `method` cannot prune `model` that far."""
    reachable = reachable_sparsity(model, method)
    if target <= reachable + 1e-6:
        return
    if reachable == 0:
        why = f"{method} finds no weights to prune (l1-structured prunes conv channels only)"
    else:
        why = f"{method} reaches at most {reachable:.4f} (l1-structured keeps a channel a conv)"
    raise JobError(
        f"pruning.targetSparsity {target} cannot be reached on this model: {why}; lower "
        "pruning.targetSparsity, or use l1-unstructured"
    )


def cubic_schedule(target: float, steps: int) -> list[float]:
    """Sparsity after each round: fast early, gentle near the target (Zhu & Gupta, 2017)."""
    return [target * (1.0 - (1.0 - (k + 1) / steps) ** 3) for k in range(steps)]

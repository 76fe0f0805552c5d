"""Weight sharing: each conv/linear weight becomes a few shared values (Deep Compression).

Per layer, 1-D k-means with 2**bits centroids (Han et al., 2016) replaces every non-zero weight
by its nearest centroid, so the layer is stored as a small float32 codebook plus a `bits`-wide
index per weight. Pruned weights (exact zeros) are not clustered and stay exactly zero: they
are the sparsity the compact artifact stores as a bitmask, and letting k-means pull a centroid
towards zero would waste one of the few values on weights that are not there.

Centroids start evenly spaced between the smallest and largest non-zero weight: the paper's
linear initialisation, which keeps centroids for the rare large weights that matter most
(density-based starts spend them all near zero). In one dimension the nearest centroid is a
bucket between sorted midpoints, so Lloyd's iterations are a bucketize and two bincounts.

`fine_tune_centroids` then trains the centroids with the indices fixed: each centroid moves
by the sum of the gradients of the weights that share it.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from lepton_runtime.compress.prune import PRUNABLE, make_permanent
from lepton_runtime.errors import JobError

PRUNED = -1
"""Index of a pruned weight: no centroid, the weight is exactly zero."""
MIN_BITS, MAX_BITS = 2, 8
LLOYD_ITERATIONS = 30


@dataclass(frozen=True, eq=False)
class Codebook:
    """One layer's shared weights: `weight == centroids[indices]`, zero where pruned."""

    bits: int
    """Width of one stored index; len(centroids) <= 2**bits."""
    centroids: torch.Tensor
    """float32 [k], the shared values (sorted after clustering; fine-tuning may reorder)."""
    indices: torch.Tensor
    """int64, the weight's shape: a centroid per weight, PRUNED (-1) where it is zero."""

    def weight(self) -> torch.Tensor:
        """The float32 weight this codebook stands for."""
        return decode(self.centroids, self.indices)


def decode(centroids: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """centroids[indices] with zeros at PRUNED (a zero prepended takes index -1 + 1)."""
    padded = torch.cat([centroids.new_zeros(1), centroids])
    return padded[indices + 1]


def _check_bits(bits: int) -> None:
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be {MIN_BITS}..{MAX_BITS}, got {bits}")


def _nearest(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted `centroids` for each value (float64 midpoints)."""
    midpoints = (centroids[1:].double() + centroids[:-1].double()) / 2
    return torch.bucketize(values.double(), midpoints)


def cluster(weight: torch.Tensor, bits: int, iterations: int = LLOYD_ITERATIONS) -> Codebook:
    """k-means of the non-zero entries of `weight` with 2**bits linearly initialised centroids.

    Empty clusters are dropped at the end, so a layer with few distinct values gets a shorter
    codebook; the index width stays `bits`.
    """
    _check_bits(bits)
    flat = weight.detach().float().flatten()
    nonzero = flat != 0
    indices = torch.full(flat.shape, PRUNED, dtype=torch.int64, device=flat.device)
    values = flat[nonzero].double()
    if values.numel() == 0:
        return Codebook(bits, flat.new_zeros(0), indices.reshape(weight.shape))
    low, high = float(values.min()), float(values.max())
    centroids = torch.linspace(low, high, 2**bits, dtype=torch.float64, device=flat.device)
    for _ in range(iterations):
        assigned = _nearest(values, centroids)
        counts = torch.bincount(assigned, minlength=len(centroids))
        sums = torch.bincount(assigned, weights=values, minlength=len(centroids))
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centroids).sort().values
        if torch.equal(updated, centroids):
            break
        centroids = updated
    # Round to float32 (what is stored), merge centroids that became equal, drop empty ones.
    shared = torch.unique(centroids.float())
    assigned = _nearest(values, shared)
    used = torch.unique(assigned)
    indices[nonzero] = torch.searchsorted(used, assigned)
    return Codebook(bits, shared[used].contiguous(), indices.reshape(weight.shape))


def _shared_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv2d/Linear modules by the state-dict key of their weight."""
    return {
        f"{name}.weight" if name else "weight": module
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE)
    }


def share_weights(
    model: nn.Module, bits: int, iterations: int = LLOYD_ITERATIONS
) -> tuple[nn.Module, dict[str, Codebook]]:
    """A copy of `model` (eval mode) whose conv/linear weights are their layer's centroids.

    Returns the codebooks by state-dict key (`features.0.0.weight`); pruning masks still
    attached are made permanent in the copy first; the input model is left untouched.
    """
    _check_bits(bits)
    shared = copy.deepcopy(model).eval()
    make_permanent(shared)
    codebooks: dict[str, Codebook] = {}
    for key, module in _shared_layers(shared).items():
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        codebook = cluster(weight, bits, iterations)
        with torch.no_grad():
            weight.copy_(codebook.weight())
        codebooks[key] = codebook
    return shared, codebooks


def fine_tune_centroids(
    model: nn.Module,
    codebooks: dict[str, Codebook],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    lr: float,
) -> dict[str, Codebook]:
    """Train the centroids of `model` in place for `steps` Adam steps; returns new codebooks.

    Indices stay fixed (so pruned weights stay zero and each layer keeps its 2**bits values):
    a centroid's gradient is the sum of the gradients of the weights that share it, and the
    weights are rewritten from the centroids after every step. Only centroids move: the model
    runs in eval mode, so batch-norm statistics, dropout and the other parameters are frozen.
    `batches` (images, labels) are cycled when there are fewer than `steps`.
    """
    if steps <= 0 or not codebooks:
        return dict(codebooks)
    parameters = dict(model.named_parameters())
    for key, codebook in codebooks.items():
        if key not in parameters or parameters[key].shape != codebook.indices.shape:
            raise ValueError(f"{key} is not a weight of the model with the codebook's shape")
    data = list(batches)
    if not data:
        raise ValueError("fine_tune_centroids needs at least one batch")
    centroids = {
        key: codebook.centroids.detach().clone().requires_grad_(True)
        for key, codebook in codebooks.items()
    }
    optimizer = torch.optim.Adam(list(centroids.values()), lr=lr)
    kept = {key: codebook.indices >= 0 for key, codebook in codebooks.items()}
    model.eval()
    for step, (images, labels) in zip(range(steps), itertools.cycle(data), strict=False):
        model.zero_grad(set_to_none=True)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()  # type: ignore[no-untyped-call]
        value = float(loss.detach())
        if not math.isfinite(value):
            raise JobError(f"loss is not finite at centroid fine-tuning step {step}; lower lr")
        for key, centroid in centroids.items():
            grad = parameters[key].grad
            if grad is None:
                continue
            mask = kept[key]
            centroid.grad = torch.zeros_like(centroid).index_add_(
                0, codebooks[key].indices[mask], grad[mask]
            )
        optimizer.step()
        with torch.no_grad():
            for key, centroid in centroids.items():
                parameters[key].copy_(decode(centroid.detach(), codebooks[key].indices))
    model.zero_grad(set_to_none=True)
    return {
        key: Codebook(codebook.bits, centroids[key].detach().clone(), codebook.indices)
        for key, codebook in codebooks.items()
    }

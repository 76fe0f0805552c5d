"""Where a workload runs: the node pool chosen and how pods are steered onto it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GPU_TAINT_KEY = "nvidia.com/gpu"


@dataclass(frozen=True)
class Placement:
    """The outcome of placement: kube-scheduler binds the pods within these constraints."""

    pool: str | None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()


def gpu_tolerations(gpus: int) -> tuple[dict[str, Any], ...]:
    """GPU nodes are tainted so that only pods that ask for GPUs land there."""
    if gpus <= 0:
        return ()
    return ({"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"},)


def requested_placement(
    node_pool: str,
    gpu_type: str | None,
    gpus_per_pod: int,
    pool_label: str,
    gpu_product_label: str,
) -> Placement:
    """The placement the spec asks for, without looking at capacity.

    A named pool and a GPU type become node selectors; `auto` leaves the choice of pool to
    kube-scheduler. Capacity-aware admission replaces this where the inventory is known.
    """
    selector: dict[str, str] = {}
    pool = None if node_pool == "auto" else node_pool
    if pool is not None:
        selector[pool_label] = pool
    if gpu_type:
        selector[gpu_product_label] = gpu_type
    return Placement(pool=pool, node_selector=selector, tolerations=gpu_tolerations(gpus_per_pod))


def pool_placement(
    pool: str,
    pool_label: str,
    gpu_type: str | None,
    gpus_per_pod: int,
    gpu_product_label: str,
) -> Placement:
    """The placement admission chose: the pool by the label key its nodes carry."""
    selector = {pool_label: pool}
    if gpu_type:
        selector[gpu_product_label] = gpu_type
    return Placement(pool=pool, node_selector=selector, tolerations=gpu_tolerations(gpus_per_pod))


def kept_placement(pool: str | None, node_selector: dict[str, str], gpus_per_pod: int) -> Placement:
    """The placement of a job admitted earlier, read back from its PyTorchJob: re-applying
    the children never moves a job that admission already placed."""
    return Placement(
        pool=pool, node_selector=dict(node_selector), tolerations=gpu_tolerations(gpus_per_pod)
    )

"""The GPU inventory: which nodes form which pool, and how many GPUs each has free.

Built from Node dicts as the API server returns them and Pods parsed once into views, so the
whole of admission
stays a pure function of what was listed. Usage counts the GPU requests of every pod bound to
a node and not yet finished, whoever created it: Lepton shares the pools with other workloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from lepton_operator.scheduling.placement import GPU_TAINT_KEY
from lepton_operator.scheduling.views import PodView, Quantity, View, count

# Taints that keep Lepton's pods off a node: they tolerate the GPU taint only.
BLOCKING_TAINT_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True)
class GpuNode:
    """One schedulable node with GPUs, as admission sees it."""

    name: str
    pool: str
    pool_label: str  # the label key that named the pool: the nodeSelector uses the same one
    gpu_product: str | None
    allocatable: int
    used: int
    # Of `used`, GPUs held by pods that asked for this GPU product by name (a nodeSelector on
    # the product label): work that could run nowhere else.
    pinned: int = 0

    @property
    def free(self) -> int:
        return max(self.allocatable - self.used, 0)


@dataclass(frozen=True)
class InventoryLabels:
    """Where a node says its pool and GPU product, and what a GPU is called."""

    pool_labels: tuple[str, ...]  # first match wins: the configured key, then cloud ones
    gpu_product_label: str = "nvidia.com/gpu.product"
    gpu_resource: str = "nvidia.com/gpu"


class _Taint(View):
    key: str = ""
    effect: str = ""


class _NodeSpec(View):
    unschedulable: bool = False
    taints: list[_Taint] = Field(default_factory=list)


class _NodeStatus(View):
    allocatable: dict[str, Quantity] = Field(default_factory=dict)


class _NodeMeta(View):
    name: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class NodeView(View):
    """What the inventory reads of a Node (parse once, keep: the admission view does). Only
    that: a change to anything else (annotations, conditions) compares equal."""

    metadata: _NodeMeta = Field(default_factory=_NodeMeta)
    spec: _NodeSpec = Field(default_factory=_NodeSpec)
    status: _NodeStatus = Field(default_factory=_NodeStatus)


def build_inventory(
    nodes: Iterable[dict[str, Any] | NodeView], pods: Iterable[PodView], labels: InventoryLabels
) -> list[GpuNode]:
    """Every node that names a pool, has GPUs and takes Lepton's pods, with its GPUs in use."""
    used: dict[str, int] = {}
    pinned: dict[str, int] = {}
    for pod in pods:
        if pod.bound_and_active:
            node_name = pod.spec.node_name or ""
            gpus = pod.gpus(labels.gpu_resource)
            used[node_name] = used.get(node_name, 0) + gpus
            if labels.gpu_product_label in pod.spec.node_selector:
                pinned[node_name] = pinned.get(node_name, 0) + gpus
    inventory = []
    for raw in nodes:
        node = raw if isinstance(raw, NodeView) else NodeView.model_validate(raw)
        pool_label = next((k for k in labels.pool_labels if k in node.metadata.labels), None)
        allocatable = count(node.status.allocatable.get(labels.gpu_resource))
        if pool_label is None or allocatable <= 0 or not _takes_lepton_pods(node.spec):
            continue
        inventory.append(
            GpuNode(
                name=node.metadata.name,
                pool=node.metadata.labels[pool_label],
                pool_label=pool_label,
                gpu_product=node.metadata.labels.get(labels.gpu_product_label),
                allocatable=allocatable,
                used=used.get(node.metadata.name, 0),
                pinned=pinned.get(node.metadata.name, 0),
            )
        )
    return sorted(inventory, key=lambda n: (n.pool, n.name))


def _takes_lepton_pods(spec: _NodeSpec) -> bool:
    if spec.unschedulable:
        return False
    return all(
        t.key == GPU_TAINT_KEY or t.effect not in BLOCKING_TAINT_EFFECTS for t in spec.taints
    )


def pools(inventory: Sequence[GpuNode]) -> dict[str, list[GpuNode]]:
    """The inventory grouped by pool, pools and nodes in name order."""
    grouped: dict[str, list[GpuNode]] = {}
    for node in sorted(inventory, key=lambda n: (n.pool, n.name)):
        grouped.setdefault(node.pool, []).append(node)
    return grouped

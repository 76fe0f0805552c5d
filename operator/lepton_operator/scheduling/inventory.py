"""The GPU inventory: which nodes form which pool, and how many GPUs each has free.

Built from plain Node and Pod dicts as the API server returns them, so the whole of admission
stays a pure function of what was listed. Usage counts the GPU requests of every pod bound to
a node and not yet finished, whoever created it: Lepton shares the pools with other workloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from lepton_operator.scheduling.placement import GPU_TAINT_KEY
from lepton_operator.scheduling.views import ContainerView, MetaView, PodView, Quantity, View

FINISHED_POD_PHASES = frozenset({"Succeeded", "Failed"})
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


class _Node(View):
    metadata: MetaView = Field(default_factory=MetaView)
    spec: _NodeSpec = Field(default_factory=_NodeSpec)
    status: _NodeStatus = Field(default_factory=_NodeStatus)


def _count(quantity: Quantity | None) -> int:
    # GPUs are whole devices: the API server only accepts integer quantities for them.
    try:
        return int(quantity) if quantity is not None else 0
    except ValueError:
        return 0


def pod_gpus(pod: dict[str, Any], gpu_resource: str = "nvidia.com/gpu") -> int:
    """GPUs a pod holds: its containers' sum, or its largest init container if that is more
    (init containers run one at a time, before the others), as kube-scheduler counts them."""
    spec = PodView.model_validate(pod).spec

    def gpus(container: ContainerView) -> int:
        resources = container.resources
        return _count(resources.requests.get(gpu_resource) or resources.limits.get(gpu_resource))

    running = sum(gpus(c) for c in spec.containers)
    init = max((gpus(c) for c in spec.init_containers), default=0)
    return max(running, init)


def pod_is_bound_and_active(pod: dict[str, Any]) -> bool:
    view = PodView.model_validate(pod)
    return bool(view.spec.node_name) and view.status.phase not in FINISHED_POD_PHASES


def build_inventory(
    nodes: Iterable[dict[str, Any]], pods: Iterable[dict[str, Any]], labels: InventoryLabels
) -> list[GpuNode]:
    """Every node that names a pool, has GPUs and takes Lepton's pods, with its GPUs in use."""
    used: dict[str, int] = {}
    for pod in pods:
        if pod_is_bound_and_active(pod):
            node_name = PodView.model_validate(pod).spec.node_name or ""
            used[node_name] = used.get(node_name, 0) + pod_gpus(pod, labels.gpu_resource)
    inventory = []
    for raw in nodes:
        node = _Node.model_validate(raw)
        pool_label = next((k for k in labels.pool_labels if k in node.metadata.labels), None)
        allocatable = _count(node.status.allocatable.get(labels.gpu_resource))
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

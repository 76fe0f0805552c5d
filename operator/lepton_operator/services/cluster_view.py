"""The admission queue's view of the cluster: GPU nodes, GPU pods and the children Lepton
admitted (PyTorchJobs, endpoints' Deployments).

Kept current by informers (list, then watch), never by listing on a reconcile. The admission
queue is told of every change (`AdmissionQueue.observed`) and runs its next pass, which is how a
queued job is reconsidered when a pod finishes or a node joins, without polling.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lepton_operator.scheduling.inventory import NodeView
from lepton_operator.scheduling.reservations import DeploymentView, PyTorchJobView
from lepton_operator.scheduling.views import PodView

Key = tuple[str, str]  # (namespace, name); namespace "" for nodes


def _key(item: dict[str, Any]) -> Key:
    metadata = item.get("metadata", {})
    return str(metadata.get("namespace") or ""), str(metadata.get("name", ""))


@dataclass(frozen=True)
class Snapshot:
    """One consistent copy of the view for one pass of decisions."""

    nodes: list[NodeView]
    pods: list[PodView]
    pytorchjobs: list[PyTorchJobView]
    deployments: list[DeploymentView] = field(default_factory=list)


def _parsed_node(item: dict[str, Any]) -> NodeView:
    """What the inventory reads of a node, parsed once here rather than on every pass (its
    image list and conditions, most of a Node, are dropped)."""
    return NodeView.model_validate(item)


class _Store:
    """Objects of one kind by key, parsed by `keep` (None: not worth keeping)."""

    def __init__(self, keep: Callable[[dict[str, Any]], Any | None]) -> None:
        self.items: dict[Key, Any] = {}
        self.keep = keep

    def replace(self, listed: list[dict[str, Any]], namespace: str | None = None) -> None:
        """Everything (or everything of one namespace) is what was just listed."""
        kept = ((_key(item), self.keep(item)) for item in listed)
        others = (
            {}
            if namespace is None
            else {key: value for key, value in self.items.items() if key[0] != namespace}
        )
        self.items = {**others, **{key: value for key, value in kept if value is not None}}

    def apply(self, event: str, item: dict[str, Any]) -> bool:
        """Apply one watch event; False when nothing admission reads has changed (a node's
        heartbeat, a pod's new IP), so that the queue need not look again."""
        key = _key(item)
        value = None if event == "DELETED" else self.keep(item)
        if value is None:
            return self.items.pop(key, None) is not None
        if self.items.get(key) == value:
            return False
        self.items[key] = value
        return True


class ClusterView:
    """Thread-safe: informers write, the admission queue reads snapshots."""

    def __init__(self, gpu_resource: str) -> None:
        self._lock = threading.Lock()

        def gpu_pod(item: dict[str, Any]) -> PodView | None:
            pod = PodView.model_validate(item)
            # Only pods that hold or wait for GPUs move capacity; a finished one holds none.
            return pod if pod.gpus(gpu_resource) > 0 and not pod.finished else None

        def gpu_job(item: dict[str, Any]) -> PyTorchJobView | None:
            job = PyTorchJobView.model_validate(item)
            # A CPU-only job is not admitted and reserves nothing: keeping it would make every
            # CPU job's create and status change a pass over all the others.
            return job if job.gpus(gpu_resource) > 0 else None

        def gpu_deployment(item: dict[str, Any]) -> DeploymentView | None:
            deployment = DeploymentView.model_validate(item)
            return deployment if deployment.spec.template.gpus(gpu_resource) > 0 else None

        self._stores = {
            "Node": _Store(_parsed_node),
            "Pod": _Store(gpu_pod),
            # Parsed once, to what admission reads: an update that changes none of it (a
            # resourceVersion, a condition's timestamp, replica counters) compares equal and
            # wakes no pass.
            "PyTorchJob": _Store(gpu_job),
            "Deployment": _Store(gpu_deployment),
        }

    def replace(
        self, kind: str, listed: list[dict[str, Any]], namespace: str | None = None
    ) -> None:
        with self._lock:
            self._stores[kind].replace(listed, namespace)

    def apply(self, kind: str, event: str, item: dict[str, Any]) -> bool:
        """True when the change matters to admission."""
        with self._lock:
            return self._stores[kind].apply(event, item)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                nodes=list(self._stores["Node"].items.values()),
                pods=list(self._stores["Pod"].items.values()),
                pytorchjobs=list(self._stores["PyTorchJob"].items.values()),
                deployments=list(self._stores["Deployment"].items.values()),
            )

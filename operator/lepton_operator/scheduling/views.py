"""Small pydantic views of the Nodes, Pods and PyTorchJobs admission reads.

They ignore every field admission does not use, so objects written by anyone (other
controllers, users) parse; a missing field takes its Kubernetes default.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# A quantity is a string on the wire ("8"), but manifests that Lepton or users write may hold
# plain numbers, and the API server keeps them as written in custom resources' templates.
Quantity = str | int | float


class View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class OwnerReferenceView(View):
    kind: str = ""
    name: str = ""
    uid: str = ""
    controller: bool = False


class MetaView(View):
    name: str = ""
    namespace: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: list[OwnerReferenceView] = Field(default_factory=list)
    creation_timestamp: str = ""
    deletion_timestamp: str | None = None


def foreign_controller(obj: dict[str, Any], owner_uid: str) -> str | None:
    """Who controls this object, when it is not the resource with `owner_uid`: "Kind/name",
    or "nobody". None when it is that resource's own."""
    meta = MetaView.model_validate(dict(obj.get("metadata") or {}))
    controller = next((r for r in meta.owner_references if r.controller), None)
    if controller is not None and controller.uid == owner_uid:
        return None
    return f"{controller.kind}/{controller.name}" if controller is not None else "nobody"


def controller_of(meta: MetaView, kinds: tuple[str, ...]) -> tuple[str, str] | None:
    """(kind, name) of the object's controller, when it is one of `kinds`."""
    for reference in meta.owner_references:
        if reference.controller and reference.kind in kinds:
            return reference.kind, reference.name
    return None


class ResourcesView(View):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class ContainerView(View):
    resources: ResourcesView = Field(default_factory=ResourcesView)


class PodSpecView(View):
    node_name: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    containers: list[ContainerView] = Field(default_factory=list)
    init_containers: list[ContainerView] = Field(default_factory=list)


class PodStatusView(View):
    phase: str = "Pending"


FINISHED_POD_PHASES = frozenset({"Succeeded", "Failed"})


def count(quantity: Quantity | None) -> int:
    """A whole-device quantity (GPUs: the API server accepts only integers for them)."""
    try:
        return int(quantity) if quantity is not None else 0
    except ValueError:
        return 0


class PodView(View):
    """A Pod, or a pod template (metadata and spec only)."""

    metadata: MetaView = Field(default_factory=MetaView)
    spec: PodSpecView = Field(default_factory=PodSpecView)
    status: PodStatusView = Field(default_factory=PodStatusView)

    @property
    def finished(self) -> bool:
        return self.status.phase in FINISHED_POD_PHASES

    @property
    def bound_and_active(self) -> bool:
        return bool(self.spec.node_name) and not self.finished

    def gpus(self, gpu_resource: str = "nvidia.com/gpu") -> int:
        """GPUs the pod holds: its containers' sum, or its largest init container if that is
        more (init containers run one at a time, first), as kube-scheduler counts them."""

        def held(container: ContainerView) -> int:
            resources = container.resources
            return count(resources.requests.get(gpu_resource) or resources.limits.get(gpu_resource))

        running = sum(held(c) for c in self.spec.containers)
        init = max((held(c) for c in self.spec.init_containers), default=0)
        return max(running, init)

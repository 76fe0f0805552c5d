"""Names, labels and owner references shared by every child Lepton creates."""

from __future__ import annotations

from typing import Any

from lepton_operator.api.base import GROUP_VERSION, ObjectMeta
from lepton_operator.builders.names import label_value

MANAGED_BY = "lepton-operator"
PART_OF = "lepton"
OWNER_LABELS = {
    "LeptonTrainingJob": "lepton.ai/trainingjob",
    "LeptonCompression": "lepton.ai/compression",
    "LeptonEndpoint": "lepton.ai/endpoint",
    "LeptonSearch": "lepton.ai/search",
}
MANAGED_SELECTOR = {"app.kubernetes.io/managed-by": MANAGED_BY}
# Set on a child once placement chose a pool, so status can report it after a restart.
POOL_LABEL = "lepton.ai/pool"
# The admission's priority (its PriorityClass's value then), stamped on the child admission
# creates: preemption compares priorities without reading PriorityClasses, after a restart too.
PRIORITY_ANNOTATION = "lepton.ai/priority"
# On every pod template: the Lepton resource that owns the pod, `<Kind>/<name>`. The pod watch
# reports a pod that cannot start to that resource's status without following ownerReferences
# up through a PyTorchJob or a ReplicaSet (label values may hold a shortened name).
OWNER_ANNOTATION = "lepton.ai/owner"


def owner_annotation(kind: str, meta: ObjectMeta) -> dict[str, str]:
    return {OWNER_ANNOTATION: f"{kind}/{meta.name}"}


def owner_from_annotation(annotations: dict[str, str]) -> tuple[str, str] | None:
    """(kind, name) from a pod's owner annotation; None when it has none (or a bad one)."""
    kind, slash, name = annotations.get(OWNER_ANNOTATION, "").partition("/")
    return (kind, name) if slash and kind in OWNER_LABELS and name else None


def child_labels(kind: str, meta: ObjectMeta, component: str) -> dict[str, str]:
    """The standard app.kubernetes.io labels plus the owner label the operator watches by.

    A label value holds 63 characters: a longer name is shortened with a hash
    (builders/names.py). Who owns a child is read from its ownerReference, never back from
    these values.
    """
    owner = label_value(meta.name)
    return {
        "app.kubernetes.io/name": PART_OF,
        "app.kubernetes.io/instance": owner,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        OWNER_LABELS[kind]: owner,
    }


def owner_reference(kind: str, meta: ObjectMeta) -> dict[str, Any]:
    """A controller reference: deleting the Lepton resource garbage-collects the child."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "name": meta.name,
        "uid": meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(kind: str, meta: ObjectMeta, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": meta.namespace,
        "labels": child_labels(kind, meta, component),
        "ownerReferences": [owner_reference(kind, meta)],
    }


def stamp_priority(manifest: dict[str, Any], priority: int) -> dict[str, Any]:
    """The manifest with the admission's priority in its annotations."""
    metadata = dict(manifest.get("metadata") or {})
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        PRIORITY_ANNOTATION: str(priority),
    }
    return {**manifest, "metadata": metadata}

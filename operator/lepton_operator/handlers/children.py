"""Children's changes flow back into their owner's status.

Status changes do not trigger Kopf's create/update handlers, so the operator watches the
children it manages (by label) and recomputes the owner's status from them. A PyTorchJob that
went away while its job was unfinished (preempted, or deleted by hand) is made again: the job's
reconcile puts it back in the admission queue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from lepton_operator.builders.meta import MANAGED_BY, OWNER_LABELS
from lepton_operator.handlers.compression import reconcile_compression_body
from lepton_operator.handlers.context import fetch
from lepton_operator.handlers.endpoint import refresh_endpoint_status
from lepton_operator.handlers.jobs import refresh_compression_status, refresh_training_status
from lepton_operator.handlers.training import reconcile_training_body
from lepton_operator.scheduling.views import MetaView, controller_of

MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
TRAINING, COMPRESSION = "LeptonTrainingJob", "LeptonCompression"
ENDPOINT_LABEL = OWNER_LABELS["LeptonEndpoint"]
REFRESH: dict[str, Callable[[dict[str, Any]], None]] = {
    TRAINING: refresh_training_status,
    COMPRESSION: refresh_compression_status,
}
RECONCILE: dict[str, Callable[[dict[str, Any]], None]] = {
    TRAINING: reconcile_training_body,
    COMPRESSION: reconcile_compression_body,
}


@kopf.on.event("kubeflow.org", "v1", "pytorchjobs", labels=MANAGED)
def pytorchjob_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
    owner = _owner(body, (TRAINING, COMPRESSION))
    if owner is None:
        return
    kind, found = owner
    if type == "DELETED" and needs_its_pytorchjob(found):
        # Preempted, or deleted by hand: the job goes back to the admission queue (and a
        # training job resumes from its newest checkpoint once admitted again).
        RECONCILE[kind](found)
    else:
        REFRESH[kind](found)


def _owner(body: kopf.Body, kinds: tuple[str, ...]) -> tuple[str, dict[str, Any]] | None:
    """The Lepton resource that controls this child (by its ownerReference: the owner label
    holds a shortened name when the owner's is long), as the API server has it now."""
    meta = MetaView.model_validate(dict(body.get("metadata", {})))
    controller = controller_of(meta, kinds)
    if controller is None or not meta.namespace:
        return None
    kind, name = controller
    found = fetch(kind, meta.namespace, name)
    return None if found is None else (kind, found)


def needs_its_pytorchjob(owner: dict[str, Any]) -> bool:
    """Unfinished and not being deleted: the job still has work for a PyTorchJob to do."""
    phase = (owner.get("status") or {}).get("phase")
    going = owner.get("metadata", {}).get("deletionTimestamp") is not None
    return not going and phase not in ("Succeeded", "Failed")


@kopf.on.event("apps", "v1", "deployments", labels={**MANAGED, ENDPOINT_LABEL: kopf.PRESENT})
def deployment_changed(body: kopf.Body, **_: Any) -> None:
    owner = _owner(body, ("LeptonEndpoint",))
    if owner is not None:
        refresh_endpoint_status(owner[1])

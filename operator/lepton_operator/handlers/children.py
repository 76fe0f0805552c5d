"""Children's changes flow back into their owner's status.

Status changes do not trigger Kopf's create/update handlers, so the operator watches the
children it manages (by label) and recomputes the owner's status from them.
"""

from __future__ import annotations

from typing import Any

import kopf

from lepton_operator.builders.meta import MANAGED_BY, OWNER_LABELS
from lepton_operator.handlers.context import fetch
from lepton_operator.handlers.endpoint import refresh_endpoint_status
from lepton_operator.handlers.jobs import refresh_compression_status, refresh_training_status

MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
TRAINING_LABEL = OWNER_LABELS["LeptonTrainingJob"]
COMPRESSION_LABEL = OWNER_LABELS["LeptonCompression"]
ENDPOINT_LABEL = OWNER_LABELS["LeptonEndpoint"]


@kopf.on.event("kubeflow.org", "v1", "pytorchjobs", labels=MANAGED)
def pytorchjob_changed(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
    if namespace is None:
        return
    if TRAINING_LABEL in labels:
        owner = fetch("LeptonTrainingJob", namespace, labels[TRAINING_LABEL])
        if owner is not None:
            refresh_training_status(owner)
    elif COMPRESSION_LABEL in labels:
        owner = fetch("LeptonCompression", namespace, labels[COMPRESSION_LABEL])
        if owner is not None:
            refresh_compression_status(owner)


@kopf.on.event("apps", "v1", "deployments", labels={**MANAGED, ENDPOINT_LABEL: kopf.PRESENT})
def deployment_changed(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
    if namespace is None:
        return
    owner = fetch("LeptonEndpoint", namespace, labels[ENDPOINT_LABEL])
    if owner is not None:
        refresh_endpoint_status(owner)

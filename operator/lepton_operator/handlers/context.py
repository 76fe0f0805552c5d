"""What every handler shares: settings, status publication and pre-flight checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

import kopf

from lepton_operator import k8s
from lepton_operator.api.base import GROUP_VERSION, LeptonModel, SecretReference
from lepton_operator.api.compression import LeptonCompression
from lepton_operator.api.search import LeptonSearch
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.builders.runtime_config import pvc_claims
from lepton_operator.metrics import PHASE_TRANSITIONS, RECONCILE_ERRORS, RECONCILE_SECONDS
from lepton_operator.pod_problems import explain, explain_refusal
from lepton_operator.resolve import SourceResource
from lepton_operator.services.refused_pods import REFUSED_PODS
from lepton_operator.services.stuck_pods import STUCK_PODS
from lepton_operator.settings import OperatorSettings
from lepton_operator.status import Blocker, transition_event


@cache
def settings() -> OperatorSettings:
    return OperatorSettings()


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def fetch(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """A Lepton resource as the API server has it now (handlers' bodies may be stale)."""
    return k8s.get(GROUP_VERSION, kind, namespace, name)


SOURCE_MODELS: dict[str, type[SourceResource]] = {
    "LeptonTrainingJob": LeptonTrainingJob,
    "LeptonCompression": LeptonCompression,
    "LeptonSearch": LeptonSearch,
}


def fetch_source(kind: str, namespace: str, name: str) -> SourceResource | None:
    """A referenced training job or compression, parsed; None when it does not exist."""
    body = fetch(kind, namespace, name)
    if body is None:
        return None
    return SOURCE_MODELS[kind].model_validate(body)


def publish_status(
    body: dict[str, Any], previous: LeptonModel | None, new: LeptonModel, phase: str
) -> None:
    """Patch status only when it changed, and post an Event when the phase changed."""
    old_wire = previous.to_wire() if previous is not None else {}
    new_wire = new.to_wire()
    if old_wire == new_wire:
        return
    # A merge patch keeps keys it does not mention: clear those the new status dropped.
    patch: dict[str, Any] = {**{k: None for k in old_wire if k not in new_wire}, **new_wire}
    metadata = body["metadata"]
    if not k8s.patch_status(
        GROUP_VERSION, body["kind"], metadata["namespace"], metadata["name"], patch
    ):
        return  # deleted meanwhile: no status, and no Event about it
    event = transition_event(old_wire.get("phase"), phase, new_wire.get("message", ""))
    if event is not None:
        event_type, reason, message = event
        kopf.event(cast(kopf.Body, body), type=event_type, reason=reason, message=message)
        PHASE_TRANSITIONS.labels(kind=body["kind"], phase=phase).inc()


def missing_inputs(namespace: str, uris: list[str]) -> Blocker | None:
    """Claims the pods would wait for forever, checked up front so the user reads what to fix
    in the status instead of finding pods stuck in Pending.

    Secrets are not checked here: the operator reads no Secrets (not even whether one
    exists). A missing one shows in the pods' own state, which `stuck_pod` reports.
    """
    for claim in pvc_claims(*uris):
        if not k8s.exists("v1", "PersistentVolumeClaim", namespace, claim):
            return Blocker(
                "VolumeNotFound",
                f"PersistentVolumeClaim {claim!r} (from a pvc:// URI) does not exist in "
                f"namespace {namespace!r}: create it or change the URI",
            )
    return None


def secret_fields(**fields: SecretReference | None) -> dict[str, str]:
    """Which spec field names each Secret, e.g. secret_fields(dataset=..., output=...)."""
    return {ref.name: f"spec.{field}.secretRef" for field, ref in fields.items() if ref}


def stuck_pod(
    kind: str,
    namespace: str,
    name: str,
    *,
    child: tuple[str, str, str],
    fields: dict[str, str],
    other_secrets: str = "the secretRef that names it",
) -> Blocker | None:
    """Why this resource's pods cannot start: the API server refuses to create them (the
    controller's Events on `child`, a PyTorchJob or Deployment), or one that exists is stuck
    (its pod watch)."""
    refusal = REFUSED_PODS.refusal(child)
    if refusal is not None:
        return explain_refusal(refusal)
    problem = STUCK_PODS.first((kind, namespace, name))
    return None if problem is None else explain(problem, namespace, fields, other_secrets)


def retry_later(blocker: Blocker) -> kopf.TemporaryError:
    """Come back later: the user may fix the input, and the resource must then recover.

    A failed source is unlikely to change soon, so it is checked less often.
    """
    delay = settings().source_poll_seconds * (4 if blocker.phase == "Failed" else 1)
    return kopf.TemporaryError(blocker.message, delay=delay)


@contextmanager
def instrumented(kind: str) -> Iterator[None]:
    """Time a reconcile; count it as an error unless it only asked to be retried later."""
    with RECONCILE_SECONDS.labels(kind=kind).time():
        try:
            yield
        except kopf.TemporaryError:
            raise
        except Exception:
            RECONCILE_ERRORS.labels(kind=kind).inc()
            raise

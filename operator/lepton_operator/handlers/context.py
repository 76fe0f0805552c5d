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
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.builders.runtime_config import pvc_claims
from lepton_operator.metrics import PHASE_TRANSITIONS, RECONCILE_ERRORS, RECONCILE_SECONDS
from lepton_operator.resolve import SourceResource
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


def fetch_source(kind: str, namespace: str, name: str) -> SourceResource | None:
    """A referenced training job or compression, parsed; None when it does not exist."""
    body = fetch(kind, namespace, name)
    if body is None:
        return None
    model = LeptonTrainingJob if kind == "LeptonTrainingJob" else LeptonCompression
    return model.model_validate(body)


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


def missing_inputs(
    namespace: str, uris: list[str], secrets: list[SecretReference | None]
) -> Blocker | None:
    """Inputs the pods would wait for forever: claims, credentials and pull secrets.

    Checked up front so the user reads what to fix in the status instead of finding pods
    stuck in Pending or ContainerCreating.
    """
    for claim in pvc_claims(*uris):
        if not k8s.exists("v1", "PersistentVolumeClaim", namespace, claim):
            return Blocker(
                "VolumeNotFound",
                f"PersistentVolumeClaim {claim!r} (from a pvc:// URI) does not exist in "
                f"namespace {namespace!r}: create it or change the URI",
            )
    names = [s.name for s in secrets if s is not None] + list(settings().image_pull_secrets)
    for secret in dict.fromkeys(names):
        if not k8s.exists("v1", "Secret", namespace, secret):
            return Blocker(
                "SecretNotFound",
                f"Secret {secret!r} does not exist in namespace {namespace!r}: create it or "
                f"change the secretRef",
            )
    return None


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

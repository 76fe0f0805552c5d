"""Where a waiting job stands in the queue: jobs queued earlier come first.

The position is information for the user, not a promise: a job that fits may start before an
earlier one that does not (see docs/design-notes.md, "Gang admission at the operator").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from lepton_operator.scheduling.views import MetaView, View


@dataclass(frozen=True, order=True)
class QueuedJob:
    """A job in the queue, ordered by when it was created (RFC 3339 UTC sorts as text)."""

    created: str
    namespace: str
    name: str
    kind: str


class _StatusView(View):
    phase: str | None = None


class _QueuedView(View):
    metadata: MetaView = Field(default_factory=MetaView)
    status: _StatusView = Field(default_factory=_StatusView)


def queued_jobs(objects: Iterable[dict[str, Any]], kind: str) -> list[QueuedJob]:
    """The jobs of one kind whose status says Queued (list items may not carry their kind)."""
    jobs = []
    for raw in objects:
        view = _QueuedView.model_validate(raw)
        if view.status.phase == "Queued":
            meta = view.metadata
            jobs.append(QueuedJob(meta.creation_timestamp, meta.namespace, meta.name, kind))
    return jobs


def queue_position(queued: Iterable[QueuedJob], job: QueuedJob) -> tuple[int, int]:
    """The job's 1-based position, oldest first, and the queue's length (the job included)."""
    ordered = sorted({*queued, job})
    return ordered.index(job) + 1, len(ordered)

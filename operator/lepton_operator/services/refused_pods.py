"""Children whose pods the API server refuses to create, from their controllers' Events.

A refused pod never exists, so the pod watch cannot see it: the training operator and the
ReplicaSet controller say so only in an Event on the PyTorchJob or the ReplicaSet. The newest
create outcome per child is kept here (handlers/children.py writes it); a later successful
create clears it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

Child = tuple[str, str, str]  # (kind, namespace, name): a PyTorchJob or a Deployment


@dataclass(frozen=True)
class Outcome:
    at: datetime  # the Event's time: outcomes are ordered by it, not by arrival
    refusal: str | None  # the API server's message, or None after a pod was created


class RefusedPods:
    """Thread-safe: Kopf runs the Event watch's handlers in a thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._newest: dict[Child, Outcome] = {}

    def record(self, child: Child, outcome: Outcome) -> bool:
        """Keep an outcome unless a newer one is known; True when the refusal changed. At
        the same time a success wins: a pod was created then, so nothing refuses them all.
        Successes of children never refused are not kept (most children are never refused)."""
        with self._lock:
            known = self._newest.get(child)
            if known is None:
                if outcome.refusal is None:
                    return False
                self._newest[child] = outcome
                return True
            if (outcome.at, outcome.refusal is None) <= (known.at, known.refusal is None):
                return False
            self._newest[child] = outcome
            return known.refusal != outcome.refusal

    def refusal(self, child: Child) -> str | None:
        with self._lock:
            known = self._newest.get(child)
            return known.refusal if known is not None else None


REFUSED_PODS = RefusedPods()

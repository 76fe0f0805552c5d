"""The pods of Lepton's children that cannot start, by owner: kept from the pod watch.

Status reads it (no LIST of pods per reconcile); the pod watch (handlers/children.py) writes
it and refreshes an owner's status when what the owner should report changed. After a restart
the watch's first list fills it again.
"""

from __future__ import annotations

import threading

from lepton_operator.pod_problems import PodProblem

Owner = tuple[str, str, str]  # (kind, namespace, name) of the Lepton resource


class StuckPods:
    """Thread-safe: Kopf runs the pod watch's handlers in a thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_owner: dict[Owner, dict[str, PodProblem]] = {}

    def record(self, owner: Owner, pod: str, problem: PodProblem | None) -> bool:
        """Keep (or, with None, forget) one pod's problem; True when the problem the owner
        reports (`first`) changed."""
        with self._lock:
            before = self._first(owner)
            problems = self._by_owner.setdefault(owner, {})
            if problem is None:
                problems.pop(pod, None)
            else:
                problems[pod] = problem
            if not problems:
                del self._by_owner[owner]
            return self._first(owner) != before

    def first(self, owner: Owner) -> PodProblem | None:
        """The problem an owner reports: its pods' first by name, so that every reconcile
        reports the same one."""
        with self._lock:
            return self._first(owner)

    def _first(self, owner: Owner) -> PodProblem | None:
        problems = self._by_owner.get(owner)
        return problems[min(problems)] if problems else None


STUCK_PODS = StuckPods()

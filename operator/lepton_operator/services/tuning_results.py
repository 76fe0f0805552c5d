"""The last tuning result each endpoint's pods reported: kept from the pod watch.

Status reads it (no LIST of pods per reconcile); the pod watch writes it. After a restart the
watch's first list fills it again, and status keeps what it already held meanwhile.
"""

from __future__ import annotations

import threading

from lepton_operator.tuning_reports import TuningReport

Owner = tuple[str, str, str]  # (kind, namespace, name) of the endpoint


class TuningResults:
    """Thread-safe: Kopf runs the pod watch's handlers in a thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_owner: dict[Owner, TuningReport] = {}

    def record(self, owner: Owner, report: TuningReport) -> bool:
        """Keep the newest report; True when it differs from the one kept."""
        with self._lock:
            changed = self._by_owner.get(owner) != report
            self._by_owner[owner] = report
            return changed

    def get(self, owner: Owner) -> TuningReport | None:
        with self._lock:
            return self._by_owner.get(owner)

    def forget(self, owner: Owner) -> None:
        with self._lock:
            self._by_owner.pop(owner, None)


TUNING_RESULTS = TuningResults()

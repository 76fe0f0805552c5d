"""The last tuning result each endpoint's pods reported: kept from the pod watch.

Status reads it (no LIST of pods per reconcile); the pod watch writes it. After a restart the
watch's first list fills it again, and status keeps what it already held meanwhile.
"""

from __future__ import annotations

import threading

from lepton_operator.tuning_reports import TuningReport

Owner = tuple[str, str, str]  # (kind, namespace, name) of the endpoint


class TuningResults:
    """Thread-safe: Kopf runs the pod watch's handlers in a thread pool.

    Reports are kept by tuning key: during a rollout, old pods (of the previous spec) and new
    ones report side by side, and an old pod's event must not hide a new pod's result.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_owner: dict[Owner, dict[str, TuningReport]] = {}

    def record(self, owner: Owner, report: TuningReport) -> bool:
        """Keep the newest report for its key; True when it differs from the one kept."""
        with self._lock:
            reports = self._by_owner.setdefault(owner, {})
            changed = reports.get(report.key) != report
            reports[report.key] = report
            return changed

    def get(self, owner: Owner, key: str | None) -> TuningReport | None:
        """The report for `key` (None: no tuning asked for, so none)."""
        if key is None:
            return None
        with self._lock:
            return self._by_owner.get(owner, {}).get(key)

    def forget(self, owner: Owner) -> None:
        """Drop an owner's reports (it was deleted)."""
        with self._lock:
            self._by_owner.pop(owner, None)


TUNING_RESULTS = TuningResults()

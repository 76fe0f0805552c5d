"""Kueue's Workloads of Lepton's PyTorchJobs, by job: kept from the Workload watch.

Status reads it (no GET of a Workload per reconcile); the watch (handlers/kueue.py) writes it
and refreshes the job's owner when what the owner reports changed. After a restart the watch's
first list fills it again.
"""

from __future__ import annotations

import threading

from lepton_operator.scheduling.kueue import WorkloadState

JobKey = tuple[str, str]  # (namespace, PyTorchJob name)


class KueueWorkloads:
    """Thread-safe: Kopf runs the watch's handlers in a thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_job: dict[JobKey, WorkloadState] = {}

    def record(self, job: JobKey, state: WorkloadState | None) -> bool:
        """Keep (or, with None, forget) a job's Workload; True when it changed."""
        with self._lock:
            before = self._by_job.get(job)
            if state is None:
                self._by_job.pop(job, None)
            else:
                self._by_job[job] = state
            return before != state

    def get(self, job: JobKey) -> WorkloadState | None:
        with self._lock:
            return self._by_job.get(job)


KUEUE_WORKLOADS = KueueWorkloads()

"""Every search's trials as their training jobs report them, kept current by a watch.

A search decides from its whole trial table; reading its trials from the API server on every
refresh would be a list per change of any trial. An informer over the LeptonTrainingJobs that
carry the search label keeps what the search needs of each (its status) and marks the owning
search for a refresh whenever one changes.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

from lepton_operator.api.base import GROUP_VERSION
from lepton_operator.api.training import TrainingJobStatus
from lepton_operator.builders.search import SEARCH_LABEL
from lepton_operator.scheduling.views import MetaView, controller_of
from lepton_operator.search.plan import TrialObservation
from lepton_operator.services.informer import Informer, WatchTarget

SearchKey = tuple[str, str]  # (namespace, name) of a LeptonSearch
ON_LIST_TIMEOUT_SECONDS = 30.0


def _owner(item: dict[str, Any]) -> tuple[SearchKey, str] | None:
    """(the search that controls this training job, the job's name)."""
    meta = MetaView.model_validate(dict(item.get("metadata", {})))
    controller = controller_of(meta, ("LeptonSearch",))
    if controller is None or not meta.namespace:
        return None
    return (meta.namespace, controller[1]), meta.name


def _observation(item: dict[str, Any]) -> TrialObservation:
    status = TrainingJobStatus.model_validate(item.get("status") or {})
    return TrialObservation(
        phase=status.phase,
        message=status.message,
        results=status.results,
        start_time=status.start_time,
        completion_time=status.completion_time,
    )


class TrialStore:
    """Thread-safe: the informer's thread writes, the status refresh workers read."""

    def __init__(self, changed: Callable[[SearchKey], None]) -> None:
        self._changed = changed
        self._context = contextvars.Context()
        self._lock = threading.Lock()
        self._trials: dict[SearchKey, dict[str, TrialObservation]] = {}
        self._informer = Informer(
            WatchTarget(GROUP_VERSION, "LeptonTrainingJob", label_selector=SEARCH_LABEL),
            self.replace,
            self.observe,
        )

    def start(self) -> None:
        """Start watching; called from Kopf's startup handler, whose context variables (what
        `kopf.event` needs) the marks carry to the refreshes they cause."""
        self._context = contextvars.copy_context()
        self._informer.start()

    def stop(self) -> None:
        self._informer.stop()

    def wait_ready(self, timeout: float = ON_LIST_TIMEOUT_SECONDS) -> bool:
        """True once the first list is in: before it, a missing trial may only be unseen."""
        return self._informer.ready.wait(timeout) and self._informer.refused is None

    def of(self, namespace: str, name: str) -> dict[str, TrialObservation]:
        with self._lock:
            return dict(self._trials.get((namespace, name), {}))

    def replace(self, listed: list[dict[str, Any]]) -> None:
        trials: dict[SearchKey, dict[str, TrialObservation]] = {}
        for item in listed:
            owner = _owner(item)
            if owner is not None:
                trials.setdefault(owner[0], {})[owner[1]] = _observation(item)
        with self._lock:
            searches = set(self._trials) | set(trials)
            self._trials = trials
        for search in searches:
            self._mark(search)

    def observe(self, kind: str, item: dict[str, Any]) -> None:
        owner = _owner(item)
        if owner is None:
            return
        search, name = owner
        seen = None if kind == "DELETED" else _observation(item)
        with self._lock:
            known = self._trials.setdefault(search, {})
            before = known.pop(name, None)
            if seen is not None:
                known[name] = seen
        if seen != before:  # Kopf's own annotations change nothing a search reads
            self._mark(search)

    def _mark(self, search: SearchKey) -> None:
        # A copy each time: two threads may not be inside one Context at once.
        self._context.copy().run(self._changed, search)

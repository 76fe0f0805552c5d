"""Waiting jobs' statuses, published off the admission thread.

One admission moves every job behind it a place up the queue: publishing each new position at
once would be a status patch per queued job per admission (a thousand, with a thousand queued),
and would hold up the next decision while the API server takes them. The publisher keeps only
the newest status of each job, publishes a change of reason or message at once, and a change
of position alone at most every `position_refresh_seconds`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lepton_operator.scheduling.queue import QueuedJob
from lepton_operator.status import Blocker

log = logging.getLogger(__name__)

StatusKey = tuple[str, str]  # what a status says apart from the queue position


class Publishable(Protocol):
    """A queue entry, as far as publishing its status goes."""

    reported_key: StatusKey | None
    published_at: float

    @property
    def job(self) -> QueuedJob: ...

    def publish(self, blocker: Blocker, key: StatusKey, now: float) -> None: ...


@dataclass
class _Offer:
    entry: Publishable
    blocker: Blocker
    key: StatusKey


class StatusPublisher:
    """Newest status per job, published by one thread of its own."""

    def __init__(self, clock: Callable[[], float], position_refresh_seconds: float) -> None:
        self._clock = clock
        self._refresh = position_refresh_seconds
        self._offers: dict[QueuedJob, _Offer] = {}
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="admission-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify()

    def offer(self, entry: Publishable, blocker: Blocker, key: StatusKey) -> None:
        with self._changed:
            self._offers[entry.job] = _Offer(entry, blocker, key)
            self._changed.notify()

    def discard(self, job: QueuedJob) -> None:
        """The job was admitted or left the queue: its waiting status is no news any more."""
        with self._changed:
            self._offers.pop(job, None)

    def pending(self) -> int:
        with self._changed:
            return len(self._offers)

    def flush(self) -> None:
        """Publish, on this thread, every offer that is due now (tests; shutdown)."""
        for offer in self._take_due(self._clock()):
            offer.entry.publish(offer.blocker, offer.key, self._clock())

    def _due_at(self, offer: _Offer) -> float:
        entry = offer.entry
        if entry.reported_key != offer.key:
            return 0.0  # a new reason or message: at once
        return entry.published_at + self._refresh  # only the position moved

    def _take_due(self, now: float) -> list[_Offer]:
        with self._changed:
            due = [job for job, offer in self._offers.items() if self._due_at(offer) <= now]
            return [self._offers.pop(job) for job in due]

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopping:
                    now = self._clock()
                    next_due = min((self._due_at(o) for o in self._offers.values()), default=None)
                    if next_due is not None and next_due <= now:
                        break
                    self._changed.wait(timeout=None if next_due is None else next_due - now)
                if self._stopping:
                    return
            try:
                self.flush()
            except Exception:  # publish() already guards each report; this keeps the thread
                log.exception("publishing queued statuses failed")

"""Waiting jobs' statuses, published off the admission thread.

One admission moves every job behind it a place up the queue: publishing each new position at
once would be a status patch per queued job per admission (a thousand, with a thousand queued),
and would hold up the next decision while the API server takes them. The publisher keeps only
the newest status of each job and publishes a change of reason or message at once; a change of
position alone goes out at most every `position_refresh_seconds` per job and
`positions_per_second` in all, the front of the queue first. While capacity frees
continuously, the positions far back in a long queue trail behind, and what they cost the
operator stays bounded.
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

    @property
    def news(self) -> bool:
        """A new reason or message (not only a new position): published at once."""
        return self.entry.reported_key != self.key


class StatusPublisher:
    """Newest status per job, published by one thread of its own."""

    def __init__(
        self,
        clock: Callable[[], float],
        position_refresh_seconds: float,
        positions_per_second: float = 5.0,
    ) -> None:
        self._clock = clock
        self._refresh = position_refresh_seconds
        self._rate = positions_per_second
        self._tokens = positions_per_second  # a token bucket for position-only updates
        self._filled_at = clock()
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
        """Publish, on this thread, every offer that may go now (the thread's work; tests)."""
        for offer in self._take_due(self._clock()):
            offer.entry.publish(offer.blocker, offer.key, self._clock())

    def _due_at(self, offer: _Offer) -> float:
        return 0.0 if offer.news else offer.entry.published_at + self._refresh

    def _refill(self, now: float) -> None:
        self._tokens = min(self._rate, self._tokens + (now - self._filled_at) * self._rate)
        self._filled_at = now

    def _take_due(self, now: float) -> list[_Offer]:
        with self._changed:
            self._refill(now)
            due = [offer for offer in self._offers.values() if self._due_at(offer) <= now]
            news = [offer for offer in due if offer.news]
            moved = sorted(
                (offer for offer in due if not offer.news),
                key=lambda offer: offer.blocker.queue_position or 0,
            )[: int(self._tokens)]
            self._tokens -= len(moved)
            for offer in (*news, *moved):
                del self._offers[offer.entry.job]
            return [*news, *moved]

    def _next_due(self, now: float) -> float | None:
        """When the next offer may go: a position-only one waits for a token, too."""
        self._refill(now)
        next_due = None
        for offer in self._offers.values():
            due = self._due_at(offer)
            if not offer.news and self._tokens < 1:
                due = max(due, now + (1 - self._tokens) / self._rate)
            next_due = due if next_due is None else min(next_due, due)
        return next_due

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopping:
                    now = self._clock()
                    next_due = self._next_due(now)
                    if next_due is not None and next_due <= now:
                        break
                    self._changed.wait(timeout=None if next_due is None else next_due - now)
                if self._stopping:
                    return
            try:
                self.flush()
            except Exception:  # publish() already guards each report; this keeps the thread
                log.exception("publishing queued statuses failed")

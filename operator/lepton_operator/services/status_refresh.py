"""Owners whose status is to be recomputed from their children: a coalescing work queue.

A job's children change in bursts: its PyTorchJob is created, the training operator marks it
Created, its pods are bound and start, each a watch event. Recomputing and patching the owner's
status on every one of them (a GET of the owner, a GET of the child, a status patch) was most
of what the operator asked of the API server. Here an event only marks its owner, as
client-go's work queue does for a controller:

- an owner marked again before a worker takes it is refreshed once, from the newest copy of
  the child that any of the marks carried;
- one owner is never refreshed by two workers at once; marked while it is being refreshed, it
  is refreshed again afterwards, so the last change is never lost;
- a refresh that fails (the API server away for longer than k8s.py waits) is retried with a
  backoff. An event handler that fails Kopf only logs, and the change it carried was lost.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
OwnerKey = tuple[str, str, str]  # (kind, namespace, name) of a Lepton resource
Refresh = Callable[[OwnerKey, dict[str, Any] | None], None]
# Seconds before the n-th retry of a failed refresh (the last one repeats).
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass
class _Mark:
    child: dict[str, Any] | None  # the newest copy of the child seen, if the marks had one
    # The marking handler's context: Kopf keeps what `kopf.event` needs in context variables.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    failures: int = 0
    not_before: float = 0.0  # the queue's clock

    def merged(self, newer: _Mark, *, forget_child: bool = False) -> _Mark:
        """This mark with a newer one's child (when it has one, or `forget_child`: the child
        was deleted) and context; its backoff stays."""
        child = newer.child if newer.child is not None or forget_child else self.child
        return _Mark(child, newer.context, self.failures, self.not_before)


class StatusRefreshQueue:
    """Thread-safe: Kopf's handler threads mark, `workers` threads refresh."""

    def __init__(
        self, refresh: Refresh, workers: int = 4, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._refresh = refresh
        self._clock = clock
        self._pending: dict[OwnerKey, _Mark] = {}  # in the order they were first marked
        self._active: set[OwnerKey] = set()
        self._changed = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"status-refresh-{n}", daemon=True)
            for n in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def mark(
        self, key: OwnerKey, child: dict[str, Any] | None = None, *, forget_child: bool = False
    ) -> None:
        """The owner's status is to be recomputed; `child` is the child as just seen.
        Without one the refresh reads the child, unless an earlier mark brought one: with
        `forget_child` (the child was deleted) it reads it anyway."""
        mark = _Mark(child)
        with self._changed:
            known = self._pending.get(key)
            if known is not None:
                mark = known.merged(mark, forget_child=forget_child)
            self._pending[key] = mark
            self._changed.notify()

    def discard(self, key: OwnerKey) -> None:
        """Nothing pending for this owner is to be done (a refresh in progress finishes)."""
        with self._changed:
            self._pending.pop(key, None)

    def pending(self) -> int:
        with self._changed:
            return len(self._pending)

    def _take(self) -> tuple[OwnerKey, _Mark] | None:
        """The first owner due and not being refreshed (waits for one); None when stopping."""
        with self._changed:
            while not self._stopping:
                now, wake_at = self._clock(), None
                for key, mark in self._pending.items():
                    if key in self._active:
                        continue
                    if mark.not_before <= now:
                        del self._pending[key]
                        self._active.add(key)
                        return key, mark
                    wake_at = min(wake_at or mark.not_before, mark.not_before)
                self._changed.wait(None if wake_at is None else max(wake_at - now, 0.01))
        return None

    def _work(self) -> None:
        while (taken := self._take()) is not None:
            key, mark = taken
            try:
                mark.context.copy().run(self._refresh, key, mark.child)
            except Exception:
                delay = BACKOFF_SECONDS[min(mark.failures, len(BACKOFF_SECONDS) - 1)]
                log.exception("status of %s %s/%s not refreshed; again in %.1f s", *key, delay)
                retry = _Mark(mark.child, mark.context, mark.failures + 1, self._clock() + delay)
                with self._changed:
                    newer = self._pending.get(key)
                    # A newer mark keeps its child, and waits out the backoff too.
                    self._pending[key] = retry.merged(newer) if newer is not None else retry
            finally:
                with self._changed:
                    self._active.discard(key)
                    self._changed.notify_all()

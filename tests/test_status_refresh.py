"""The status refresh queue: a burst of child changes is one refresh of the owner, from the
newest child; one owner is never refreshed twice at once; a failed refresh is retried."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from lepton_operator.services.status_refresh import OwnerKey, StatusRefreshQueue

JOB: OwnerKey = ("LeptonTrainingJob", "ns", "a")
OTHER: OwnerKey = ("LeptonTrainingJob", "ns", "b")
WAIT = 10.0


def child(version: int) -> dict[str, Any]:
    return {"kind": "PyTorchJob", "metadata": {"resourceVersion": str(version)}}


class Recorder:
    """A refresh that records its calls and can be held until released."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[OwnerKey, dict[str, Any] | None]] = []
        self.held = threading.Event()
        self.held.set()
        self.entered = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.failures = failures
        self._active: set[OwnerKey] = set()
        self.overlapped = False
        self._lock = threading.Lock()

    def __call__(self, key: OwnerKey, found: dict[str, Any] | None) -> None:
        with self._lock:
            self.overlapped |= key in self._active
            self._active.add(key)
            self.calls.append((key, found))
        self.entered.release()
        try:
            assert self.held.wait(WAIT)
            with self._lock:
                if self.failures:
                    self.failures -= 1
                    raise RuntimeError("the API server is away")
        finally:
            with self._lock:
                self._active.discard(key)
            self.done.release()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@contextmanager
def running(recorder: Recorder, workers: int) -> Iterator[StatusRefreshQueue]:
    refresh_queue = StatusRefreshQueue(recorder, workers=workers)
    refresh_queue.start()
    try:
        yield refresh_queue
    finally:
        recorder.held.set()
        refresh_queue.stop()


@pytest.fixture
def queue(recorder: Recorder) -> Iterator[StatusRefreshQueue]:
    with running(recorder, workers=3) as refresh_queue:
        yield refresh_queue


@pytest.fixture
def one_worker(recorder: Recorder) -> Iterator[StatusRefreshQueue]:
    """Marks made while the only worker is busy stay pending: what they merge into is seen."""
    with running(recorder, workers=1) as refresh_queue:
        yield refresh_queue


def settle(recorder: Recorder, refreshes: int) -> None:
    for _ in range(refreshes):
        assert recorder.done.acquire(timeout=WAIT)
    assert not recorder.done.acquire(timeout=0.3), "a refresh more than expected"


def test_a_burst_is_one_refresh_more_from_the_newest_child(
    queue: StatusRefreshQueue, recorder: Recorder
) -> None:
    recorder.held.clear()
    queue.mark(JOB, child(1))
    assert recorder.entered.acquire(timeout=WAIT)  # being refreshed, from version 1
    for version in (2, 3, 4):
        queue.mark(JOB, child(version))
    queue.mark(JOB)  # a pod's change: no child, the one already marked stays
    recorder.held.set()
    settle(recorder, 2)
    assert recorder.calls == [(JOB, child(1)), (JOB, child(4))]
    assert not recorder.overlapped


def test_owners_are_refreshed_side_by_side(queue: StatusRefreshQueue, recorder: Recorder) -> None:
    recorder.held.clear()
    queue.mark(JOB, child(1))
    queue.mark(OTHER, child(7))
    assert recorder.entered.acquire(timeout=WAIT)
    assert recorder.entered.acquire(timeout=WAIT)  # both at once, neither waits for the other
    recorder.held.set()
    settle(recorder, 2)
    assert sorted(key for key, _ in recorder.calls) == [JOB, OTHER]


def test_a_deleted_child_is_not_refreshed_from_an_old_copy(
    one_worker: StatusRefreshQueue, recorder: Recorder
) -> None:
    queue = one_worker
    recorder.held.clear()
    queue.mark(OTHER)
    assert recorder.entered.acquire(timeout=WAIT)  # the one worker is busy with another owner
    queue.mark(JOB, child(1))
    queue.mark(JOB, forget_child=True)
    recorder.held.set()
    settle(recorder, 2)
    assert (JOB, None) in recorder.calls
    assert (JOB, child(1)) not in recorder.calls


def test_a_discarded_owner_is_not_refreshed(
    one_worker: StatusRefreshQueue, recorder: Recorder
) -> None:
    queue = one_worker
    recorder.held.clear()
    queue.mark(OTHER)
    assert recorder.entered.acquire(timeout=WAIT)
    queue.mark(JOB, child(1))
    queue.discard(JOB)
    recorder.held.set()
    settle(recorder, 1)
    assert recorder.calls == [(OTHER, None)]


def test_a_failed_refresh_is_retried_with_the_newest_child() -> None:
    recorder = Recorder(failures=1)
    with running(recorder, workers=2) as queue:
        recorder.held.clear()
        queue.mark(JOB, child(1))
        assert recorder.entered.acquire(timeout=WAIT)
        queue.mark(JOB, child(2))  # arrives while the failing refresh runs
        recorder.held.set()
        settle(recorder, 2)  # the retry waits out its backoff (0.5 s) first
        assert recorder.calls == [(JOB, child(1)), (JOB, child(2))]
        assert queue.pending() == 0

    recorder = Recorder(failures=1)
    with running(recorder, workers=2) as queue:
        queue.mark(JOB, child(1))  # fails, nothing newer: retried with the same child
        settle(recorder, 2)
        assert recorder.calls == [(JOB, child(1)), (JOB, child(1))]

"""Polling for eventually consistent cluster state, without timing assertions.

The deadline only stops a test that would otherwise hang; a test never asserts how fast
something happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Generous: a busy 2-core CI machine runs the whole control plane and the tests.
DEFAULT_TIMEOUT_SECONDS = 120.0


def wait_until(
    description: str,
    probe: Callable[[], T | None],
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    interval: float = 0.5,
    describe_state: Callable[[], object] | None = None,
) -> T:
    """Call `probe` until it returns something truthy and return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            state = describe_state() if describe_state else None
            raise AssertionError(f"never happened: {description}; last state: {state}")
        time.sleep(interval)

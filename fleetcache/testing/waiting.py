"""Awaiting a condition in tests: poll a predicate with a deadline, fail loudly."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Return once ``predicate()`` is truthy; raise AssertionError after ``timeout`` s.

    For conditions that have no event to wait on (another process's state, a key in
    Redis): checks every 5 ms, so it returns within a few ms of the condition holding.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.005)

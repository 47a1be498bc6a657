"""Waiting on real processes, which answer asynchronously (a worker, an agent, a webhook)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 60, what: str | None = None, *, step: float = 0.1) -> T:
    """Poll `predicate` until it returns something truthy, and return that. The timeout only bounds
    a failing test: nothing is asserted about how long it took."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {what or predicate.__doc__ or predicate}")

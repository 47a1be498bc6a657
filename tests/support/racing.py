"""Real races on PostgreSQL: callers released at the same instant, each on its own connection."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

from django.db import connection

T = TypeVar("T")


def outcomes_racing(attempt: Callable[[T], str], items: Sequence[T], *, join_timeout_s: float = 60) -> Counter:
    """Run `attempt(item)` for every item, each in a thread of its own (so on a database connection
    of its own), all released by one barrier; count the outcome names the attempts return. An
    exception in any thread fails the caller, with every such exception listed."""
    barrier = threading.Barrier(len(items))
    outcomes: Counter = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(item: T) -> None:
        try:
            barrier.wait(timeout=30)
            outcome = attempt(item)
            with lock:
                outcomes[outcome] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=join_timeout_s)
    assert not errors, errors
    return outcomes

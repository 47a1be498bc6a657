"""One lock order for the database, and a retry for the transactions that still lose a deadlock.

Lock order. Every transaction that takes more than one of these row locks takes them in this
order, and never goes back up the list; a path that would need an earlier one later locks it
up front instead:

1. billing scope: the `BillingAccount`, then `Budget` rows (standing, budget pass, budget_set);
2. `Quota` rows (the allocator, before any capacity);
3. `Instance` rows, in `created_at` order when several (`instance_transition`);
4. what hangs off one instance: its `InstanceRuntime`, then its open `MeteredRun`
   (`usage_run_close`), then the `UsageRecord`s cut from it;
   then, when a bare-metal instance ends, its `Node` row (the wipe mark, or a cordon after a failed
   hand-over check: apps/capacity/services/wipe.py, health.py); `Node` comes before 5-8 on every
   path, as agent reports and node transitions take it before allocations and GPUs;
5. `Allocation` (a release; its `AllocationSlice`s are written only under it, after its GPUs);
6. `MigDevice`, then `Gpu` rows, in (node, index, id) order (claims and releases);
7. the node's placement lock (`pg_advisory_xact_lock`, shared by placements);
8. `NodeCapacity` summary rows (by trigger or by the allocator's own statements).

Two rules keep the hidden locks in that order too:

- A row other rows point at is locked `FOR NO KEY UPDATE` (`select_for_update(no_key=True)`),
  never plain `FOR UPDATE`: we never change a primary key, and every INSERT of a referencing row
  takes `FOR KEY SHARE` on the row it references, which plain `FOR UPDATE` blocks. That hidden
  lock is how the metering pass (run, then the instance row through a usage record's foreign key)
  once deadlocked with a user's stop (instance row, then run).
- A pass over many rows that would otherwise take them against the order (the metering pass
  takes runs, then their instances) takes them `SKIP LOCKED`, together, and leaves what is busy
  to its next pass: it never waits, so it cannot close a cycle.

Two paths take capacity before an instance row, against the order, and are safe for the reason
each gives:
- A launch (apps/instances/services/placement.py) takes quota and capacity (2, 5-8) and then
  inserts its instance (3): no other transaction can hold, or wait for, a row not yet committed.
- Placing a queued launch (services/queue.py, under an advisory lock of its queue line) takes
  capacity and then moves that instance from QUEUED to REQUESTED (3): whoever else holds a QUEUED
  instance's row (its stop, say) takes no capacity locks, since a queued instance holds none, so
  the placement's wait for that row cannot close a cycle.

Reservations (apps/capacity/services/reservations.py, reservation_hold.py, reservation_states.py) add two locks, kept out of cycles:
- the booking lock of a region × GPU model (`pg_advisory_xact_lock`): a booking takes it first
  and then only reads; a launch takes it last, after its hold (2, 5-8), to check what
  reservations about to start still need, and then only reads. Neither waits for a lock while
  holding it, so it closes no cycle.
- a `Reservation` row: its start and end lock it first, then take what the allocator takes (2, 5-8);
  its end also stops the instances launched into it (3, 4) before giving its gang back. Nothing
  locks a reservation row after an instance row: lending its GPUs to an instance and taking them
  back lock only allocations (5), in id order as a gang release does, then the placement lock (7).

Retry. Some deadlocks cannot be ordered away (PostgreSQL's locking reads keep locks on rows that
turn out not to match, for one), and SERIALIZABLE work can lose a serialization check. Entry
points (what views, API views and tasks call) are wrapped in `atomic_retry`: a transaction that
loses is rolled back whole and run again, a few times, after a short random pause, so a user
sees the result and never a 500.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

logger = logging.getLogger(__name__)

# PostgreSQL SQLSTATEs of a transaction that lost to another one and may simply run again.
DEADLOCK_DETECTED, SERIALIZATION_FAILURE = "40P01", "40001"
RETRYABLE_SQLSTATES = frozenset({DEADLOCK_DETECTED, SERIALIZATION_FAILURE})
ATTEMPTS = 5
BACKOFF_S = 0.02  # first pause at most; doubles per attempt, capped below
BACKOFF_MAX_S = 0.5

F = TypeVar("F", bound=Callable)


def db_error_retryable(exc: BaseException) -> bool:
    """Whether `exc` (a Django DatabaseError wrapping psycopg's error as its __cause__, or
    psycopg's own) says the transaction lost a deadlock or a serialization check."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "sqlstate", None) in RETRYABLE_SQLSTATES:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _pause(attempt: int) -> None:
    # Full jitter: transactions that deadlocked together must not come back in lockstep.
    time.sleep(random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_S * 2 ** (attempt - 1))))


def atomic_retry(func: F | None = None, *, attempts: int = ATTEMPTS, using: str | None = None):
    """`transaction.atomic` that runs the block again when it loses a deadlock or a serialization
    check, up to `attempts` times in all, with a jittered pause between tries.

    Only an outermost transaction can be retried: inside a caller's transaction the lost deadlock
    aborted the caller's work too, so there it is a plain `atomic` and the error goes up to the
    caller's own retry. A retried block must therefore keep its side effects in the database or
    in `transaction.on_commit` (both are undone with it). Use as `@atomic_retry` or
    `@atomic_retry(attempts=3)`.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if connections[using or DEFAULT_DB_ALIAS].in_atomic_block:
                with transaction.atomic(using=using):
                    return fn(*args, **kwargs)
            for attempt in range(1, attempts + 1):
                try:
                    with transaction.atomic(using=using):
                        return fn(*args, **kwargs)
                except DatabaseError as exc:
                    if attempt == attempts or not db_error_retryable(exc):
                        raise
                    logger.warning(
                        "%s lost a %s (attempt %d of %d); running it again",
                        fn.__qualname__,
                        "deadlock" if getattr(exc.__cause__, "sqlstate", None) == DEADLOCK_DETECTED else "conflict",
                        attempt,
                        attempts,
                    )
                    _pause(attempt)
            raise AssertionError("unreachable")  # the loop returns or raises

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate

"""The test run's flush (the end of every transactional test) is run again when PostgreSQL
cancels it to break a lock cycle with the live portal processes (devtools/pytest_plugin.py)."""

from __future__ import annotations

import psycopg
import pytest
from django.core.management.base import CommandError
from django.core.management.commands import flush
from django.db import OperationalError

from devtools.pytest_plugin import retrying_lost_deadlocks


def _lost_deadlock() -> CommandError:
    # As Django raises it: CommandError from OperationalError from psycopg's DeadlockDetected.
    try:
        try:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        except psycopg.errors.DeadlockDetected as cause:
            raise OperationalError("deadlock detected") from cause
    except OperationalError as cause:
        error = CommandError("Database test_portal couldn't be flushed.")
        error.__cause__ = cause
        return error


def test_a_flush_that_lost_a_deadlock_runs_again():
    # Given a flush that loses a deadlock twice, then succeeds
    calls = []

    def handle(self, **options):
        calls.append(options)
        if len(calls) < 3:
            raise _lost_deadlock()
        return "flushed"

    # When it runs through the wrapper, it is run again until it succeeds
    assert retrying_lost_deadlocks(handle, pause_s=0)(None, database="default") == "flushed"
    assert len(calls) == 3


def test_any_other_failure_and_the_last_attempt_are_raised():
    def broken(self, **options):
        raise CommandError("The SQL was invalid.")

    with pytest.raises(CommandError, match="invalid"):
        retrying_lost_deadlocks(broken, pause_s=0)(None)

    def always_deadlocked(self, **options):
        raise _lost_deadlock()

    with pytest.raises(CommandError):
        retrying_lost_deadlocks(always_deadlocked, attempts=2, pause_s=0)(None)


def test_the_run_uses_the_retrying_flush():
    assert getattr(flush.Command.handle, "retries_lost_deadlocks", False)

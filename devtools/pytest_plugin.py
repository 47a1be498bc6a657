"""Pytest plugin (loaded with `-p` before pytest-django): points the test run at real services.

Unless DATABASE_URL / REDIS_URL / STRIPE_API_BASE are given, it starts embedded PostgreSQL,
Redis and localstripe under .data/test, apart from the development data, and stops what it started
when the run ends. It puts their URLs in os.environ before pytest-django imports the settings
(which only read them) and so before any test spawns a process (which inherits them).
pytest-django then creates its test database on that server.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .embedded import BASE_DIR, postgres_running, postgres_stop, postgres_url, redis_start
from .stripe_local import localstripe_start

_started: dict = {}


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    root = Path(os.environ.setdefault("PORTAL_DATA_DIR", str(BASE_DIR / ".data" / "test")))
    root.mkdir(parents=True, exist_ok=True)
    # Per run, so that two runs on one data folder never read or wipe each other's mail.
    mail_dir = root / f"mail-{os.getpid()}"
    shutil.rmtree(mail_dir, ignore_errors=True)
    mail_dir.mkdir()
    os.environ["PORTAL_EMAIL_DIR"] = str(mail_dir)
    # Fresh cache and channel namespaces per run: allauth's rate limits live in the cache, and a
    # previous run's counters must not throttle this one's sign-ups.
    os.environ.setdefault("PORTAL_CHANNEL_PREFIX", f"test-{os.getpid()}")
    os.environ.setdefault("PORTAL_CACHE_PREFIX", f"test-{os.getpid()}")
    # The test process opens connections from many threads (concurrency tests) and pytest-django
    # manages them itself; the portal processes it starts get the pool back (support/processes.py).
    os.environ["PORTAL_DB_POOL_MAX_SIZE"] = "0"
    if not os.environ.get("DATABASE_URL"):
        # A server another run started is left for that run to stop.
        if not postgres_running(root):
            _started["postgres"] = root
        os.environ["DATABASE_URL"] = postgres_url(root)
    if not os.environ.get("REDIS_URL"):
        redis = redis_start(root)
        os.environ["REDIS_URL"] = redis.url
        _started["redis"] = redis
    if not os.environ.get("STRIPE_API_BASE"):
        stripe = localstripe_start(root, keep_store=False)
        os.environ["STRIPE_API_BASE"] = stripe.api_base
        _started["localstripe"] = stripe


def pytest_unconfigure(config) -> None:
    shutil.rmtree(os.environ.get("PORTAL_EMAIL_DIR", ""), ignore_errors=True)
    if "localstripe" in _started:
        _started.pop("localstripe").stop()
    if "redis" in _started:
        _started.pop("redis").stop()
    if "postgres" in _started:
        postgres_stop(_started.pop("postgres"))


def pytest_configure(config) -> None:
    _flush_retries_lost_deadlocks()


def _flush_retries_lost_deadlocks() -> None:
    """A transactional test ends with Django's flush: one TRUNCATE of every table. The live
    portal processes the integration tests start (web, worker, beat running the budget and
    metering passes every second, agents) keep reading those tables, and TRUNCATE takes its locks
    table by table, so PostgreSQL sometimes ends a lock cycle by cancelling the flush (seen: one
    run in five). The flush is one atomic statement, so running it again is safe."""
    from django.core.management.commands import flush

    if not getattr(flush.Command.handle, "retries_lost_deadlocks", False):
        flush.Command.handle = retrying_lost_deadlocks(flush.Command.handle)


def retrying_lost_deadlocks(handle, attempts: int = 5, pause_s: float = 0.1):
    """`handle` (a management command's), run again when it failed by losing a deadlock."""
    import time

    from django.core.management.base import CommandError

    from portal.db import db_error_retryable

    def handle_retrying(self, **options):
        for attempt in range(1, attempts + 1):
            try:
                return handle(self, **options)
            except CommandError as exc:
                if attempt == attempts or not db_error_retryable(exc):
                    raise
                time.sleep(pause_s * attempt)

    handle_retrying.retries_lost_deadlocks = True
    return handle_retrying

"""Fixtures shared by every test. Real PostgreSQL and Redis come from devtools.pytest_plugin."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.support.processes import WorkerHandle, celery_beat_start, live_portal_start

CHROMIUM = os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def org(db, user):
    return OrganizationFactory(owner=user)


@pytest.fixture
def owner_client(user) -> Client:
    """A browser session of `user` (the owner of `org`) for the pages."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def demo_catalog(db):
    """The demo catalog the run command loads: regions, GPU models, offerings, flavors, prices."""
    from apps.catalog.demo import catalog_demo_load

    catalog_demo_load()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


# --- real processes ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def process_logs() -> Path:
    """The session's processes' logs and the front proxy's folders. Under the test data folder,
    not pytest's tmp: another pytest session starting on the host makes /tmp/pytest-of-<user>
    private (0700) again, which would lock the proxy's workers out of their own folders."""
    runs = Path(os.environ["PORTAL_DATA_DIR"]) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # Keep the last few sessions' logs, as pytest keeps its last three tmp folders.
    for old in sorted(runs.glob("process-logs-*"), key=lambda p: p.stat().st_mtime)[:-3]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="process-logs-", dir=runs))


@pytest.fixture(scope="session")
def live_portal(django_db_setup, django_db_blocker, process_logs):
    """The ASGI server (uvicorn) as a subprocess on the test database."""
    portal = live_portal_start(process_logs)
    yield portal
    portal.stop()


@pytest.fixture(scope="session")
def celery_worker(live_portal, process_logs):
    """A real Celery worker process consuming the test run's Redis broker (a WorkerHandle)."""
    handle = WorkerHandle(log_dir=process_logs, base_url=live_portal.url)
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def celery_beat(celery_worker, process_logs):
    """Celery beat, so periodic tasks (node liveness, reconcilers) run as in production."""
    beat = celery_beat_start(process_logs)
    yield beat
    beat.stop()


@pytest.fixture(scope="session")
def stripe_webhooks_live(live_portal):
    """The run's localstripe delivers every event it sends to the live portal's webhook endpoint
    (devtools/stripe_local.WEBHOOK_PATH), signed with the secret the portal verifies with.
    Registered once per run; the live portal then sees events of every test, and ignores those of
    customers its (committed) database does not know."""
    from django.conf import settings

    from devtools.stripe_local import localstripe_webhook_register

    localstripe_webhook_register(
        api_base=os.environ["STRIPE_API_BASE"], portal_url=live_portal.url, secret=settings.STRIPE_WEBHOOK_SECRET
    )
    return live_portal


# --- browser -----------------------------------------------------------------------------------


@pytest.fixture
def chromium():
    # Function-scoped on purpose: Playwright's sync API runs an event loop in this thread while it
    # is open, and later tests that call async_to_sync (e.g. live notifications) must not see it.
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which makes Django refuse
    # ORM calls from the test body. Only this test process is affected: the portal processes
    # under test are separate and never see the variable (tests/support/processes.py drops it).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian's chromium is missing at {CHROMIUM}: run `make test`, which installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def browser_context(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture(autouse=True)
def _fast_password_hashing(request, settings):
    # PBKDF2's deliberate slowness would dominate in-process tests. Tests against the real
    # portal processes keep the production hasher, so users they create can log in there.
    if "live_portal" not in request.fixturenames:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

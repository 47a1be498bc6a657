"""Fixtures shared by the billing tests."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from portal.runtime.stripe_local import localstripe_webhook_register


@pytest.fixture(scope="session")
def stripe_webhooks_live(live_portal):
    """The run's localstripe delivers every event it sends to the live portal's webhook endpoint
    (portal/runtime/stripe_local.WEBHOOK_PATH), signed with the secret the portal verifies with.
    Registered once per run; the live portal then sees events of every test, and ignores those of
    customers its (committed) database does not know."""
    localstripe_webhook_register(
        api_base=os.environ["STRIPE_API_BASE"], portal_url=live_portal.url, secret=settings.STRIPE_WEBHOOK_SECRET
    )
    return live_portal

from datetime import UTC, datetime, timedelta

import pytest

from apps.billing.services.invoicing import invoice_monthly_create
from apps.billing.stripe_api import stripe_client
from tests.factories.billing import (
    CARD_OK,
    BillingAccountFactory,
    InstanceFactory,
    run_record,
    stripe_customer_with_card,
)

OCT = datetime(2025, 10, 1, tzinfo=UTC)


@pytest.fixture
def stripe():
    return stripe_client()


@pytest.fixture
def october_invoice(django_capture_on_commit_callbacks):
    """An account with a card at localstripe and October's invoice (two instances, 14.94 + 1.05),
    built but not pushed (the push task is left queued)."""

    def _make(card: str = CARD_OK, **account_fields):
        account = BillingAccountFactory(**account_fields)
        stripe_customer_with_card(account, card)
        a = InstanceFactory(organization=account.organization, name="trainer")
        b = InstanceFactory(organization=account.organization, name="notebook")
        run_record(
            instance=a,
            started_at=OCT + timedelta(days=1),
            ended_at=OCT + timedelta(days=1, hours=6),
            hourly_amount="2.490000",
        )
        run_record(
            instance=b,
            started_at=OCT + timedelta(days=2),
            ended_at=OCT + timedelta(days=2, minutes=30),
            hourly_amount="2.100000",
        )
        with django_capture_on_commit_callbacks(execute=False):
            return invoice_monthly_create(account=account, month_start=OCT)

    return _make


def stripe_state(client, customer_id: str) -> dict:
    """What localstripe holds for the customer: invoices (with their line items) and charges."""
    invoices = list(client.v1.invoices.list(params={"customer": customer_id, "limit": 100}).data)
    charges = list(client.v1.charges.list(params={"customer": customer_id, "limit": 100}).data)
    return {"invoices": invoices, "charges": charges}

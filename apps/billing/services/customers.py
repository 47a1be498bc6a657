"""The Stripe customer of a paying organization: created once, on first need, and remembered."""

from __future__ import annotations

import uuid

from ..models import BillingAccount
from ..stripe_api import stripe_client


def stripe_idempotency_key(*parts: object) -> str:
    """An Idempotency-Key from the parts that make a request unique (Stripe allows 255 characters)."""
    return ":".join(str(part) for part in parts)[:255]


def stripe_fresh_key(*parts: object) -> str:
    """For requests that are new each time the user asks (a new SetupIntent, a default change):
    the library resends the same key on its own network retries, so a retry still has one effect."""
    return stripe_idempotency_key(*parts, uuid.uuid4().hex)


def stripe_customer_ensure(*, account: BillingAccount) -> str:
    """The account's Stripe customer id, creating the customer the first time.

    No lock is held across the Stripe call: two concurrent first calls send the same
    Idempotency-Key (derived from the organization), so Stripe creates one customer and answers
    both with it, and the compare-and-set below stores it once.
    """
    if account.stripe_customer_id:
        return account.stripe_customer_id
    organization = account.organization
    customer = stripe_client().v1.customers.create(
        params={
            "name": organization.name,
            "description": f"Neocloud organization {organization.slug}",
            "metadata": {"organization_id": str(organization.pk), "organization_slug": organization.slug},
        },
        # The creation time keeps the key unique if a database is recreated and ids start over.
        options={
            "idempotency_key": stripe_idempotency_key(
                "customer", organization.pk, int(organization.created_at.timestamp())
            )
        },
    )
    BillingAccount.objects.filter(pk=account.pk, stripe_customer_id__isnull=True).update(stripe_customer_id=customer.id)
    account.refresh_from_db(fields=["stripe_customer_id"])
    return account.stripe_customer_id

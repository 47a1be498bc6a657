"""Billing test data: accounts, instances with metered runs cut by the real metering service, and
Stripe customers with a card on the real localstripe."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import factory

from apps.billing.models import BillingAccount, InstancePrice, MeteredRun, PaymentTerms
from apps.billing.services.metering import usage_run_close
from apps.billing.stripe_api import stripe_client
from apps.instances.models import Instance, InstanceState
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.factories.catalog import FlavorFactory, ImageFactory, RegionFactory

CARD_OK = "4242424242424242"
CARD_CHARGE_FAILS = "4000000000000341"


class BillingAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BillingAccount
        django_get_or_create = ("organization",)

    organization = factory.SubFactory(OrganizationFactory)
    currency = "USD"
    terms = PaymentTerms.CARD


class InstanceFactory(factory.django.DjangoModelFactory):
    """An instance row (no node, no agent): what billing needs to hang runs and lines on."""

    class Meta:
        model = Instance

    organization = factory.SubFactory(OrganizationFactory)
    project = factory.LazyAttribute(lambda o: o.organization.projects.order_by("id").first())
    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"inst-{n:05d}")
    flavor = factory.SubFactory(FlavorFactory)
    offering = factory.LazyAttribute(lambda o: o.flavor.offering)
    image = factory.SubFactory(ImageFactory)
    region = factory.SubFactory(RegionFactory)
    state = InstanceState.STOPPED


def run_open(*, instance: Instance, started_at: datetime, hourly_amount: Decimal | str, currency="USD") -> MeteredRun:
    """An open run of `instance` at `hourly_amount` since `started_at`, with its price snapshot."""
    hourly = Decimal(str(hourly_amount))
    InstancePrice.objects.update_or_create(
        instance=instance, defaults={"hourly_amount": hourly, "currency": currency, "captured_at": started_at}
    )
    return MeteredRun.objects.create(
        instance=instance,
        organization_id=instance.organization_id,
        project_id=instance.project_id,
        flavor_id=instance.flavor_id,
        hourly_amount=hourly,
        currency=currency,
        started_at=started_at,
    )


def run_record(
    *, instance: Instance, started_at: datetime, ended_at: datetime, hourly_amount: Decimal | str, currency="USD"
) -> MeteredRun:
    """A finished run of `instance` at `hourly_amount`, cut into usage records by the metering
    service itself (usage_run_close), exactly as a stop would."""
    run_open(instance=instance, started_at=started_at, hourly_amount=hourly_amount, currency=currency)
    return usage_run_close(instance=instance, ended_at=ended_at, reason="stopped")


def stripe_customer_with_card(account: BillingAccount, number: str = CARD_OK) -> str:
    """A customer at (local)stripe with `number` attached as its default card; saved on `account`."""
    client = stripe_client()
    customer = client.v1.customers.create(params={"name": f"org {account.pk}", "metadata": {"org": str(account.pk)}})
    card = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(card.id, params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": card.id}})
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id=customer.id)
    account.stripe_customer_id = customer.id
    return customer.id

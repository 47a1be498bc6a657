"""Every live page renders the version its socket computes when nothing changed: so no page is
sent a needless copy of its partial on connect (which would wipe a form being filled in), and a
page whose partial changed is always told (portal/live.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.billing.services.invoicing import invoice_monthly_create
from apps.capacity.models import NodeState
from apps.capacity.services.reservations import reservation_create
from portal.routing import websocket_urlpatterns
from tests.billing.budgets.spend import instance_running
from tests.billing.invoices.conftest import OCT
from tests.capacity.test_operator_pages import make_node
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory
from tests.factories.billing import BillingAccountFactory, InstanceFactory, run_record
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import FlavorFactory, PriceFactory, RegionFactory
from tests.support.live import consumer_for, live_page_read

pytestmark = pytest.mark.django_db


def _org(role: str = "owner"):
    owner = UserFactory()
    org = OrganizationFactory(owner=owner)
    if role == "owner":
        return owner, org
    return MembershipFactory(organization=org, role=role).user, org


def instance_list(role):
    user, org = _org(role)
    instance_running(organization=org, hourly="2.00", since_s=90)
    InstanceFactory(organization=org)
    return user, f"/orgs/{org.slug}/instances/"


def instance_detail(role):
    user, org = _org(role)
    instance = instance_running(organization=org, hourly="2.00", since_s=90)
    return user, f"/orgs/{org.slug}/instances/{instance.pk}/"


def members(role):
    user, org = _org(role)
    MembershipFactory(organization=org, role="member")
    return user, f"/orgs/{org.slug}/members/"


def billing_overview(role):
    user, org = _org(role)
    instance_running(organization=org, hourly="2.00", since_s=90)
    return user, f"/orgs/{org.slug}/billing/"


def _invoice(org, django_capture_on_commit_callbacks):
    account = BillingAccountFactory(organization=org)
    run_record(instance=InstanceFactory(organization=org), started_at=OCT, ended_at=OCT + timedelta(hours=2),
               hourly_amount="2.490000")
    with django_capture_on_commit_callbacks(execute=False):
        return invoice_monthly_create(account=account, month_start=OCT)


def invoice_list(role, capture):
    user, org = _org(role)
    _invoice(org, capture)
    return user, f"/orgs/{org.slug}/billing/invoices/"


def invoice_detail(role, capture):
    user, org = _org(role)
    invoice = _invoice(org, capture)
    return user, f"/orgs/{org.slug}/billing/invoices/{invoice.pk}/"


def inventory(_role):
    make_node(hostname="live-version-1")
    make_node(hostname="live-version-2", state=NodeState.MAINTENANCE)
    return UserFactory(is_staff=True), "/ops/"


def inventory_filtered(_role):
    make_node(hostname="live-version-3", state=NodeState.MAINTENANCE)
    return UserFactory(is_staff=True), "/ops/?state=maintenance"


def reservations(role):
    user, org = _org(role)
    flavor = FlavorFactory(gpu_count=1)
    PriceFactory(flavor=flavor)
    node = node_with_gpus(RegionFactory(), flavor.gpu_model, n=2)
    start = timezone.now() + timedelta(hours=3)
    reservation_create(organization=org, flavor=flavor, region=node.region, gpus=1, starts_at=start,
                       ends_at=start + timedelta(hours=2))
    return user, f"/orgs/{org.slug}/reservations/"


def node(_role):
    return UserFactory(is_staff=True), f"/ops/nodes/{make_node(hostname='live-version-4').pk}/"


PAGES = [
    (instance_list, "owner"), (instance_list, "member"),
    (instance_detail, "owner"), (instance_detail, "member"),
    (members, "owner"), (members, "member"),
    (billing_overview, "owner"), (billing_overview, "billing"),
    (invoice_list, "owner"), (invoice_detail, "owner"),
    (inventory, "staff"), (inventory_filtered, "staff"), (node, "staff"),
    (reservations, "owner"), (reservations, "viewer"),
]
NEEDS_CAPTURE = {invoice_list, invoice_detail}


@pytest.mark.parametrize(("page", "role"), PAGES, ids=[f"{p.__name__}-{r}" for p, r in PAGES])
def test_a_page_renders_the_version_its_socket_computes(page, role, django_capture_on_commit_callbacks):
    # Given a live page as its viewer loads it
    user, url = page(role, django_capture_on_commit_callbacks) if page in NEEDS_CAPTURE else page(role)
    client = Client()
    client.force_login(user)
    before = live_page_read(client, url)
    assert before.version, f"{url} announces no version"

    # When its socket computes the version of what it would push, nothing having changed
    current = consumer_for(before.announce(), user=user).version()

    # Then they agree. Time-derived text (a running cost, a heartbeat's age) may move between
    # the two renders; then the socket's agrees with the page rendered just after it.
    after = live_page_read(client, url)
    assert current in (before.version, after.version), (url, before, after, current)


def test_every_live_socket_has_a_page_above():
    consumers = {pattern.callback.consumer_class.__name__ for pattern in websocket_urlpatterns}
    covered = {"InstanceListConsumer", "InstanceDetailConsumer", "MembersConsumer", "BillingOverviewConsumer",
               "InvoiceListConsumer", "InvoiceDetailConsumer", "InventoryConsumer", "NodeConsumer",
               "ReservationsConsumer"}
    assert consumers == covered, "a new live page needs a case in PAGES"

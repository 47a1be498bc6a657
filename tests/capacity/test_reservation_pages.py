"""The capacity calendar pages and the reservations API: booking answered at once (201, or 400 /
a form error with the reason), tenants kept apart (404), and a fixed number of queries however
many reservations a page shows."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.models import Membership, Role
from apps.billing.services.accounts import billing_account_get_or_create
from apps.billing.services.credits import credit_grant_create
from apps.capacity.consumers_reservations import ReservationsConsumer
from apps.capacity.models import Reservation, ReservationState
from apps.capacity.services.reservations import reservation_create
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import FlavorFactory, OfferingFactory, PriceFactory, RegionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def org_can_pay(org):
    """The customer has credits: booking asks billing what a launch asks (capacity.hooks)."""
    credit_grant_create(
        account=billing_account_get_or_create(organization=org),
        kind="promotion",
        amount=Decimal("100.00"),
        description="Test credit",
    )


@pytest.fixture
def eu_west():
    return RegionFactory(code="eu-west")


@pytest.fixture
def flavor(h100):
    flavor = FlavorFactory(offering=OfferingFactory(slug="gpus"), slug="1x-h100", gpu_model=h100, gpu_count=1)
    PriceFactory(flavor=flavor, amount=Decimal("2.49"))
    return flavor


@pytest.fixture
def fleet(eu_west, h100):
    return [node_with_gpus(eu_west, h100, n=8), node_with_gpus(eu_west, h100, n=4)]


def window(hours_from_now: int, length: int = 4) -> tuple:
    start = (timezone.now() + timedelta(hours=hours_from_now)).replace(microsecond=0)
    return start, start + timedelta(hours=length)


def api_url(org, suffix: str = "") -> str:
    return f"/api/v1/organizations/{org.slug}/reservations/{suffix}"


def body(*, gpus=8, hours_from_now=24, **extra) -> dict:
    start, end = window(hours_from_now)
    return {
        "flavor": "gpus/1x-h100",
        "region": "eu-west",
        "gpus": gpus,
        "starts_at": start.isoformat(),
        "ends_at": end.isoformat(),
        **extra,
    }


def test_api_books_then_refuses_the_overlap_with_the_reason(api_client, user, org, fleet, flavor):
    api_client.force_login(user)
    first = api_client.post(api_url(org), body(), format="json")
    assert first.status_code == 201, first.json()
    assert first.json()["state"] == "scheduled" and first.json()["gpus"] == 8
    assert first.json()["hourly_amount"] == "2.490000" and first.json()["units"] == 8

    second = api_client.post(api_url(org), body(gpus=5, hours_from_now=26), format="json")
    assert second.status_code == 400
    [reason] = second.json()["detail"]
    assert reason.startswith("From ") and "only 4 of 12 NVIDIA H100 80GB GPUs in eu-west are not reserved" in reason
    assert Reservation.objects.count() == 1

    listed = api_client.get(api_url(org))
    assert [r["id"] for r in listed.json()["results"]] == [first.json()["id"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"flavor": "gpus/nope"}, "flavor"),
        ({"region": "mars-1"}, "region"),
        ({"gpus": 0}, "gpus"),
        ({"gpus": "many"}, "gpus"),
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"gpus": None}, "gpus"),
        ({"whole_nodes": 1}, "gpus"),
        ({"project": "nope"}, "project"),
    ],
)
def test_api_bad_input_is_a_400_naming_the_field(api_client, user, org, fleet, flavor, change, field):
    api_client.force_login(user)
    reply = api_client.post(api_url(org), {**body(), **change}, format="json")
    assert reply.status_code == 400, reply.content
    assert field in reply.json()
    assert not Reservation.objects.exists()


def test_api_keeps_tenants_apart_and_cancels(api_client, user, org, fleet, flavor):
    stranger = OrganizationFactory()
    start, end = window(24)
    theirs = reservation_create(
        organization=stranger, flavor=flavor, region=fleet[0].region, gpus=2, starts_at=start, ends_at=end
    )
    api_client.force_login(user)
    assert api_client.get(api_url(org, f"{theirs.pk}/")).status_code == 404
    assert api_client.post(api_url(org, f"{theirs.pk}/cancel/")).status_code == 404
    assert api_client.get(api_url(stranger)).status_code == 404
    mine = api_client.post(api_url(org), body(gpus=2), format="json").json()
    cancelled = api_client.post(api_url(org, f"{mine['id']}/cancel/"))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = api_client.post(api_url(org, f"{mine['id']}/cancel/"))
    assert again.status_code == 400 and "cannot become cancelled" in again.json()["detail"][0]
    theirs.refresh_from_db()
    assert theirs.state == ReservationState.SCHEDULED


def test_a_viewer_may_list_but_not_book(api_client, org, fleet, flavor):
    viewer = UserFactory()
    Membership.objects.create(organization=org, user=viewer, role=Role.VIEWER)
    api_client.force_login(viewer)
    assert api_client.get(api_url(org)).status_code == 200
    assert api_client.post(api_url(org), body(), format="json").status_code == 403


def _book_many(org, flavor, region, n: int) -> None:
    for i in range(n):
        start, end = window(24 + 5 * i)
        reservation_create(organization=org, flavor=flavor, region=region, gpus=1, starts_at=start, ends_at=end)


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_calendar_page_reads_a_fixed_number_of_queries(owner_client, org, fleet, flavor):
    url = f"/orgs/{org.slug}/reservations/"
    _book_many(org, flavor, fleet[0].region, 1)
    one = _queries(owner_client, url)
    _book_many(org, flavor, fleet[0].region, 9)
    page = owner_client.get(url)
    assert _queries(owner_client, url) == one
    html = page.content.decode()
    assert 'data-testid="gantt-org"' in html and html.count("data-reservation=") == 10
    assert "reservation_calendar.js" in html and 'data-testid="nav-reservations"' in html


def test_the_calendar_form_shows_the_refusal_as_a_form_error(owner_client, org, fleet, flavor):
    start, end = window(24)
    fmt = "%Y-%m-%dT%H:%M"
    form = {
        "flavor": flavor.pk,
        "region": "eu-west",
        "count": 13,
        "count_kind": "gpus",
        "starts_at": start.strftime(fmt),
        "ends_at": end.strftime(fmt),
    }
    refused = owner_client.post(f"/orgs/{org.slug}/reservations/", form)
    assert refused.status_code == 400
    assert "only 12 of 12 NVIDIA H100 80GB GPUs in eu-west are not reserved; you asked for 13." in (
        refused.content.decode()
    )
    booked = owner_client.post(f"/orgs/{org.slug}/reservations/", {**form, "count": 12})
    assert booked.status_code == 302
    assert Reservation.objects.get().gpus == 12


def test_the_operators_calendar_is_staff_only_and_reads_a_fixed_number_of_queries(client, org, fleet, flavor):
    customer = UserFactory()
    client.force_login(customer)
    assert client.get("/ops/reservations/").status_code == 404
    operator = UserFactory(is_staff=True)
    client.force_login(operator)
    _book_many(org, flavor, fleet[0].region, 1)
    one = _queries(client, "/ops/reservations/")
    _book_many(OrganizationFactory(), flavor, fleet[0].region, 5)
    assert _queries(client, "/ops/reservations/") == one
    html = client.get("/ops/reservations/").content.decode()
    # the two organizations' first reservations share a window: 2 GPUs at the peak
    assert "6 reservations;" in html and "peak 2 of 12 GPUs reserved on 2 nodes" in html
    assert html.count("data-reservation=") == 6


def test_the_calendar_cancels_its_own_reservation_and_404s_another_tenants(owner_client, org, fleet, flavor):
    start, end = window(24)
    mine = reservation_create(
        organization=org, flavor=flavor, region=fleet[0].region, gpus=1, starts_at=start, ends_at=end
    )
    theirs = reservation_create(
        organization=OrganizationFactory(), flavor=flavor, region=fleet[0].region, gpus=1, starts_at=start, ends_at=end
    )
    page = owner_client.get(f"/orgs/{org.slug}/reservations/").content.decode()
    assert f"/orgs/{org.slug}/reservations/{mine.pk}/cancel/" in page and 'data-testid="reservation-cancel"' in page
    assert owner_client.post(f"/orgs/{org.slug}/reservations/{theirs.pk}/cancel/").status_code == 404
    assert owner_client.post(f"/orgs/{org.slug}/reservations/{mine.pk}/cancel/").status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.state, theirs.state) == (ReservationState.CANCELLED, ReservationState.SCHEDULED)


def test_the_live_calendar_socket_is_for_members_only(org, user, fleet, flavor):
    # given the calendar's socket of an organization
    member = ReservationsConsumer()
    member.scope = {"user": user, "url_route": {"kwargs": {"slug": org.slug}}, "query_string": b""}
    stranger = ReservationsConsumer()
    stranger.scope = {"user": UserFactory(), "url_route": {"kwargs": {"slug": org.slug}}, "query_string": b""}
    # then a member joins the organization's group, a stranger is refused
    assert member.authorize() == [f"org-{org.pk}-reservations"]
    assert stranger.authorize() is None
    # and a booking is pushed: the partial it renders shows the new reservation
    start, end = window(24)
    booked = reservation_create(
        organization=org, flavor=flavor, region=fleet[0].region, gpus=1, starts_at=start, ends_at=end
    )
    assert f'data-reservation="{booked.pk}"' in member.render()


def test_an_organization_with_no_way_to_pay_cannot_book(api_client, fleet, flavor):
    # given an organization with no card and no credits
    broke_owner = UserFactory()
    broke = OrganizationFactory(owner=broke_owner, name="Broke Ltd")
    api_client.force_login(broke_owner)
    # when it books, billing's launch check refuses, with where to fix it, and nothing is written
    reply = api_client.post(api_url(broke), body(), format="json")
    assert reply.status_code == 400
    assert reply.json()["detail"][0].startswith(
        "Broke Ltd cannot launch: there is no card on file and no credits left."
    )
    assert not Reservation.objects.exists()

"""Bookings racing on real PostgreSQL (READ COMMITTED, a connection per thread, all released at
once): requests that each fit alone but not together are never both booked."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from apps.capacity.models import Reservation
from apps.capacity.services.reservations import reservation_create
from tests.factories.accounts import OrganizationFactory
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import FlavorFactory, PriceFactory
from tests.support.racing import outcomes_racing

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

NOW = datetime(2030, 3, 2, 9, 0, tzinfo=UTC)
START = datetime(2030, 3, 3, 10, 0, tzinfo=UTC)


def book_concurrently(requests: list[dict], **common) -> Counter:
    """Each request in its own thread, all at the same instant; returns outcome counts."""

    def book(request: dict) -> str:
        try:
            reservation_create(now=NOW, **common, **request)
        except ValidationError:
            return "refused"
        return "booked"

    return outcomes_racing(book, requests)


@pytest.fixture
def flavor(region, h100):
    flavor = FlavorFactory(gpu_model=h100, gpu_count=1)
    PriceFactory(flavor=flavor, amount=Decimal("2.49"))
    return flavor


def test_two_racing_bookings_that_together_exceed_capacity_never_both_succeed(region, h100, flavor):
    # given 12 GPUs, and 2 customers each asking for 8 over overlapping windows, many times over
    node_with_gpus(region, h100, n=8)
    node_with_gpus(region, h100, n=4)
    for round_ in range(5):
        start = START + timedelta(days=2 * round_)
        requests = [
            {"organization": OrganizationFactory(), "starts_at": start, "ends_at": start + timedelta(hours=8)},
            {
                "organization": OrganizationFactory(),
                "starts_at": start + timedelta(hours=4),
                "ends_at": start + timedelta(hours=12),
            },
        ]
        # when both book at the same instant
        outcomes = book_concurrently(requests, flavor=flavor, region=region, gpus=8)
        # then exactly one is booked
        assert outcomes == Counter({"booked": 1, "refused": 1})
    assert Reservation.objects.count() == 5


def test_many_racing_bookings_book_exactly_what_fits(region, h100, flavor):
    # given 12 GPUs and 16 requests of 3 GPUs for the same window
    node_with_gpus(region, h100, n=8)
    node_with_gpus(region, h100, n=4)
    requests = [
        {"organization": OrganizationFactory(), "starts_at": START, "ends_at": START + timedelta(hours=2)}
        for _ in range(16)
    ]
    outcomes = book_concurrently(requests, flavor=flavor, region=region, gpus=3)
    # then 4 are booked (12 GPUs), never more
    assert outcomes == Counter({"booked": 4, "refused": 12})
    assert sum(Reservation.objects.values_list("gpus", flat=True)) == 12

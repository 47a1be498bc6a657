"""Which price applies: region beats all-regions, newest start wins, future prices wait."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.catalog.models import Flavor, PriceUnit
from apps.catalog.selectors import CURRENT_PRICES_ATTR, price_current, prices_current_prefetch
from tests.factories.catalog import FlavorFactory, PriceFactory, RegionFactory

pytestmark = pytest.mark.django_db


def prefetched(flavor, region):
    """The same choice made for many flavors at once, as the storefront does."""
    loaded = Flavor.objects.prefetch_related(prices_current_prefetch(region=region))
    loaded = loaded.get(pk=flavor.pk)
    return {p.unit: p for p in getattr(loaded, CURRENT_PRICES_ATTR)}


def test_a_regional_price_beats_the_all_regions_price_even_when_older():
    # given a list price and an older regional override for eu-west-1
    flavor = FlavorFactory()
    eu = RegionFactory(code="eu-west-1")
    now = timezone.now()
    PriceFactory(flavor=flavor, amount=Decimal("2.49"), valid_from=now - timedelta(days=1))
    regional = PriceFactory(
        flavor=flavor, region=eu, amount=Decimal("2.69"), valid_from=now - timedelta(days=30)
    )

    # when the current price in eu-west-1 is asked for
    chosen = price_current(flavor=flavor, region=eu, unit=PriceUnit.HOUR)

    # then the regional row wins, in the selector and in the storefront's prefetch alike
    assert chosen == regional
    assert prefetched(flavor, eu)[PriceUnit.HOUR] == regional


def test_another_region_gets_the_all_regions_price():
    # given a list price and an override for one region only
    flavor = FlavorFactory()
    listed = PriceFactory(flavor=flavor, amount=Decimal("2.49"))
    PriceFactory(flavor=flavor, region=RegionFactory(code="eu-west-1"), amount=Decimal("2.69"))
    us = RegionFactory(code="us-east-1")

    # when a region without its own price or no region at all is asked for
    # then the list price applies
    assert price_current(flavor=flavor, region=us, unit=PriceUnit.HOUR) == listed
    assert price_current(flavor=flavor, region=None, unit=PriceUnit.HOUR) == listed
    assert prefetched(flavor, None)[PriceUnit.HOUR] == listed


def test_the_newest_started_price_wins():
    # given three list prices that started at different times
    flavor = FlavorFactory()
    now = timezone.now()
    PriceFactory(flavor=flavor, amount=Decimal("3.00"), valid_from=now - timedelta(days=90))
    newest = PriceFactory(flavor=flavor, amount=Decimal("2.49"), valid_from=now - timedelta(days=1))
    PriceFactory(flavor=flavor, amount=Decimal("2.79"), valid_from=now - timedelta(days=30))

    # when / then the one that started last applies
    assert price_current(flavor=flavor, region=None, unit=PriceUnit.HOUR) == newest
    assert prefetched(flavor, None)[PriceUnit.HOUR] == newest


def test_a_future_price_is_ignored_until_it_starts():
    # given today's price and an announced increase next week
    flavor = FlavorFactory()
    now = timezone.now()
    today = PriceFactory(flavor=flavor, amount=Decimal("2.49"), valid_from=now - timedelta(days=1))
    future = PriceFactory(flavor=flavor, amount=Decimal("2.99"), valid_from=now + timedelta(days=7))

    # when / then today's applies now, and the new one from its start
    assert price_current(flavor=flavor, region=None, unit=PriceUnit.HOUR) == today
    assert prefetched(flavor, None)[PriceUnit.HOUR] == today
    later = now + timedelta(days=8)
    assert price_current(flavor=flavor, region=None, unit=PriceUnit.HOUR, at=later) == future


def test_a_future_regional_price_does_not_hide_the_list_price():
    # given a list price and a regional price that starts tomorrow
    flavor = FlavorFactory()
    eu = RegionFactory(code="eu-west-1")
    listed = PriceFactory(flavor=flavor, amount=Decimal("2.49"))
    PriceFactory(flavor=flavor, region=eu, valid_from=timezone.now() + timedelta(days=1))

    # when / then the list price still applies in that region today
    assert price_current(flavor=flavor, region=eu, unit=PriceUnit.HOUR) == listed
    assert prefetched(flavor, eu)[PriceUnit.HOUR] == listed


def test_other_units_and_currencies_are_kept_apart():
    # given a token endpoint with input and output prices, and a EUR price
    flavor = FlavorFactory(token_endpoint=True)
    unit_in, unit_out = PriceUnit.MILLION_INPUT_TOKENS, PriceUnit.MILLION_OUTPUT_TOKENS
    tokens_in = PriceFactory(flavor=flavor, unit=unit_in, amount=Decimal("0.18"))
    tokens_out = PriceFactory(flavor=flavor, unit=unit_out, amount=Decimal("0.20"))
    PriceFactory(flavor=flavor, unit=unit_in, currency="EUR")

    # when / then each unit has its own price, in dollars unless asked otherwise
    assert price_current(flavor=flavor, region=None, unit=unit_in) == tokens_in
    assert price_current(flavor=flavor, region=None, unit=unit_out) == tokens_out
    assert price_current(flavor=flavor, region=None, unit=PriceUnit.HOUR) is None
    assert prefetched(flavor, None) == {unit_in: tokens_in, unit_out: tokens_out}


def test_an_unpriced_flavor_has_no_price():
    assert price_current(flavor=FlavorFactory(), region=None, unit=PriceUnit.HOUR) is None


def test_two_all_regions_prices_cannot_start_at_the_same_moment():
    # given a list price
    price = PriceFactory()

    # when a second list price with the same start is saved, then the database refuses it
    # (a NULL region counts as equal here, or the rule would be void for list prices)
    with pytest.raises(IntegrityError), transaction.atomic():
        PriceFactory(flavor=price.flavor, valid_from=price.valid_from, amount=Decimal("1"))


@pytest.mark.parametrize("field,value", [("currency", "usd"), ("amount", Decimal("-0.01"))])
def test_malformed_prices_are_refused(field, value):
    with pytest.raises(IntegrityError), transaction.atomic():
        PriceFactory(**{field: value})



@pytest.mark.parametrize("unit,expected", [
    (PriceUnit.HOUR, "$2.49 / hour, billed per second"),
    (PriceUnit.MILLION_INPUT_TOKENS, "$2.49 / 1M input tokens"),
    (PriceUnit.MILLION_OUTPUT_TOKENS, "$2.49 / 1M output tokens"),
])
def test_a_price_says_its_unit(unit, expected):
    assert PriceFactory.build(amount=Decimal("2.490000"), unit=unit).display == expected

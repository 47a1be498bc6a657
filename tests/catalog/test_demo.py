"""The demo catalog loads idempotently and reads like a real GPU cloud's price list."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from apps.catalog.demo import catalog_demo_load
from apps.catalog.models import Flavor, GpuModel, Image, Offering, OfferingKind, Price, Region

pytestmark = pytest.mark.django_db

MODELS = [Region, GpuModel, Offering, Flavor, Image, Price]


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def prices() -> list[tuple]:
    return list(Price.objects.order_by("id").values_list("id", "flavor_id", "region_id", "amount"))


def test_loading_the_demo_twice_changes_nothing():
    # given the demo catalog loaded once
    catalog_demo_load()
    first = counts()
    first_prices = prices()

    # when it is loaded again
    catalog_demo_load()

    # then no row was added or replaced and no price moved
    assert counts() == first
    assert prices() == first_prices
    assert all(first[name] > 0 for name in first)


def test_the_demo_covers_every_kind_and_prices_every_flavor():
    catalog_demo_load()

    assert set(Offering.objects.values_list("kind", flat=True)) == set(OfferingKind.values)
    assert not Flavor.objects.filter(prices__isnull=True).exists()
    assert GpuModel.objects.get(slug="h100-80gb-sxm").nvml_name == "NVIDIA H100 80GB HBM3"


def test_the_demo_storefront_shows_market_prices_and_regional_differences(client):
    # given the demo catalog
    catalog_demo_load()

    # when the storefront is opened for all regions and for Amsterdam
    listed = client.get(reverse("catalog:storefront")).content.decode()
    amsterdam = client.get(reverse("catalog:storefront"), {"region": "eu-west-1"}).content.decode()

    # then the list shows the usual market prices, and Amsterdam its higher H100 price
    for price in ["$2.49 / hour", "$19.92 / hour", "$26.32 / hour", "$0.39 / hour",
                  "$0.55 / hour", "$1.49 / hour", "$0.18 / 1M input tokens"]:
        assert price in listed, price
    assert "MIG 3g.40gb of NVIDIA H100 80GB SXM" in listed
    assert "50% of NVIDIA L40S 48GB" in listed
    assert "$2.69 / hour" in amsterdam and "$2.69 / hour" not in listed
    assert listed.count("Not yet available") == Offering.objects.count()


def test_the_management_command_loads_the_demo():
    out = StringIO()
    call_command("catalog_demo_load", stdout=out)
    assert f"{Offering.objects.count()} offerings" in out.getvalue()
    assert Offering.objects.count() == 6

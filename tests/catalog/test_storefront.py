"""The public storefront and offering pages: no login, exact prices, honest availability."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.catalog.models import OfferingKind, PriceUnit
from tests.factories.catalog import (
    FlavorFactory,
    ImageFactory,
    OfferingFactory,
    PriceFactory,
    RegionFactory,
)

pytestmark = pytest.mark.django_db

STOREFRONT = reverse("catalog:storefront")


def priced_offerings(count: int, *, region=None) -> None:
    """`count` offerings of two flavors each, with list prices and (optionally) regional ones."""
    for _ in range(count):
        offering = OfferingFactory()
        for _ in range(2):
            flavor = FlavorFactory(offering=offering)
            PriceFactory(flavor=flavor)
            if region is not None:
                PriceFactory(flavor=flavor, region=region, amount=Decimal("2.69"))


def test_anyone_sees_offerings_with_exact_prices_and_availability(client):
    # given a GPU offering and a token endpoint, and no provisioning driver
    flavor = FlavorFactory(
        offering__name="GPU instances", name="1× H100", gpu_model__name="NVIDIA H100"
    )
    PriceFactory(flavor=flavor, amount=Decimal("2.490000"))
    endpoint = FlavorFactory(token_endpoint=True, name="Llama 3.1 8B")
    PriceFactory(flavor=endpoint, unit=PriceUnit.MILLION_INPUT_TOKENS, amount=Decimal("0.18"))
    PriceFactory(flavor=endpoint, unit=PriceUnit.MILLION_OUTPUT_TOKENS, amount=Decimal("0.20"))

    # when an anonymous visitor opens the storefront
    response = client.get(STOREFRONT)

    # then it shows each offering, its flavors and prices, and that nothing can be launched yet
    html = response.content.decode()
    assert response.status_code == 200
    assert "GPU instances" in html and "1 × NVIDIA H100" in html
    assert "$2.49 / hour, billed per second" in html
    assert "$0.18 / 1M input tokens" in html and "$0.20 / 1M output tokens" in html
    assert "meta-llama/Llama-3.1-8B-Instruct" in html
    assert html.count("Not yet available") == 2
    assert 'data-testid="launch"' not in html


def test_an_offering_whose_kind_has_a_driver_offers_launch(client, register_driver):
    # given a notebook offering and a driver for notebooks only
    PriceFactory(flavor__offering__kind=OfferingKind.NOTEBOOK)
    PriceFactory(flavor__offering__kind=OfferingKind.RAY)
    register_driver(OfferingKind.NOTEBOOK)

    # when the storefront is shown
    html = client.get(STOREFRONT).content.decode()

    # then the notebook offers Launch and the Ray cluster stays unavailable
    assert html.count('data-testid="launch"') == 1
    assert html.count("Not yet available") == 1


def test_a_kind_the_form_cannot_launch_yet_points_to_the_api(client, register_driver):
    # given GPU instances, whose driver serves them through the API only (no key picker in the form)
    PriceFactory(flavor__offering__kind=OfferingKind.NOTEBOOK)
    PriceFactory(flavor__offering__kind=OfferingKind.GPU_SLICE)
    register_driver(OfferingKind.NOTEBOOK)
    register_driver(OfferingKind.GPU_SLICE, form_launchable=False)

    # when the storefront is shown
    html = client.get(STOREFRONT).content.decode()

    # then only the notebook's Launch goes to the form; the GPU instance says to use the API
    assert html.count('data-testid="launch"') == 1
    assert html.count('data-testid="launch-api"') == 1 and "Launch with the API" in html
    assert "Not yet available" not in html


def test_offerings_are_grouped_by_kind_and_private_ones_hidden(client):
    # given offerings of two kinds and one that is not public
    OfferingFactory(kind=OfferingKind.TOKEN_ENDPOINT, name="Endpoints")
    OfferingFactory(kind=OfferingKind.BARE_METAL, name="Metal")
    OfferingFactory(kind=OfferingKind.NOTEBOOK, name="Secret notebooks", is_public=False)

    html = client.get(STOREFRONT).content.decode()

    # then each kind has its heading, in catalog order, and the private offering is absent
    assert html.index("Bare-metal nodes") < html.index("Model endpoints (pay per token)")
    assert "Secret notebooks" not in html


def test_choosing_a_region_shows_its_prices(client):
    # given a list price of $2.49 and $2.69 in eu-west-1
    eu = RegionFactory(code="eu-west-1", name="EU West (Amsterdam)")
    flavor = FlavorFactory()
    PriceFactory(flavor=flavor, amount=Decimal("2.49"))
    PriceFactory(flavor=flavor, region=eu, amount=Decimal("2.69"))

    # when the visitor picks eu-west-1
    html = client.get(STOREFRONT, {"region": "eu-west-1"}).content.decode()

    # then the regional price replaces the list price, and the region is named
    assert "$2.69 / hour" in html and "$2.49 / hour" not in html
    assert "Prices in EU West (Amsterdam) (eu-west-1)" in html
    assert '<option value="eu-west-1" selected>' in html


def test_an_unknown_region_gets_a_clear_message_and_the_list_prices(client):
    # given an active region and a priced flavor
    RegionFactory(code="us-east-1")
    PriceFactory(amount=Decimal("2.49"))

    # when the URL names a region that does not exist
    response = client.get(STOREFRONT, {"region": "mars-1"})

    # then the page explains which regions exist, and still shows the catalog
    html = response.content.decode()
    assert response.status_code == 400
    assert "Unknown region &#x27;mars-1&#x27;. Available regions: us-east-1." in html
    assert "$2.49 / hour" in html


def test_an_inactive_region_is_not_offered(client):
    RegionFactory(code="old-1", is_active=False)
    response = client.get(STOREFRONT, {"region": "old-1"})
    assert response.status_code == 400
    assert 'value="old-1"' not in response.content.decode()


def test_an_htmx_region_switch_gets_only_the_offerings_partial(client):
    # given a priced flavor
    PriceFactory(amount=Decimal("2.49"))

    # when htmx asks for the storefront
    response = client.get(STOREFRONT, HTTP_HX_REQUEST="true")

    # then only the swappable section comes back, without the page around it
    html = response.content.decode()
    assert 'id="catalog-offerings"' in html and "<html" not in html
    assert "$2.49 / hour" in html


@pytest.mark.parametrize("region_code", ["", "eu-west-1"])
def test_the_storefront_costs_the_same_queries_for_2_or_10_offerings(client, region_code):
    # given 2 offerings, then 10, each with flavors, list and regional prices
    region = RegionFactory(code="eu-west-1")
    params = {"region": region_code} if region_code else {}

    priced_offerings(2, region=region)
    with CaptureQueriesContext(connection) as few:
        assert client.get(STOREFRONT, params).status_code == 200
    priced_offerings(8, region=region)
    with CaptureQueriesContext(connection) as many:
        response = client.get(STOREFRONT, params)

    # then the number of queries does not grow with the catalog, and stays small
    assert response.content.decode().count("$2.") == 20
    assert len(many) == len(few)
    assert len(many) <= 6, [q["sql"] for q in many.captured_queries]


def test_the_offering_page_shows_flavors_prices_and_images(client):
    # given a notebook offering with a priced flavor and a matching image
    flavor = FlavorFactory(
        offering__kind=OfferingKind.NOTEBOOK, offering__slug="notebooks", mig=True
    )
    PriceFactory(flavor=flavor, amount=Decimal("0.39"))
    ImageFactory(name="PyTorch 2.6 + CUDA 12.6 + JupyterLab 4", offering_kinds=["notebook"])
    ImageFactory(name="Ray 2.x", offering_kinds=["ray"])

    # when its page is opened without logging in
    response = client.get(reverse("catalog:offering-detail", args=["notebooks"]))

    # then it lists the MIG flavor with its price, the notebook image and not the Ray one
    html = response.content.decode()
    assert response.status_code == 200
    assert "MIG 1g.10gb of" in html
    assert "$0.39 / hour, billed per second" in html
    assert "PyTorch 2.6 + CUDA 12.6 + JupyterLab 4" in html and "Ray 2.x" not in html
    assert "Not yet available" in html


def test_an_unknown_or_private_offering_is_not_found(client):
    OfferingFactory(slug="hidden", is_public=False)
    assert client.get(reverse("catalog:offering-detail", args=["nope"])).status_code == 404
    assert client.get(reverse("catalog:offering-detail", args=["hidden"])).status_code == 404


def test_the_offering_page_explains_an_unknown_region(client):
    OfferingFactory(slug="metal")
    response = client.get(reverse("catalog:offering-detail", args=["metal"]), {"region": "mars-1"})
    assert response.status_code == 400
    assert "Unknown region &#x27;mars-1&#x27;" in response.content.decode()

"""The public catalog API: read-only, no credentials, exact decimals, 400 for bad filters."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.catalog.models import OfferingKind, PriceUnit
from tests.factories.catalog import (
    FlavorFactory,
    GpuModelFactory,
    ImageFactory,
    OfferingFactory,
    PriceFactory,
    RegionFactory,
)

pytestmark = pytest.mark.django_db

BASE = "/api/v1/catalog"


def test_anyone_reads_regions_and_gpu_models(api_client):
    # given an active and an inactive region and a GPU model
    RegionFactory(code="us-east-1", name="US East", country="US")
    RegionFactory(code="old-1", is_active=False)
    GpuModelFactory(slug="h100-80gb-sxm", nvml_name="NVIDIA H100 80GB HBM3")

    # when read without credentials
    regions = api_client.get(f"{BASE}/regions/")
    gpu = api_client.get(f"{BASE}/gpu-models/h100-80gb-sxm/")

    # then only the active region is listed, and the GPU model is found by slug
    assert regions.status_code == 200
    assert [r["code"] for r in regions.json()["results"]] == ["us-east-1"]
    assert gpu.status_code == 200 and gpu.json()["nvml_name"] == "NVIDIA H100 80GB HBM3"
    assert api_client.get(f"{BASE}/regions/old-1/").status_code == 404


def test_offerings_carry_flavors_prices_as_strings_and_launchability(api_client, register_driver):
    # given a priced GPU flavor, a token endpoint, and a driver for token endpoints only
    flavor = FlavorFactory(offering__slug="gpu", slug="1x", gpu_model__slug="h100", gpu_count=1)
    PriceFactory(flavor=flavor, amount=Decimal("2.49"))
    endpoint = FlavorFactory(token_endpoint=True, offering__slug="endpoints")
    PriceFactory(flavor=endpoint, unit=PriceUnit.MILLION_INPUT_TOKENS, amount=Decimal("0.18"))
    register_driver(OfferingKind.TOKEN_ENDPOINT)

    # when the offerings are listed
    response = api_client.get(f"{BASE}/offerings/")

    # then each offering nests its flavors with current prices, amounts are exact strings
    assert response.status_code == 200
    offerings = {o["slug"]: o for o in response.json()["results"]}
    assert offerings["gpu"]["launchable"] is False
    assert offerings["endpoints"]["launchable"] is True
    gpu_flavor = offerings["gpu"]["flavors"][0]
    assert gpu_flavor["gpu_model"] == "h100" and gpu_flavor["gpu_count"] == 1
    assert gpu_flavor["prices"] == [{
        "unit": "hour", "amount": "2.490000", "currency": "USD", "region": None,
        "valid_from": "2024-01-01T00:00:00Z", "display": "$2.49 / hour, billed per second",
    }]
    endpoint_price = offerings["endpoints"]["flavors"][0]["prices"][0]
    assert endpoint_price["display"] == "$0.18 / 1M input tokens"


def test_an_offering_is_found_by_slug_with_regional_prices(api_client):
    # given a list price and a price for eu-west-1
    eu = RegionFactory(code="eu-west-1")
    flavor = FlavorFactory(offering__slug="gpu")
    PriceFactory(flavor=flavor, amount=Decimal("2.49"))
    PriceFactory(flavor=flavor, region=eu, amount=Decimal("2.69"))

    # when the offering is read for eu-west-1, and without a region
    regional = api_client.get(f"{BASE}/offerings/gpu/", {"region": "eu-west-1"}).json()
    listed = api_client.get(f"{BASE}/offerings/gpu/").json()

    # then each answer carries the price that applies there
    assert regional["flavors"][0]["prices"][0]["amount"] == "2.690000"
    assert regional["flavors"][0]["prices"][0]["region"] == "eu-west-1"
    assert listed["flavors"][0]["prices"][0]["amount"] == "2.490000"


def test_private_and_unknown_offerings_are_not_found(api_client):
    OfferingFactory(slug="hidden", is_public=False)
    assert api_client.get(f"{BASE}/offerings/hidden/").status_code == 404
    assert api_client.get(f"{BASE}/offerings/nope/").status_code == 404
    assert api_client.get(f"{BASE}/offerings/").json()["count"] == 0


def test_flavors_filter_by_kind_offering_gpu_model_and_price_region(api_client):
    # given flavors across two kinds and two GPU models, with a regional price on one
    h100, l40s = GpuModelFactory(slug="h100"), GpuModelFactory(slug="l40s")
    eu = RegionFactory(code="eu-west-1")
    big = FlavorFactory(offering__slug="metal", offering__kind=OfferingKind.BARE_METAL,
                        slug="8x", gpu_model=h100, gpu_count=8)
    PriceFactory(flavor=big, amount=Decimal("19.92"))
    PriceFactory(flavor=big, region=eu, amount=Decimal("21.52"))
    FlavorFactory(offering__slug="notebooks", offering__kind=OfferingKind.NOTEBOOK,
                  slug="l40s", gpu_model=l40s)

    def slugs(**params):
        response = api_client.get(f"{BASE}/flavors/", params)
        assert response.status_code == 200, response.json()
        return [(f["offering"], f["slug"]) for f in response.json()["results"]]

    # then each filter narrows the list, and region only picks the prices
    assert slugs(kind="bare_metal") == [("metal", "8x")]
    assert slugs(offering="notebooks") == [("notebooks", "l40s")]
    assert slugs(gpu_model="l40s") == [("notebooks", "l40s")]
    assert len(slugs(region="eu-west-1")) == 2
    regional = api_client.get(f"{BASE}/flavors/metal/8x/", {"region": "eu-west-1"}).json()
    assert regional["prices"][0]["amount"] == "21.520000"
    assert regional["offering_kind"] == "bare_metal"


@pytest.mark.parametrize("params,field,reason", [
    ({"kind": "mainframe"}, "kind", "Unknown offering kind 'mainframe'"),
    ({"region": "mars-1"}, "region", "Unknown region 'mars-1'"),
    ({"offering": "nope"}, "offering", "Unknown offering 'nope'"),
    ({"gpu_model": "tpu-v5"}, "gpu_model", "Unknown GPU model 'tpu-v5'"),
])
def test_a_bad_flavor_filter_is_a_400_with_a_reason(api_client, params, field, reason):
    # when the flavors are filtered by a value that names nothing
    response = api_client.get(f"{BASE}/flavors/", params)

    # then the answer is a 400 that names the filter and why
    assert response.status_code == 400
    assert reason in response.json()[field][0]


@pytest.mark.parametrize("path,params", [
    ("offerings/", {"kind": "galaxy"}),
    ("offerings/", {"region": "mars-1"}),
    ("images/", {"kind": "galaxy"}),
])
def test_bad_filters_elsewhere_are_400_too(api_client, path, params):
    assert api_client.get(f"{BASE}/{path}", params).status_code == 400


def test_an_unknown_flavor_is_not_found(api_client):
    FlavorFactory(offering__slug="gpu", slug="1x")
    assert api_client.get(f"{BASE}/flavors/gpu/1x/").status_code == 200
    assert api_client.get(f"{BASE}/flavors/gpu/2x/").status_code == 404
    assert api_client.get(f"{BASE}/flavors/other/1x/").status_code == 404


def test_images_filter_by_offering_kind(api_client):
    ImageFactory(slug="pytorch", offering_kinds=["notebook", "gpu_slice"])
    ImageFactory(slug="ray", offering_kinds=["ray"])

    response = api_client.get(f"{BASE}/images/", {"kind": "notebook"})

    assert [i["slug"] for i in response.json()["results"]] == ["pytorch"]
    assert api_client.get(f"{BASE}/images/ray/").json()["offering_kinds"] == ["ray"]


def test_the_catalog_api_is_read_only(api_client):
    OfferingFactory(slug="gpu")
    assert api_client.post(f"{BASE}/offerings/", {"slug": "x"}).status_code == 405
    assert api_client.delete(f"{BASE}/offerings/gpu/").status_code == 405


@pytest.mark.parametrize("path", ["offerings/", "flavors/"])
def test_listing_costs_the_same_queries_for_2_or_10_offerings(api_client, path):
    # given 2 offerings, then 10, each with two flavors and list and regional prices
    region = RegionFactory(code="eu-west-1")

    def add(count):
        for _ in range(count):
            for flavor in FlavorFactory.create_batch(2, offering=OfferingFactory()):
                PriceFactory(flavor=flavor)
                PriceFactory(flavor=flavor, region=region, amount=Decimal("2.69"))

    add(2)
    with CaptureQueriesContext(connection) as few:
        api_client.get(f"{BASE}/{path}", {"region": "eu-west-1"})
    add(8)
    with CaptureQueriesContext(connection) as many:
        response = api_client.get(f"{BASE}/{path}", {"region": "eu-west-1"})

    # then the query count does not grow with the catalog
    assert response.status_code == 200
    assert response.json()["count"] == (10 if path == "offerings/" else 20)
    assert len(many) == len(few)
    assert len(many) <= 6, [q["sql"] for q in many.captured_queries]


def test_the_schema_documents_the_catalog(api_client):
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    assert "/api/v1/catalog/flavors/{offering_slug}/{slug}/" in schema["paths"]
    params = {p["name"] for p in schema["paths"]["/api/v1/catalog/flavors/"]["get"]["parameters"]}
    assert {"kind", "offering", "gpu_model", "region"} <= params

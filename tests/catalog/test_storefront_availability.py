"""The storefront shows real availability from the inventory, per flavor and region."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.capacity.models import Gpu, Node, NodeState
from apps.catalog.models import PriceUnit
from tests.factories.catalog import FlavorFactory, GpuModelFactory, OfferingFactory, PriceFactory, RegionFactory

pytestmark = pytest.mark.django_db

STOREFRONT = reverse("catalog:storefront")
_serial = itertools.count(1)


# Inline on purpose: the capacity factories are another engineer's file.
def gpu_node(*, region, gpu_model, gpus: int, state=NodeState.READY, allocated: int = 0) -> Node:
    """A node with `gpus` GPUs of `gpu_model`, the first `allocated` of them fully held."""
    n = next(_serial)
    node = Node.objects.create(
        region=region, hostname=f"avail-{n:03d}", state=state, credential_hash=f"{n:064d}", simulated=True
    )
    Gpu.objects.bulk_create(
        Gpu(
            node=node, index=i, uuid=f"GPU-AVAIL-{n}-{i}", name=gpu_model.nvml_name, gpu_model=gpu_model,
            memory_bytes=80 * 1024**3, allocated_milli=1000 if i < allocated else 0,
        )
        for i in range(gpus)
    )
    return node


def row_of(html: str, flavor_slug: str) -> str:
    return html.split(f'data-flavor="{flavor_slug}"')[1].split("</tr>")[0]


@pytest.fixture
def h100_catalog():
    """Two regions with H100 nodes, a 1-GPU and an 8-GPU H100 flavor, and a token endpoint."""
    h100 = GpuModelFactory(name="NVIDIA H100", nvml_name="NVIDIA H100 80GB HBM3")
    eu = RegionFactory(code="eu-west-1", name="EU West")
    us = RegionFactory(code="us-east-1", name="US East")
    offering = OfferingFactory(name="GPU instances")
    one = FlavorFactory(offering=offering, slug="h100-1x", gpu_model=h100, gpu_count=1)
    eight = FlavorFactory(offering=offering, slug="h100-8x", gpu_model=h100, gpu_count=8)
    endpoint = FlavorFactory(token_endpoint=True, slug="llama-8b")
    for flavor in (one, eight):
        PriceFactory(flavor=flavor)
    PriceFactory(flavor=endpoint, unit=PriceUnit.MILLION_INPUT_TOKENS, amount=Decimal("0.18"))
    # eu: 3 free GPUs on one node, 2 on another; us: a free 8-GPU node and a cordoned one
    gpu_node(region=eu, gpu_model=h100, gpus=4, allocated=1)
    gpu_node(region=eu, gpu_model=h100, gpus=2)
    gpu_node(region=us, gpu_model=h100, gpus=8)
    gpu_node(region=us, gpu_model=h100, gpus=8, state=NodeState.CORDONED)
    return {"h100": h100, "eu": eu, "us": us}


def test_a_chosen_region_shows_how_many_can_be_launched_there(client, h100_catalog):
    html = client.get(STOREFRONT, {"region": "eu-west-1"}).content.decode()

    assert "5 available" in row_of(html, "h100-1x")
    assert "Sold out in EU West" in row_of(html, "h100-8x")  # no node has 8 free GPUs there


def test_all_regions_shows_the_sum_over_active_regions(client, h100_catalog):
    # given a third, inactive region whose GPUs are not for sale
    old = RegionFactory(code="old-1", is_active=False)
    gpu_node(region=old, gpu_model=h100_catalog["h100"], gpus=8)

    html = client.get(STOREFRONT).content.decode()

    # then eu's 5 and us's 8 free GPUs count, the cordoned and inactive regions' do not
    assert "13 available" in row_of(html, "h100-1x")
    assert "1 available" in row_of(html, "h100-8x")


def test_sold_out_everywhere_says_so(client, h100_catalog):
    Gpu.objects.update(allocated_milli=1000)
    html = client.get(STOREFRONT).content.decode()
    assert "Sold out in all regions" in row_of(html, "h100-1x")


def test_token_endpoints_say_nothing_about_gpus(client, h100_catalog):
    html = client.get(STOREFRONT, {"region": "us-east-1"}).content.decode()
    row = row_of(html, "llama-8b")
    assert "available" not in row and "Sold out" not in row


def test_the_htmx_region_switch_carries_availability(client, h100_catalog):
    html = client.get(STOREFRONT, {"region": "us-east-1"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in html
    assert "8 available" in row_of(html, "h100-1x") and "1 available" in row_of(html, "h100-8x")


def test_the_offering_page_shows_availability_in_its_region(client, h100_catalog):
    offering_slug = FlavorFactory._meta.model.objects.get(slug="h100-1x").offering.slug
    url = reverse("catalog:offering-detail", args=[offering_slug])

    html = client.get(url, {"region": "us-east-1"}).content.decode()

    assert "8 available" in row_of(html, "h100-1x")


@pytest.mark.parametrize("region_code", ["", "eu-west-1"])
def test_availability_keeps_the_storefront_query_count_flat(client, region_code):
    # given two active regions with nodes, and 2 offerings, then 10
    h100 = GpuModelFactory()
    regions = [RegionFactory(code="eu-west-1"), RegionFactory(code="us-east-1")]

    def add(count: int) -> None:
        for _ in range(count):
            offering = OfferingFactory()
            for gpus in (1, 2):
                PriceFactory(flavor=FlavorFactory(offering=offering, gpu_model=h100, gpu_count=gpus))
            for region in regions:
                gpu_node(region=region, gpu_model=h100, gpus=4)

    params = {"region": region_code} if region_code else {}
    add(2)
    with CaptureQueriesContext(connection) as few:
        assert client.get(STOREFRONT, params).status_code == 200
    add(8)
    with CaptureQueriesContext(connection) as many:
        html = client.get(STOREFRONT, params).content.decode()

    # then more offerings and nodes cost no more queries
    assert html.count("badge badge-ok") == 20  # every GPU flavor has some available
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]

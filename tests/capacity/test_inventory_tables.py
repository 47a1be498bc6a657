"""The operators' node table and registration tokens on the UI toolkit's table: the inventory's
NodeFilter (region, state, simulated, health), sorting and pagination on the real page, the same
number of queries for 3 or 30 rows, and a socket that renders with the page's query."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.capacity.models import Gpu, GpuHealth, NodeState
from apps.capacity.services.nodes import registration_token_create
from tests.capacity.test_operator_pages import make_node
from tests.factories.accounts import UserFactory
from tests.factories.catalog import RegionFactory
from tests.support.live import consumer_for, live_page_read

pytestmark = pytest.mark.django_db
INVENTORY = reverse("capacity:inventory")
TOKENS = reverse("capacity:registration-tokens")
ROW = re.compile(r'<tr[^>]*data-hostname="([^"]+)"')


def hosts(html: str) -> list[str]:
    return ROW.findall(html)


@pytest.fixture
def staff():
    return UserFactory(is_staff=True)


@pytest.fixture
def browser(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def fleet():
    eu, us = RegionFactory(code="eu-fleet-1"), RegionFactory(code="us-fleet-1")
    make_node(region=eu, hostname="eu-real", simulated=False)
    make_node(region=eu, hostname="eu-sim", simulated=True, state=NodeState.CORDONED)
    sick = make_node(region=us, hostname="us-sick", simulated=False)
    Gpu.objects.filter(node=sick, index=0).update(health=GpuHealth.FAILED)
    make_node(region=us, hostname="us-down", simulated=True, state=NodeState.DOWN)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"eu-real", "eu-sim", "us-sick", "us-down"}),
        ({"region": "eu-fleet-1"}, {"eu-real", "eu-sim"}),
        ({"state": "cordoned"}, {"eu-sim"}),
        ({"simulated": "false"}, {"eu-real", "us-sick"}),
        ({"simulated": "true", "region": "us-fleet-1"}, {"us-down"}),
        ({"health": "unhealthy"}, {"us-sick"}),
        ({"health": "healthy", "simulated": "false"}, {"eu-real"}),
    ],
)
def test_filters_narrow_the_node_table(browser, fleet, query, expected):
    html = browser.get(INVENTORY, query).content.decode()
    assert set(hosts(html)) == expected


@pytest.mark.parametrize("query", [{"state": "asleep"}, {"simulated": "maybe"}, {"health": "great"}])
def test_a_bad_filter_is_named_and_ignored(browser, fleet, query):
    response = browser.get(INVENTORY, {**query, "region": "eu-fleet-1"})

    html = response.content.decode()
    assert response.status_code == 200 and "This filter is ignored." in html
    assert set(hosts(html)) == {"eu-real", "eu-sim"}  # the good filter still applies


def test_nodes_sort_and_page_fifty_at_a_time(browser):
    region = RegionFactory()
    for n in range(55):
        make_node(region=region, hostname=f"host-{n:02d}", gpus=0)

    first = browser.get(INVENTORY, {"sort": "-hostname"}).content.decode()
    second = browser.get(INVENTORY, {"sort": "-hostname", "page": 2}).content.decode()

    assert hosts(first) == [f"host-{n:02d}" for n in range(54, 4, -1)]
    assert hosts(second) == [f"host-{n:02d}" for n in range(4, -1, -1)]
    assert "Page 2 of 2" in second and "55 in all" in second


def test_the_inventory_costs_the_same_queries_for_3_or_30_nodes(browser):
    region = RegionFactory()

    def add(count):
        for _ in range(count):
            make_node(region=region, gpus=2)

    add(3)
    with CaptureQueriesContext(connection) as few:
        browser.get(INVENTORY, {"region": region.code, "sort": "gpus"})
    add(27)
    with CaptureQueriesContext(connection) as many:
        html = browser.get(INVENTORY, {"region": region.code, "sort": "gpus"}).content.decode()
    assert len(hosts(html)) == 30
    assert len(few.captured_queries) == len(many.captured_queries)


def test_the_socket_renders_the_page_with_its_filters_sort_and_page(staff, fleet):
    client = Client()
    client.force_login(staff)
    page = live_page_read(client, f"{INVENTORY}?simulated=true&sort=-hostname")
    assert page.socket_path == "/ws/ops/inventory/?simulated=true&sort=-hostname"

    consumer = consumer_for(page.announce(), user=staff)

    assert hosts(consumer.render()) == ["us-down", "eu-sim"]
    assert consumer.version() == page.version


def test_registration_tokens_page_in_constant_queries(browser, staff):
    region = RegionFactory()
    for _ in range(3):
        registration_token_create(region=region, actor=staff, note="rack", ttl_hours=1)
    with CaptureQueriesContext(connection) as few:
        browser.get(TOKENS)
    for _ in range(27):
        registration_token_create(region=region, actor=staff, note="rack", ttl_hours=1)
    with CaptureQueriesContext(connection) as many:
        html = browser.get(TOKENS).content.decode()

    assert html.count("<tr data-token=") == 25 and "Page 1 of 2" in html and ">unused<" in html
    assert len(few.captured_queries) == len(many.captured_queries)

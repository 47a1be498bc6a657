"""The instance list: a sortable, paginated table (portal.ui.tables) whose filters are the API's
(apps/instances/filters.py), each row with its GPU, uptime, cost so far and the actions its
viewer may take, in a number of queries that does not grow with the rows; live with its query."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.catalog.models import Offering, OfferingKind
from apps.instances.models import InstanceRuntime, InstanceState
from tests.billing.budgets.spend import instance_running
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory
from tests.factories.billing import InstanceFactory
from tests.factories.catalog import RegionFactory
from tests.support.live import consumer_for, live_page_read

pytestmark = pytest.mark.django_db
ROW = re.compile(r'<tr[^>]*data-instance="([^"]+)"')


def page_url(org) -> str:
    return f"/orgs/{org.slug}/instances/"


def api_url(org) -> str:
    return f"/api/v1/organizations/{org.slug}/instances/"


def rows(html: str) -> list[str]:
    return ROW.findall(html)


def row_html(html: str, name: str) -> str:
    return html.split(f'data-instance="{name}"')[1].split("</tr>")[0]


@pytest.fixture
def owner():
    return UserFactory()


@pytest.fixture
def org(owner):
    return OrganizationFactory(owner=owner)


@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


# --- the table ---------------------------------------------------------------------------------


def test_the_page_sorts_by_a_column_and_paginates(browser, org):
    # Given 30 instances (the table shows 25 a page)
    for n in range(30):
        InstanceFactory(organization=org, name=f"nb-{n:02d}")

    # When the list is sorted by name
    first = browser.get(page_url(org), {"sort": "name"}).content.decode()
    second = browser.get(page_url(org), {"sort": "name", "page": 2}).content.decode()
    backwards = browser.get(page_url(org), {"sort": "-name"}).content.decode()

    # Then the rows come in that order, 25 then 5, with links that keep the sort
    assert rows(first) == [f"nb-{n:02d}" for n in range(25)]
    assert rows(second) == [f"nb-{n:02d}" for n in range(25, 30)]
    assert rows(backwards)[:2] == ["nb-29", "nb-28"]
    assert "Page 1 of 2" in first and "30 in all" in first
    assert 'href="?sort=name&amp;page=2"' in first
    # A page past the end shows the last one, not an error
    assert rows(browser.get(page_url(org), {"sort": "name", "page": 99}).content.decode())[0] == "nb-25"


def test_a_row_shows_gpu_region_uptime_and_the_cost_of_this_run(browser, org):
    # Given a notebook running for 90 s at $2.00/h, up (agent-confirmed) for 60 s
    instance = instance_running(organization=org, hourly="2.00", since_s=90)
    InstanceRuntime.objects.create(instance=instance, started_at=timezone.now() - timedelta(seconds=60))
    stopped = InstanceFactory(organization=org, name="idle", state=InstanceState.STOPPED)

    html = browser.get(page_url(org)).content.decode()

    row = row_html(html, instance.name)
    assert instance.flavor.accelerator_label in row and instance.region.code in row
    assert re.search(r'data-testid="uptime">1m \d+s<', row)
    assert 'data-testid="cost">$0.05<' in row  # 90 s × $2.00/h
    assert 'data-testid="state">Running<' in row
    # A stopped instance has no uptime and no current run
    assert 'data-testid="uptime">—<' in row_html(html, stopped.name)
    assert 'data-testid="cost">—<' in row_html(html, stopped.name)


def test_a_waiting_state_spins(browser, org):
    InstanceFactory(organization=org, name="starting", state=InstanceState.PROVISIONING)

    row = row_html(browser.get(page_url(org)).content.decode(), "starting")

    assert 'class="spinner"' in row and "Starting" in row


@pytest.mark.parametrize(
    ("role", "own", "sees_stop"),
    [("owner", False, True), ("admin", False, True), ("member", True, True), ("member", False, False),
     ("viewer", False, False)],
)
def test_stop_shows_only_to_who_may_stop(client, org, role, own, sees_stop):
    # Given a running notebook, and a viewer of the list in some role, its owner or not
    viewer = MembershipFactory(organization=org, role=role).user if role != "owner" else org.memberships.get().user
    instance = instance_running(organization=org, hourly="1.00", since_s=10, **({"owner": viewer} if own else {}))
    client.force_login(viewer)
    assert 'data-testid="open"' not in row_html(client.get(page_url(org)).content.decode(), instance.name)
    Offering.objects.filter(pk=instance.offering_id).update(kind=OfferingKind.NOTEBOOK)

    row = row_html(client.get(page_url(org)).content.decode(), instance.name)

    assert ('data-testid="stop"' in row) is sees_stop
    # Open is for a running notebook, and, like Stop, for who may get in
    assert ('data-testid="open"' in row) is sees_stop
    if sees_stop:
        assert 'name="csrfmiddlewaretoken"' in row and f"/instances/{instance.pk}/stop/" in row


def test_the_stop_button_stops_and_comes_back_to_the_list(org, owner):
    instance = instance_running(organization=org, hourly="1.00", since_s=10, owner=owner)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    html = browser.get(page_url(org)).content.decode()
    token = row_html(html, instance.name).split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]

    response = browser.post(f"/orgs/{org.slug}/instances/{instance.pk}/stop/",
                            {"csrfmiddlewaretoken": token, "next": "list"})

    assert response.status_code == 302 and response["Location"] == page_url(org)
    instance.refresh_from_db()
    assert instance.state == InstanceState.STOPPING


def test_an_empty_list_offers_a_launch(browser, org):
    html = browser.get(page_url(org)).content.decode()

    assert 'data-testid="empty"' in html and "Launch a notebook" in html
    assert f'href="/orgs/{org.slug}/instances/new/"' in html.split('data-testid="empty"')[1]


def test_a_filter_that_matches_nothing_says_so(browser, org):
    InstanceFactory(organization=org, name="alpha")

    html = browser.get(page_url(org), {"name": "zzz"}).content.decode()

    assert "No instance matches these filters." in html and 'data-testid="empty"' not in html


# --- filters: one FilterSet for the page and the API -------------------------------------------


@pytest.fixture
def mixed(org):
    eu, us = RegionFactory(code="eu-test-1"), RegionFactory(code="us-test-1")
    made = [
        InstanceFactory(organization=org, name="train-eu", region=eu, state=InstanceState.RUNNING),
        InstanceFactory(organization=org, name="train-us", region=us, state=InstanceState.STOPPED),
        InstanceFactory(organization=org, name="eval-eu", region=eu, state=InstanceState.STOPPED),
        InstanceFactory(organization=org, name="gone", region=eu, state=InstanceState.TERMINATED),
    ]
    return made


@pytest.mark.parametrize(
    "query",
    [{}, {"state": "stopped"}, {"region": "eu-test-1"}, {"name": "TRAIN"}, {"region": "eu-test-1", "state": "stopped"},
     {"flavor": "<flavor of train-us>"}],
)
def test_filters_narrow_the_page_and_the_api_alike(browser, api_client, owner, org, mixed, query):
    if "flavor" in query:
        query = {"flavor": mixed[1].flavor_id}
    api_client.force_login(owner)

    on_page = set(rows(browser.get(page_url(org), query).content.decode()))
    by_api = {item["name"] for item in api_client.get(api_url(org), query).json()["results"]}

    assert on_page == by_api
    assert "gone" not in on_page  # deleted instances are not listed
    assert on_page == {
        (): {"train-eu", "train-us", "eval-eu"},
        ("state",): {"train-us", "eval-eu"},
        ("region",): {"train-eu", "eval-eu"},
        ("name",): {"train-eu", "train-us"},
        ("region", "state"): {"eval-eu"},
        ("flavor",): {"train-us"},
    }[tuple(sorted(query))]


@pytest.mark.parametrize(
    "query", [{"state": "sleeping"}, {"region": "mars-1"}, {"flavor": "abc"}, {"flavor": "999999"}]
)
def test_a_bad_filter_is_a_400_in_the_api_and_a_message_on_the_page(browser, api_client, owner, org, mixed, query):
    api_client.force_login(owner)

    answer = api_client.get(api_url(org), query)
    page = browser.get(page_url(org), query)

    assert answer.status_code == 400
    field = next(iter(query))
    assert field in answer.json() and answer.json()[field][0].startswith(("Unknown", "Select a valid"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="filter-errors"' in html and "This filter is ignored." in html
    assert set(rows(html)) == {"train-eu", "train-us", "eval-eu"}


def test_another_organizations_instances_never_show(browser, api_client, owner, org, mixed):
    # Given another tenant with an instance in the same region, named alike
    other = OrganizationFactory(owner=UserFactory())
    InstanceFactory(organization=other, name="train-other", region=mixed[0].region, state=InstanceState.RUNNING)
    api_client.force_login(owner)

    for query in ({}, {"name": "train"}, {"region": "eu-test-1"}, {"state": "running"}):
        assert "train-other" not in rows(browser.get(page_url(org), query).content.decode())
        assert "train-other" not in {i["name"] for i in api_client.get(api_url(org), query).json()["results"]}
    # and their list is not ours to see at all
    assert browser.get(page_url(other)).status_code == 404


# --- queries -----------------------------------------------------------------------------------


def test_the_page_costs_the_same_queries_for_3_or_30_rows(browser, org):
    def add(count: int) -> None:
        for _ in range(count):
            instance = instance_running(organization=org, hourly="1.50", since_s=120)
            InstanceRuntime.objects.create(instance=instance, started_at=timezone.now() - timedelta(seconds=100))

    add(3)
    with CaptureQueriesContext(connection) as few:
        assert len(rows(browser.get(page_url(org)).content.decode())) == 3
    add(22)  # 25: a full page
    with CaptureQueriesContext(connection) as full:
        html = browser.get(page_url(org)).content.decode()
    add(5)  # 30: two pages
    with CaptureQueriesContext(connection) as many:
        browser.get(page_url(org), {"page": 2})

    assert len(rows(html)) == 25 and html.count('data-testid="cost">$0.05<') == 25
    assert len(few.captured_queries) == len(full.captured_queries) == len(many.captured_queries), [
        q["sql"] for q in full.captured_queries
    ]


# --- live --------------------------------------------------------------------------------------


def test_the_socket_renders_the_page_with_its_filters_sort_and_page(owner, org, mixed):
    # Given a filtered, sorted list page
    client = Client()
    client.force_login(owner)
    page = live_page_read(client, f"{page_url(org)}?region=eu-test-1&sort=-name")
    assert page.socket_path == f"/ws/orgs/{org.slug}/instances/?region=eu-test-1&sort=-name"

    # When its socket renders what it would push
    consumer = consumer_for(page.announce(), user=owner)
    html = consumer.render()

    # Then it is the same partial: same rows, same order, same version
    assert rows(html) == ["train-eu", "eval-eu"]
    assert consumer.version() == page.version

"""Chargeback API: who sees what (each role, API keys by their role), another tenant's slug is 404
on every endpoint, bad parameters are 400 with reasons, pages walk every row exactly once, and
the CSV's TOTAL line equals the JSON total."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts import services as accounts_services
from apps.accounts.models import Role
from apps.accounts.selectors import organization_access_get
from tests.factories.accounts import UserFactory
from tests.factories.billing import InstanceFactory
from tests.factories.chargeback import chargeback_november, usage_day

pytestmark = pytest.mark.django_db

NOV1, NOV2 = date(2026, 11, 1), date(2026, 11, 2)
NOVEMBER = {"start": "2026-11-01", "end": "2026-11-30"}
ENDPOINTS = ["chargeback/", "chargeback/daily/", "chargeback/idle/"]


@pytest.fixture
def world():
    return chargeback_november()


def url(w, endpoint="chargeback/", org=None) -> str:
    return f"/api/v1/organizations/{(org or w.org).slug}/{endpoint}"


def as_user(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def get(client, w, endpoint="chargeback/", **params):
    return client.get(url(w, endpoint), {**NOVEMBER, **params})


# --- who sees what ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "billing"])
def test_owner_and_billing_see_the_whole_organization(api_client, world, who):
    response = get(as_user(api_client, getattr(world, who)), world, group_by="owner")
    assert response.status_code == 200
    body = response.json()
    assert body["total"]["cost"] == "8.50"
    assert {r["keys"][0]["name"]: r["cost"] for r in body["results"]} == {
        f"Alice Ng <{world.alice.email}>": "6.50",
        world.bob.email: "2.00",
    }
    assert (body["start"], body["end"], body["currency"]) == ("2026-11-01", "2026-11-30", "USD")


def test_an_admin_sees_the_whole_organization(api_client, world):
    admin = InstanceFactory(organization=world.org).owner
    world.org.memberships.create(user=admin, role=Role.ADMIN)
    assert get(as_user(api_client, admin), world).json()["total"]["cost"] == "8.50"


def test_a_member_sees_only_their_own_usage_even_when_asking_for_another(api_client, world):
    client = as_user(api_client, world.alice)
    body = get(client, world, group_by="instance", owner=str(world.bob.pk)).json()
    assert {r["keys"][0]["name"] for r in body["results"]} == {"train", "serve"}
    assert body["total"]["cost"] == "6.50"
    idle = get(client, world, "chargeback/idle/", below_pct="100", min_hours="0").json()
    assert {h["instance_name"] for h in idle["results"]} == {"train", "serve"}
    daily = get(client, world, "chargeback/daily/").json()
    assert [s["cost"][:2] for s in daily["series"]] == [["2.50", "4.00"]]


def test_a_viewer_with_no_usage_sees_nothing_of_others(api_client, world):
    body = get(as_user(api_client, world.viewer), world, group_by="project").json()
    assert body["results"] == [] and body["total"]["cost"] == "0.00" and body["count"] == 0


def _key(w, role) -> str:
    access = organization_access_get(user=w.owner, slug=w.org.slug)
    _, token = accounts_services.api_key_create(access=access, name=f"{role} key", role=role)
    return token


@pytest.mark.parametrize(("role", "total"), [(Role.BILLING, "8.50"), (Role.ADMIN, "8.50"), (Role.MEMBER, "0.00")])
def test_api_keys_follow_their_role(api_client, world, role, total):
    # A member key acts for the owner who made it, as a member: only the owner's own usage (none).
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_key(world, role)}")
    response = api_client.get(url(world), NOVEMBER)
    assert response.status_code == 200 and response.json()["total"]["cost"] == total


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_another_tenants_slug_is_404_on_every_endpoint(api_client, world, endpoint, fmt):
    client = as_user(api_client, world.owner)
    response = client.get(url(world, endpoint, org=world.stranger_org), {**NOVEMBER, "format": fmt})
    assert response.status_code == 404
    assert "theirs" not in response.content.decode()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_key_of_one_tenant_gets_404_on_another_and_anonymous_gets_401(api_client, world, endpoint):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_key(world, Role.ADMIN)}")
    assert api_client.get(url(world, endpoint, org=world.stranger_org)).status_code == 404
    api_client.credentials()
    assert api_client.get(url(world, endpoint)).status_code in (401, 403)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "params", "field", "reason"),
    [
        ("chargeback/", {"start": "2026-11-31"}, "start", "not a date"),
        ("chargeback/", {"start": "2026-11-10", "end": "2026-11-01"}, "end", "before it starts"),
        ("chargeback/", {"start": "2024-01-01", "end": "2026-01-01"}, "end", "at most 366 days"),
        ("chargeback/", {"group_by": "colour"}, "group_by", "Unknown dimension"),
        ("chargeback/", {"group_by": "project,owner,flavor"}, "group_by", "at most 2"),
        ("chargeback/", {"label": "no-equals"}, "label", "key=value"),
        ("chargeback/", {"project": "nope"}, "project", "No project"),
        ("chargeback/daily/", {"group_by": "colour"}, "group_by", "Unknown dimension"),
        ("chargeback/daily/", {"top": "0"}, "top", "1 to 1000"),
        ("chargeback/idle/", {"below_pct": "150"}, "below_pct", "from 0 to 100"),
        ("chargeback/idle/", {"min_hours": "NaN"}, "min_hours", "not a number"),
        ("chargeback/idle/", {"month": "2026-00"}, "month", "not a month"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(api_client, world, endpoint, params, field, reason):
    client = as_user(api_client, world.owner)
    query = params if "month" in params else {**NOVEMBER, **params}
    for fmt in ("json", "csv"):
        response = client.get(url(world, endpoint), {**query, "format": fmt})
        assert response.status_code == 400, response.content
        assert response["Content-Type"].startswith("application/json")
        assert reason in " ".join(response.json()[field])


@pytest.mark.parametrize("params", [{"limit": "x"}, {"offset": "-1"}, {"format": "xml"}])
def test_bad_paging_or_format_is_a_4xx(api_client, world, params):
    response = get(as_user(api_client, world.owner), world, **params)
    assert 400 <= response.status_code < 500


# --- paging and CSV -----------------------------------------------------------------------------


def test_pages_walk_every_row_exactly_once_in_a_stable_order(api_client, world):
    for n in range(23):
        inst = InstanceFactory(organization=world.org, project=world.web, owner=world.bob, name=f"bulk-{n:02d}")
        # Many equal costs: the order must still be total (by name, then id).
        usage_day(instance=inst, day=NOV2, seconds=3600 * (n % 3 + 1), hourly_amount="1.00")
    client = as_user(api_client, world.owner)
    seen, link, pages, totals = [], url(world) + "?start=2026-11-01&end=2026-11-30&group_by=instance&limit=5", 0, set()
    while link:
        body = client.get(link).json()
        seen += [r["keys"][0]["value"] for r in body["results"]]
        totals.add(body["total"]["cost"])
        link, pages = body["next"], pages + 1
    assert pages == 6 and len(seen) == len(set(seen)) == body["count"] == 26
    assert len(totals) == 1
    all_rows = client.get(url(world), {**NOVEMBER, "group_by": "instance", "limit": 200}).json()
    assert [r["keys"][0]["value"] for r in all_rows["results"]] == seen
    assert sum(Decimal(r["cost"]) for r in all_rows["results"]) == Decimal(totals.pop())


def _csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.parametrize("group_by", ["", "project", "project,owner", "label:cost-centre"])
def test_csv_total_equals_the_json_total_and_the_sum_of_its_rows(api_client, world, group_by):
    client = as_user(api_client, world.billing)
    params = {"group_by": group_by, "label": "team=ml"} if group_by else {}
    body = get(client, world, **params).json()
    rows = _csv_rows(get(client, world, format="csv", **params))
    header, lines, total = rows[0], rows[1:-1], rows[-1]
    cost = header.index("cost")
    assert header[cost - 4 : cost + 2] == [
        "hours",
        "allocated_gpu_hours",
        "used_gpu_hours",
        "utilisation_pct",
        "cost",
        "currency",
    ]
    assert total[0] == "TOTAL"
    assert total[cost] == body["total"]["cost"]
    assert sum(Decimal(line[cost]) for line in lines) == Decimal(total[cost])
    assert len(lines) == body["count"]


def test_csv_guards_against_spreadsheet_formulas(api_client, world):
    world.web.name = "=HYPERLINK(1)"
    world.web.save()
    rows = _csv_rows(get(as_user(api_client, world.owner), world, group_by="project", format="csv"))
    assert ["'=HYPERLINK(1)"] == [r[0] for r in rows if "HYPERLINK" in r[0]]


def test_idle_csv_and_json_list_the_same_instances(api_client, world):
    client = as_user(api_client, world.owner)
    params = {"below_pct": "30", "min_hours": "0.2"}
    body = get(client, world, "chargeback/idle/", **params).json()
    assert [(h["instance_name"], h["wasted_gpu_hours"], h["cost"]) for h in body["results"]] == [
        ("train", "2.3000", "6.00"),
        ("serve", "0.2000", "0.50"),
    ]
    rows = _csv_rows(get(client, world, "chargeback/idle/", format="csv", **params))
    assert [r[0] for r in rows[1:]] == ["train", "serve"]


def test_daily_endpoint_gives_every_day_and_series_per_first_dimension(api_client, world):
    body = get(as_user(api_client, world.owner), world, "chargeback/daily/", group_by="project,owner").json()
    assert len(body["days"]) == 30 and body["group_by"] == ["project"]
    assert [(s["name"], s["cost"][:3]) for s in body["series"]] == [
        ("Research", ["4.00", "4.00", "0.00"]),
        ("Web", ["0.50", "0.00", "0.00"]),
    ]


@pytest.mark.parametrize(
    ("endpoint", "params"),
    [
        ("chargeback/", {"group_by": "instance,owner"}),
        ("chargeback/", {"group_by": "label:cost-centre,project", "format": "csv"}),
        ("chargeback/daily/", {"group_by": "owner"}),
        ("chargeback/idle/", {"below_pct": "100", "min_hours": "0"}),
    ],
)
def test_endpoint_query_count_does_not_grow_with_rows(api_client, world, endpoint, params):
    client = as_user(api_client, world.owner)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = get(client, world, endpoint, **params)
            assert response.status_code == 200
            if params.get("format") == "csv":
                b"".join(response.streaming_content)
        return len(ctx.captured_queries)

    few = count()
    for n in range(15):
        inst = InstanceFactory(
            organization=world.org, project=world.web, owner=UserFactory(), labels={"cost-centre": f"X{n}"}
        )
        usage_day(instance=inst, day=NOV2, seconds=60 * (n + 1))
    assert count() == few


def test_daily_csv_has_a_line_per_day_and_series_adding_up_to_the_json(api_client, world):
    client = as_user(api_client, world.owner)
    body = get(client, world, "chargeback/daily/", group_by="project").json()
    rows = _csv_rows(get(client, world, "chargeback/daily/", group_by="project", format="csv"))
    assert rows[0][:4] == ["day", "series", "value", "cost"]
    assert len(rows) - 1 == 30 * len(body["series"])
    assert sum(Decimal(r[3]) for r in rows[1:]) == sum(Decimal(c) for s in body["series"] for c in s["cost"])
    assert rows[1][:4] == ["2026-11-01", "Research", str(world.research.pk), "4.00"]


def test_month_and_repeated_labels_and_an_inclusive_end(api_client, world):
    client = as_user(api_client, world.owner)
    body = client.get(url(world), {"month": "2026-11", "label": ["team=ml", "cost-centre=CC-1"]}).json()
    assert (body["start"], body["end"], body["labels"]) == (
        "2026-11-01",
        "2026-11-30",
        {"cost-centre": "CC-1", "team": "ml"},
    )
    assert body["total"]["cost"] == "6.00"  # train only: tune's own cost-centre is CC-2
    # end is the last day, included: the 2nd's usage counts when end=2026-11-02, not when end=2026-11-01
    assert client.get(url(world), {"start": "2026-11-02", "end": "2026-11-02"}).json()["total"]["cost"] == "4.00"
    assert client.get(url(world), {"start": "2026-11-01", "end": "2026-11-01"}).json()["total"]["cost"] == "4.50"


def test_a_label_named_like_a_measure_gets_a_column_name_of_its_own(api_client, world):
    world.web.labels = {"cost": "high"}
    world.web.save()
    rows = _csv_rows(get(as_user(api_client, world.owner), world, group_by="label:cost,project", format="csv"))
    assert rows[0][:3] == ["label:cost", "Project", "hours"] and rows[0].count("cost") == 1
    assert ["high", "Web"] in [r[:2] for r in rows]

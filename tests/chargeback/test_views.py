"""The chargeback pages: who sees what (owners, admins and billing the organization; members and
viewers their own usage, and the page says so), another tenant's slug a 404 on the page, the
idle page and the CSV; a bad parameter a form error (400, or 200 on an htmx swap), never a 500;
drill-down narrows to a group; the CSV holds the rows and the total the page shows; the page's
query count does not grow with its rows."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import Membership, Role
from apps.chargeback.services.rollup import usage_rollup_run
from tests.factories.billing import InstanceFactory
from tests.factories.chargeback import chargeback_world, usage_day

pytestmark = pytest.mark.django_db

NOV1, NOV2 = date(2026, 11, 1), date(2026, 11, 2)
NOV = {"start": "2026-11-01", "end": "2026-11-30"}
GROUP_ROW = re.compile(r'<tr[^>]*data-testid="group-row"[^>]*data-group="([^"]*)"')
TOTAL = re.compile(r'data-testid="total-cost" data-value="([^"]+)"')
TABLE_TOTAL = re.compile(r'data-testid="table-total" data-value="([^"]+)"')


@pytest.fixture
def world():
    w = chargeback_world()
    usage_day(instance=w.train, day=NOV1, seconds=3600, hourly_amount="2.00", util_pct=50)  # alice, research
    usage_day(instance=w.train, day=NOV2, seconds=7200, hourly_amount="2.00", util_pct=5)  # alice, research
    usage_day(instance=w.tune, day=NOV1, seconds=3600, hourly_amount="2.00", util_pct=90)  # bob, research
    usage_day(instance=w.serve, day=NOV1, seconds=1800, hourly_amount="1.00", gpus="0.5", util_pct=20)  # alice, web
    usage_day(instance=w.stranger_instance, day=NOV1, seconds=3600, hourly_amount="5.00")
    return w


def url(w, path: str = "") -> str:
    return f"/orgs/{w.org.slug}/chargeback/{path}"


def page(client, user, address: str, params: dict | None = None, **headers):
    client.force_login(user)
    return client.get(address, params or {}, **headers)


def groups(html: str) -> list[str]:
    return GROUP_ROW.findall(html)


def total(html: str) -> Decimal:
    return Decimal(TOTAL.search(html)[1])


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.BILLING])
def test_owners_admins_and_billing_see_the_whole_organization(client, world, role):
    # Given someone of that role in the organization
    user = world.billing if role == Role.BILLING else world.owner
    Membership.objects.filter(organization=world.org, user=user).update(role=role)

    # When they open the chargeback grouped by project
    response = page(client, user, url(world), {**NOV, "group_by": "project"})

    # Then they see every project's cost of this organization, none of the other tenant's
    html = response.content.decode()
    assert response.status_code == 200
    assert groups(html) == ["Research", "Web"]
    assert total(html) == Decimal("8.50")  # 2 + 4 + 2 research, 0.50 web; not the stranger's 5
    assert 'data-testid="own-only"' not in html
    # and the month's FOCUS export is offered
    assert f'/orgs/{world.org.slug}/chargeback/focus.csv?month={NOV["start"][:7]}' in html


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_members_and_viewers_see_their_own_usage_only_and_are_told_so(client, world, role):
    # Given bob as a member or a viewer
    Membership.objects.filter(organization=world.org, user=world.bob).update(role=role)

    # When he opens the chargeback, even asking for alice's usage
    response = page(client, world.bob, url(world), {**NOV, "group_by": "owner", "owner": world.alice.pk})

    # Then he sees his own usage only, and the page says so
    html = response.content.decode()
    assert response.status_code == 200
    assert len(groups(html)) == 1
    assert total(html) == Decimal("2.00")
    assert 'data-testid="own-only"' in html
    assert "Credits applied" not in html  # invoices are for billing roles
    assert 'data-testid="focus-download"' not in html


def test_a_members_csv_holds_only_their_own_usage(client, world):
    response = page(client, world.alice, url(world), {**NOV, "group_by": "instance", "format": "csv"})
    rows = csv_rows(response)
    assert response.status_code == 200
    assert sorted(r[0] for r in rows[1:-1]) == ["serve", "train"]
    assert rows[-1][0] == "TOTAL" and Decimal(rows[-1][rows[0].index("cost")]) == Decimal("6.50")


@pytest.mark.parametrize("path", ["", "export.csv", "idle/", "?format=csv", "idle/?format=csv"])
def test_another_tenants_slug_is_a_404_on_every_page(client, world, path):
    # Given the other tenant's owner
    stranger = world.stranger_org.memberships.get().user

    # When they ask for this organization's pages
    response = page(client, stranger, url(world, path))

    # Then it is as if the organization did not exist
    assert response.status_code == 404


def test_signed_out_visitors_are_sent_to_log_in(client, world):
    response = client.get(url(world))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-13-01"},
        {"start": "2026-11-30", "end": "2026-11-01"},
        {"start": "2020-01-01", "end": "2026-11-01"},
        {"end": "9999-12-31"},
        {"group_by": "colour"},
        {"group_by": ["project", "project"]},
        {"group_by": "project,owner,region"},
        {"label": "no-equals-sign"},
        {"label": "Bad Key=x"},
        {"project": "not-ours"},
        {"instance": "not-a-uuid"},
        {"owner": "x" * 30},
        {"month": "2026-11", "start": "2026-11-01"},
    ],
)
def test_bad_parameters_are_form_errors_never_a_500(client, world, params):
    # When the owner asks with a bad parameter, as a full page and as an htmx swap
    full = page(client, world.owner, url(world), params)
    swap = page(client, world.owner, url(world), params, HTTP_HX_REQUEST="true")
    download = page(client, world.owner, url(world, "export.csv"), params)

    # Then the form shows the reason: 400 on the page, 200 on the swap (htmx swaps only 2xx)
    assert full.status_code == 400 and download.status_code == 400
    assert swap.status_code == 200
    for response in (full, swap, download):
        assert 'data-testid="form-errors"' in response.content.decode()
    assert 'id="chargeback"' in swap.content.decode() and "<html" not in swap.content.decode()


@pytest.mark.parametrize(
    "params", [{"below_pct": "lots"}, {"below_pct": "101"}, {"min_hours": "-1"}, {"start": "yesterday"}]
)
def test_bad_idle_parameters_are_form_errors(client, world, params):
    full = page(client, world.owner, url(world, "idle/"), params)
    swap = page(client, world.owner, url(world, "idle/"), params, HTTP_HX_REQUEST="true")
    assert full.status_code == 400 and swap.status_code == 200
    assert 'data-testid="form-errors"' in full.content.decode()


@pytest.mark.parametrize(
    "extra",
    [
        {"sort": "k0"},
        {"sort": "-k1"},
        {"sort": "-cost"},
        {"sort": "utilisation_pct"},
        {"sort": "nonsense"},
        {"page": "999"},
        {"page": "abc"},
    ],
)
def test_any_sort_or_page_of_the_table_is_an_answer_not_a_500(client, world, extra):
    response = page(client, world.owner, url(world), {**NOV, "group_by": ["project", "owner"], **extra})
    assert response.status_code == 200
    assert len(groups(response.content.decode())) == 3


def test_sorting_by_a_group_column_orders_by_its_names(client, world):
    html = page(client, world.owner, url(world), {**NOV, "group_by": "instance", "sort": "k0"}).content.decode()
    assert groups(html) == ["serve", "train", "tune"]


def test_the_first_visit_shows_this_month_by_project(client, world):
    response = page(client, world.owner, url(world))
    html = response.content.decode()
    assert response.status_code == 200
    assert '<option value="project" selected>' in html
    assert 'type="date"' in html and 'data-testid="csv-download"' in html


def test_an_htmx_request_gets_the_partial_only(client, world):
    response = page(client, world.owner, url(world), {**NOV, "group_by": "owner"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="chargeback"')
    assert sorted(groups(html)) == sorted([f"Alice Ng &lt;{world.alice.email}&gt;", world.bob.email])


def test_two_dimensions_and_a_label_filter(client, world):
    # When grouped by project then user, filtered by cost-centre=CC-1 (research's, which tune overrides)
    response = page(
        client, world.owner, url(world), {**NOV, "group_by": ["project", "owner"], "label": "cost-centre=CC-1"}
    )

    # Then only train's usage remains: research / alice
    html = response.content.decode()
    assert groups(html) == [f"Research / Alice Ng &lt;{world.alice.email}&gt;"]
    assert total(html) == Decimal("6.00") == Decimal(TABLE_TOTAL.search(html)[1])


def test_drill_down_goes_from_project_to_user_to_instance(client, world):
    # Given the report by project
    html = page(client, world.owner, url(world), {**NOV, "group_by": "project"}).content.decode()

    # When the owner follows the Research group's link
    research = re.search(r'<tr[^>]*data-group="Research".*?href="\?([^"]+)"', html, re.S)[1].replace("&amp;", "&")
    html = page(client, world.owner, f"{url(world)}?{research}").content.decode()

    # Then they see research's users, narrowed to the project
    assert "project=research" in research and "group_by=owner" in research
    assert sorted(groups(html)) == sorted([f"Alice Ng &lt;{world.alice.email}&gt;", world.bob.email])
    assert 'data-testid="narrowed-project"' in html and total(html) == Decimal("8.00")

    # And following alice's link shows her instances in research
    alice = re.search(r'<tr[^>]*data-group="Alice Ng[^"]*".*?href="\?([^"]+)"', html, re.S)[1].replace("&amp;", "&")
    html = page(client, world.owner, f"{url(world)}?{alice}").content.decode()
    assert groups(html) == ["train"]
    assert total(html) == Decimal("6.00")


def test_in_a_two_dimension_table_a_cell_narrows_to_its_row_up_to_it(client, world):
    # Given the report by project then user
    html = page(client, world.owner, url(world), {**NOV, "group_by": ["project", "owner"]}).content.decode()

    # When the owner follows alice's cell in the Research row
    row = re.search(r'<tr[^>]*data-group="Research / Alice Ng[^"]*".*?</tr>', html, re.S)[0]
    links = [h.replace("&amp;", "&") for h in re.findall(r'href="\?([^"]+)"', row)]
    html = page(client, world.owner, f"{url(world)}?{links[1]}").content.decode()

    # Then the page is narrowed to research and alice, by instance
    assert "project=research" in links[1] and f"owner={world.alice.pk}" in links[1]
    assert groups(html) == ["train"]
    assert 'data-testid="narrowed-project"' in html and 'data-testid="narrowed-user"' in html


def test_the_csv_has_the_rows_and_the_total_the_page_shows(client, world):
    params = {**NOV, "group_by": ["project", "owner"]}
    html = page(client, world.billing, url(world), params).content.decode()
    link = re.search(r'href="([^"]+)"[^>]*data-testid="csv-download"', html)[1].replace("&amp;", "&")

    response = page(client, world.billing, link)
    rows = csv_rows(response)

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    header, body, last = rows[0], rows[1:-1], rows[-1]
    cost = header.index("cost")
    assert [f"{r[0]} / {r[1]}".replace("<", "&lt;").replace(">", "&gt;") for r in body] == groups(html)
    assert last[0] == "TOTAL" and Decimal(last[cost]) == total(html) == sum(Decimal(r[cost]) for r in body)


def test_the_idle_page_lists_long_low_utilisation_holders_with_who_and_what_it_cost(client, world):
    # Given train at 5 % for 2 h on Nov 2 (and 50 % for 1 h on Nov 1: 20 % overall)
    response = page(client, world.owner, url(world, "idle/"), {**NOV, "below_pct": "25", "min_hours": "1"})
    html = response.content.decode()
    assert response.status_code == 200
    # (serve, at 20 %, held only a quarter GPU-hour; tune ran at 90 %)
    assert re.findall(r'data-testid="idle-row" data-instance="([^"]+)"', html) == ["train"]
    assert world.alice.email in html and "$6.00" in html

    # And its CSV says the same
    rows = csv_rows(
        page(client, world.owner, url(world, "idle/"), {**NOV, "below_pct": "25", "min_hours": "1", "format": "csv"})
    )
    assert [r[0] for r in rows[1:]] == ["train"]


def test_a_viewer_sees_only_their_own_idle_holdings(client, world):
    response = page(client, world.bob, url(world, "idle/"), {**NOV, "below_pct": "100", "min_hours": "0"})
    html = response.content.decode()
    assert re.findall(r'data-testid="idle-row" data-instance="([^"]+)"', html) == ["tune"]


def test_the_page_runs_the_same_number_of_queries_whatever_its_rows(client, world):
    client.force_login(world.owner)
    params = {**NOV, "group_by": ["project", "instance"]}

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url(world), params).status_code == 200
        return len(queries)

    few = count()
    for n in range(30):
        instance = InstanceFactory(organization=world.org, project=world.research, owner=world.bob, name=f"x{n}")
        usage_day(instance=instance, day=NOV1, seconds=60 * (n + 1), hourly_amount="3.00")
    assert count() == few


def test_the_page_says_how_fresh_its_figures_are(client, world):
    # Given no roll-up has run yet
    html = page(client, world.owner, url(world), NOV).content.decode()
    assert "Not rolled up yet" in html

    # When the roll-up runs
    usage_rollup_run()

    # Then the page says its figures are finished hours as of that run
    html = page(client, world.owner, url(world), NOV).content.decode()
    assert "Not rolled up yet" not in html
    assert "Finished hours as of the last roll-up" in html and "running hour is added once it ends" in html

"""Chargeback in headless Chromium against the real portal (ASGI server, PostgreSQL): a billing
viewer opens chargeback from the navigation, groups by project then by user, filters a label,
downloads the CSV, and the CSV's rows and TOTAL are the table's rows and the page's total; the
form swaps the report in with htmx (no reload) and drill-down narrows to a group; the stacked
chart draws with the vendored Chart.js, with no CSP violation nor script error."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.factories.accounts import PASSWORD
from tests.factories.chargeback import chargeback_world, usage_day

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _seed():
    """chargeback_world's organization with usage today and yesterday (this month's default
    range holds today; yesterday only when it is this month too)."""
    w = chargeback_world()
    today = datetime.now(tz=UTC).date()
    days = [today] + ([today - timedelta(days=1)] if today.day > 1 else [])
    for day in days:
        usage_day(instance=w.train, day=day, seconds=3600, hourly_amount="2.50", util_pct=40)  # research, alice
        usage_day(instance=w.tune, day=day, seconds=5400, hourly_amount="2.50", util_pct=80)  # research, bob
        usage_day(instance=w.serve, day=day, seconds=1234, hourly_amount="1.333333", gpus="0.5")  # web, alice
    usage_day(instance=w.stranger_instance, day=today, seconds=3600, hourly_amount="9.00")
    return w


def _table_rows(page) -> list[str]:
    return page.locator("[data-testid=group-row]").evaluate_all("rows => rows.map(r => r.dataset.group)")


def test_a_billing_viewer_groups_filters_and_downloads_a_csv_whose_totals_are_the_pages(
    live_portal, browser_context, transactional_db, tmp_path
):
    base = live_portal.url
    w = _seed()
    page = browser_context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    # Given a billing viewer of the organization, signed in
    log_in(page, base, w.billing.email, PASSWORD)

    # When they open chargeback from the navigation
    page.get_by_test_id("nav-chargeback").click()
    expect(page.get_by_test_id("chargeback-form")).to_be_visible()

    # Then this month is shown by project, with the whole organization's groups and a drawn chart
    expect(page.locator("[data-testid=group-row]")).to_have_count(2)
    assert sorted(_table_rows(page)) == ["Research", "Web"]
    expect(page.locator("[data-testid=chart-chargeback-daily] canvas")).to_be_visible()
    page.wait_for_function("() => !!Chart.getChart(document.querySelector('canvas[data-chart]'))")

    # When they group by project, then by user (htmx swaps the report; the page is not reloaded)
    page.evaluate("() => { window.__notReloaded = true; }")
    page.get_by_test_id("group-by-2").select_option("owner")
    expect(page.locator("[data-testid=group-row]")).to_have_count(3)
    assert page.evaluate("() => window.__notReloaded") is True
    assert "group_by=owner" in page.url
    assert sorted(_table_rows(page)) == sorted(
        [f"Research / Alice Ng <{w.alice.email}>", f"Research / {w.bob.email}", f"Web / Alice Ng <{w.alice.email}>"]
    )

    # And filter the label team=ml (the Research project's)
    page.get_by_test_id("label-filter").fill("team=ml")
    page.get_by_test_id("apply").click()
    expect(page.locator("[data-testid=group-row]")).to_have_count(2)
    assert all(row.startswith("Research / ") for row in _table_rows(page))
    assert page.evaluate("() => window.__notReloaded") is True

    shown_total = Decimal(page.get_by_test_id("total-cost").get_attribute("data-value"))
    table_total = Decimal(page.get_by_test_id("table-total").get_attribute("data-value"))
    shown_rows = _table_rows(page)
    shown_costs = page.locator("[data-testid=row-cost]").all_inner_texts()

    # And download the CSV
    with page.expect_download() as download_info:
        page.get_by_test_id("csv-download").click()
    path = tmp_path / "chargeback.csv"
    download_info.value.save_as(path)
    rows = list(csv.reader(io.StringIO(path.read_text())))

    # Then the CSV has the table's rows, in its order, and its TOTAL is the page's total
    header, body, last = rows[0], rows[1:-1], rows[-1]
    cost = header.index("cost")
    assert header[:2] == ["Project", "User"]
    assert [f"{r[0]} / {r[1]}" for r in body] == shown_rows
    assert [f"${Decimal(r[cost]):,.2f}" for r in body] == shown_costs
    assert last[0] == "TOTAL"
    assert Decimal(last[cost]) == shown_total == table_total == sum(Decimal(r[cost]) for r in body)
    assert shown_total > 0

    # And drilling into a group narrows to it, one level deeper (alice's instances in research)
    page.locator("[data-testid=group-row]", has_text="Alice Ng").locator("[data-testid=drill]").nth(1).click()
    expect(page.get_by_test_id("narrowed-user")).to_be_visible()
    expect(page.locator("[data-testid=group-row]")).to_have_count(1)
    assert _table_rows(page) == ["train"]

    assert problems == []

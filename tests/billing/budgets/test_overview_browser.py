"""The billing journey in headless Chromium against the real portal: Billing in the nav, the
overview's running cost ticking with no reload, and a budget set on the budgets page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.billing.budgets.spend import instance_running
from tests.browser.conftest import log_in
from tests.factories.accounts import PASSWORD, OrganizationFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_overview_ticks_and_a_budget_is_set(live_portal, browser_context, transactional_db):
    base = live_portal.url
    owner = UserFactory()
    org = OrganizationFactory(owner=owner, name="Tick Labs")
    instance = instance_running(organization=org, hourly="36.00", since_s=60)  # a cent a second
    page = browser_context.new_page()
    log_in(page, base, owner.email, PASSWORD)

    # Given the overview, reached from the nav
    page.get_by_test_id("nav-billing").click()
    expect(page.locator("h1")).to_contain_text("Billing · Tick Labs")
    cost = page.get_by_test_id("running-cost")
    expect(cost).to_have_count(1)
    first = cost.inner_text()
    assert re.fullmatch(r"\$0\.[6-9]\d", first), first  # 60 s and more at a cent a second
    expect(page.get_by_test_id("running")).to_contain_text(instance.name)

    # Then the running cost ticks on the page, with no reload
    page.evaluate("window.__noReload = true")
    expect(cost).not_to_have_text(first, timeout=15_000)
    assert page.evaluate("window.__noReload") is True

    # When the owner sets a $25 hard cap on the budgets page
    page.get_by_test_id("billing-tabs").get_by_role("link", name="Budgets").click()
    form = page.get_by_test_id("budget-form")
    form.locator("input[name=monthly_amount]").fill("25")
    form.get_by_role("button", name="Save budget").click()

    # Then it is listed, and the overview shows it with its share used
    expect(page.locator("main")).to_contain_text("Budget saved: $25.00 a month (hard cap).")
    expect(page.get_by_test_id("budgets")).to_contain_text("$25.00")
    page.get_by_test_id("billing-tabs").get_by_role("link", name="Overview").click()
    expect(page.get_by_test_id("budgets")).to_contain_text("hard cap")

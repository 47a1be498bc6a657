"""The cards page in headless Chromium against the live portal and localstripe's Stripe.js
stand-in: a good card is saved and shown, a declined one shows Stripe's message and is not saved."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from apps.billing.models import PaymentMethod
from apps.billing.services.accounts import billing_account_get_or_create
from tests.browser.conftest import card_fill, log_in
from tests.factories.accounts import PASSWORD, OrganizationFactory, UserFactory

from .conftest import CARD_DECLINED, CARD_OK

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_add_a_good_card_then_see_a_declined_one_refused(live_portal, browser_context):
    owner = UserFactory()
    organization = OrganizationFactory(owner=owner)
    account = billing_account_get_or_create(organization=organization)
    page = browser_context.new_page()
    log_in(page, live_portal.url, owner.email, PASSWORD)
    cards_url = f"{live_portal.url}/orgs/{organization.slug}/billing/cards/"

    # Given the cards page with no card on file
    page.goto(cards_url)
    expect(page.get_by_test_id("card-list")).to_contain_text("No card on file yet.")

    # When the owner adds a good card through Stripe Elements
    page.get_by_role("link", name="Add card").click()
    card_fill(page, CARD_OK)
    page.get_by_role("button", name="Save card").click()

    # Then the cards page shows it as the default card
    expect(page.locator(".messages")).to_contain_text("Card visa •••• 4242 saved. It is the default card.")
    row = page.get_by_test_id("card-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("visa •••• 4242")
    expect(row.get_by_test_id("default-badge")).to_be_visible()

    # When they try a card the bank declines
    page.get_by_role("link", name="Add card").click()
    card_fill(page, CARD_DECLINED)
    page.get_by_role("button", name="Save card").click()

    # Then Stripe's message is on the page and nothing more is stored
    expect(page.get_by_test_id("card-error")).to_have_text("Your card was declined.")
    expect(page.get_by_role("button", name="Save card")).to_be_enabled()
    assert list(PaymentMethod.objects.filter(account=account).values_list("last4", flat=True)) == ["4242"]
    page.goto(cards_url)
    expect(page.get_by_test_id("card-row")).to_have_count(1)

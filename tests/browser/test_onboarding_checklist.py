"""A new user's first-run checklist in headless Chromium against the real portal and localstripe:
after sign-up the landing page ticks the verified address and nothing else; a card added through
the Stripe Elements stand-in ticks the card item."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import card_fill, sign_up_and_verify

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "a-long-pass-phrase-42"


def test_a_new_user_sees_the_checklist_and_a_card_ticks_its_item(
    live_portal, stripe_webhooks_live, celery_worker, browser_context, transactional_db, demo_catalog
):
    base = live_portal.url
    page = browser_context.new_page()

    # Given a new user who just signed up and confirmed the address
    sign_up_and_verify(page, base, "first@onboarding.example", PASSWORD)

    # Then the page they land on shows the checklist: the address ticked, the rest to do
    checklist = page.get_by_test_id("onboarding-checklist")
    expect(checklist).to_be_visible()
    expect(page.get_by_test_id("onboarding-email")).to_have_attribute("data-done", "true")
    for step in ("payment", "notebook", "api_key"):
        expect(page.get_by_test_id(f"onboarding-{step}")).to_have_attribute("data-done", "false")
    landing = page.url

    # When they follow the card item and add a card
    checklist.get_by_role("link", name="Add a card").click()
    card_fill(page, "4242424242424242")
    page.get_by_role("button", name="Save card").click()
    expect(page.get_by_test_id("card-row")).to_contain_text("4242")

    # Then back on the landing page the card item is ticked, the others still to do
    page.goto(landing)
    expect(page.get_by_test_id("onboarding-payment")).to_have_attribute("data-done", "true")
    expect(page.get_by_test_id("onboarding-payment")).to_contain_text("Card or credits on file")
    expect(page.get_by_test_id("onboarding-notebook")).to_have_attribute("data-done", "false")

    # When they dismiss it, it stays gone
    checklist.get_by_role("button", name="Dismiss this checklist").click()
    expect(page.get_by_test_id("onboarding-checklist")).to_have_count(0)
    page.goto(landing)
    expect(page.get_by_test_id("onboarding-checklist")).to_have_count(0)

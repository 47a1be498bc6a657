"""The foundation journey in headless Chromium, against the real ASGI server and Celery worker:
sign up, verify the email, log in, see the storefront, create an organization, invite a second
user, who accepts and appears with the right role — live on the first user's open page."""

import re
import time

import pytest
from playwright.sync_api import expect

from apps.accounts.models import Membership
from tests.browser.conftest import log_in, log_out, sign_up_and_verify
from tests.support.mail import wait_for_link

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "Str0ng-enough-passphrase"


def test_sign_up_create_organization_invite_and_accept(
    live_portal, celery_worker, browser_context, transactional_db, demo_catalog
):
    base = live_portal.url
    founder = browser_context.new_page()

    # Given a new visitor who signs up and verifies the email address
    sign_up_and_verify(founder, base, "founder@photon.test", PASSWORD)
    log_out(founder)

    # When they log in, they can see the storefront with prices
    log_in(founder, base, "founder@photon.test", PASSWORD)
    founder.goto(f"{base}/")
    expect(founder.locator("main")).to_contain_text("Notebook")
    expect(founder.locator("main")).to_contain_text(re.compile(r"\$\d+\.\d{2}"))

    # And they create a company organization
    founder.goto(f"{base}/orgs/")
    form = founder.get_by_test_id("org-create-form")
    form.locator("input[name=name]").fill("Photon Labs")
    form.locator("select[name=kind]").select_option("company")
    form.get_by_role("button", name="Create organization").click()
    expect(founder.locator("h1")).to_contain_text("Photon Labs")

    # And invite a colleague as admin
    founder.get_by_role("link", name="Members").first.click()
    invite = founder.get_by_test_id("invite-form")
    invite.locator("input[name=email]").fill("colleague@photon.test")
    invite.locator("select[name=role]").select_option("admin")
    invite.get_by_role("button", name="Send invitation").click()
    expect(founder.locator(".messages")).to_contain_text("Invitation sent to colleague@photon.test")
    expect(founder.locator("[data-invitation='colleague@photon.test']")).to_be_visible()

    # (The founder's page sits idle meanwhile: its socket must outlive quiet periods longer than
    # the Redis client's 5 s default read timeout, which once closed it.)
    time.sleep(6)

    # Then the colleague signs up, opens the emailed link and accepts
    colleague = browser_context.browser.new_context().new_page()
    sign_up_and_verify(colleague, base, "colleague@photon.test", PASSWORD)
    invitation_link = wait_for_link(to="colleague@photon.test", pattern=r"https?://\S+/invitations/[\w-]+/")
    colleague.goto(invitation_link)
    colleague.get_by_role("button", name="Accept invitation").click()
    expect(colleague.locator(".messages")).to_contain_text("Your role is admin")

    # And appears with the right role on the founder's open page, pushed over the websocket
    row = founder.locator("[data-member='colleague@photon.test']")
    expect(row).to_be_visible()
    expect(row.get_by_test_id("role")).to_have_text("admin")
    expect(founder.locator("[data-invitation='colleague@photon.test']")).to_have_count(0)
    assert Membership.objects.get(user__email="colleague@photon.test", organization__name="Photon Labs").role == "admin"

    # And a used link cannot be used again
    colleague.goto(invitation_link)
    expect(colleague.locator("main")).to_contain_text("already been used")
    colleague.context.close()

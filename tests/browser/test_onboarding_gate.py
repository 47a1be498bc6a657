"""A new user without a card who clicks Launch is asked, once and before any form, to add a card,
with a link to where that is done; with the card added, the same Launch click gets the form and
the notebook runs. Headless Chromium against the real portal, worker, agent and localstripe."""

import time

import pytest
from playwright.sync_api import expect

from apps.accounts.models import Organization, OrganizationKind
from apps.capacity.models import Gpu
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Region
from apps.instances.models import Instance
from tests.browser.conftest import card_fill, sign_up_and_verify
from tests.support.processes import agent_start

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "a-long-pass-phrase-42"


def test_a_new_user_is_guided_to_add_a_card_then_launches(
    live_portal, celery_worker, celery_beat, browser_context, transactional_db, demo_catalog, tmp_path, process_logs
):
    base = live_portal.url
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    agent = agent_start(
        process_logs,
        portal_url=base,
        name="gate-node",
        state_file=tmp_path / "state.json",
        token=token,
        simulate="1xH100-80GB",
        notebook_pool=1,
    )
    try:
        deadline = time.monotonic() + 60
        while not Gpu.objects.filter(node__state="ready").exists():
            assert time.monotonic() < deadline, "the agent's node never became ready"
            time.sleep(0.2)
        page = browser_context.new_page()
        email = "new@gate.example"

        # Given a new user, no card and no credits
        sign_up_and_verify(page, base, email, PASSWORD)
        organization = Organization.objects.get(kind=OrganizationKind.PERSONAL, memberships__user__email=email)

        # When they click Launch on the storefront
        page.goto(f"{base}/")
        page.locator("#offering-notebooks [data-testid=launch]").click()

        # Then, before any form, they are asked once to add a card, with a link (no raw path)
        gate = page.get_by_test_id("launch-gate")
        expect(gate).to_contain_text("Add a card to launch")
        expect(page.get_by_text("Add a card to launch")).to_have_count(1)
        expect(page.get_by_test_id("launch-form")).to_have_count(0)
        expect(gate).not_to_contain_text("/billing/")

        # When they follow the link and add a card
        gate.get_by_role("link", name="Add a card").click()
        card_fill(page, "4242424242424242")
        page.get_by_role("button", name="Save card").click()
        expect(page.get_by_test_id("card-row")).to_contain_text("visa •••• 4242")

        # Then the same Launch click gets the form, and the defaults launch
        page.goto(f"{base}/")
        page.locator("#offering-notebooks [data-testid=launch]").click()
        form = page.get_by_test_id("launch-form")
        form.locator("input[name=name]").fill("first-notebook")
        form.get_by_role("button", name="Launch").click()
        expect(page.locator("#instance-detail")).to_have_attribute("data-state", "running", timeout=90_000)
        assert Instance.objects.get(organization=organization, name="first-notebook").state == "running"
    finally:
        agent.stop()

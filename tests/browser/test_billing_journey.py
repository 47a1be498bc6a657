"""Pay-as-you-go in headless Chromium against the real portal, worker, beat, agent, JupyterLab,
nginx and localstripe: sign up, add a card through the Stripe Elements stand-in, launch a
notebook, stop it, see its metered seconds and amount, and see the month's invoice paid through
localstripe's signed webhook. And the same start with a card the bank declines: a clear message
and no launch."""

import math
import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.accounts.models import Organization, OrganizationKind
from apps.billing.models import InvoiceStatus, MeteredRun, PaymentMethod, UsageRecord
from apps.billing.money import usage_cost
from apps.billing.selectors.usage import month_bounds
from apps.billing.services.accounts import billing_account_get_or_create
from apps.billing.services.invoicing import invoice_monthly_create
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Flavor, Region
from apps.instances.models import Instance
from tests.browser.conftest import card_fill, sign_up_and_verify
from tests.support.processes import agent_start

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "a-long-pass-phrase-42"
CARD_OK, CARD_DECLINED = "4242424242424242", "4000000000000002"


def personal_org(email: str) -> Organization:
    return Organization.objects.get(kind=OrganizationKind.PERSONAL, memberships__user__email=email)


def add_card(page, base: str, slug: str, number: str) -> None:
    page.goto(f"{base}/orgs/{slug}/billing/cards/")
    page.get_by_role("link", name="Add card").click()
    card_fill(page, number)
    page.get_by_role("button", name="Save card").click()


def launch_notebook(page, base: str, name: str) -> None:
    page.goto(f"{base}/")
    page.locator("#offering-notebooks [data-testid=launch]").click()
    form = page.get_by_test_id("launch-form")
    form.locator("select[name=flavor]").select_option(str(Flavor.objects.get(slug="notebook-1x-h100").pk))
    form.locator("select[name=region]").select_option("us-east-1")
    form.locator("input[name=name]").fill(name)
    form.get_by_role("button", name="Launch").click()


def test_sign_up_add_card_launch_stop_see_usage_and_the_invoice_paid(
    live_portal,
    stripe_webhooks_live,
    celery_worker,
    celery_beat,
    browser_context,
    transactional_db,
    demo_catalog,
    tmp_path,
    process_logs,
):
    base = live_portal.url
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    agent = agent_start(
        process_logs,
        portal_url=base,
        name="billing-node",
        state_file=tmp_path / "state.json",
        token=token,
        notebook_pool=1,
    )
    try:
        page = browser_context.new_page()
        email = "ada@payg.example"

        # Given a new user who signed up and added a card through Stripe Elements
        sign_up_and_verify(page, base, email, PASSWORD)
        organization = personal_org(email)
        add_card(page, base, organization.slug, CARD_OK)
        expect(page.get_by_test_id("card-row")).to_contain_text("visa •••• 4242")

        # When they launch a notebook, let it run and stop it
        launch_notebook(page, base, "pay-as-you-go")
        detail = page.locator("#instance-detail")
        expect(detail).to_have_attribute("data-state", "running", timeout=90_000)
        expect(page.get_by_test_id("running-cost")).to_contain_text("so far at $", timeout=15_000)
        time.sleep(12)  # let it run: the seconds it runs are what is billed
        page.get_by_role("button", name="Stop").click()
        expect(detail).to_have_attribute("data-state", "stopped", timeout=30_000)

        # Then the instance shows exactly the metered seconds and their amount
        instance = Instance.objects.get(organization=organization, name="pay-as-you-go")
        run = MeteredRun.objects.get(instance=instance)
        seconds = math.floor((run.ended_at - run.started_at).total_seconds())
        # It ran at least the 12 s waited, less up to 2 s of rounding: a run starts on the whole
        # second after the agent's confirmation, and billing counts whole seconds.
        assert seconds >= 10
        assert sum(UsageRecord.objects.filter(run=run).values_list("seconds", flat=True)) == seconds
        amount = usage_cost(seconds=seconds, hourly_amount=run.hourly_amount, currency=run.currency)
        assert run.hourly_amount == instance.billing_price.hourly_amount > 0
        page.reload()
        expect(page.get_by_test_id("used-seconds")).to_have_text(str(seconds))
        expect(page.get_by_test_id("used-cost")).to_have_text(f"${amount}")

        # When the month is closed (beat does this on the 1st; here for the current month)
        account = billing_account_get_or_create(organization=organization)
        invoice = invoice_monthly_create(account=account, month_start=month_bounds(timezone.now())[0])

        # Then the invoice lists the instance's line, and it is paid through Stripe's webhook
        page.goto(f"{base}/orgs/{organization.slug}/billing/invoices/{invoice.pk}/")
        line = page.locator(f"tr[data-line='{instance.name}']")
        expect(line).to_contain_text(str(seconds))
        expect(line).to_contain_text(f"${amount}")
        expect(page.get_by_test_id("total")).to_have_text(f"${amount}")
        expect(page.get_by_test_id("invoice-status")).to_have_text("Paid", timeout=60_000)
        invoice.refresh_from_db()
        assert invoice.status == InvoiceStatus.PAID and invoice.total == amount
        assert invoice.stripe_invoice_id and invoice.paid_at
    finally:
        agent.stop()


def test_a_declined_card_gets_a_clear_message_and_no_launch(
    live_portal, celery_worker, browser_context, transactional_db, demo_catalog
):
    base = live_portal.url
    page = browser_context.new_page()
    email = "bob@declined.example"

    # Given a new user whose bank declines their card
    sign_up_and_verify(page, base, email, PASSWORD)
    organization = personal_org(email)
    add_card(page, base, organization.slug, CARD_DECLINED)

    # Then they see Stripe's message, and no card is stored
    expect(page.get_by_test_id("card-error")).to_have_text("Your card was declined.")
    assert not PaymentMethod.objects.filter(account__organization=organization).exists()

    # When they try to launch anyway, they are asked for a card before any form, and nothing is created
    page.goto(f"{base}/")
    page.locator("#offering-notebooks [data-testid=launch]").click()
    expect(page.get_by_test_id("launch-gate")).to_contain_text("no card on file")
    expect(page.get_by_test_id("launch-form")).to_have_count(0)
    assert not Instance.objects.filter(organization=organization).exists()
    assert not UsageRecord.objects.filter(organization=organization).exists()

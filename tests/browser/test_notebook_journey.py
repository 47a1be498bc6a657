"""Click-to-launch in headless Chromium against the real portal, worker, agent, JupyterLab and
nginx: launch from the storefront, watch the status change live, open JupyterLab through the
proxy, run a cell, stop, and see the capacity come back."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from apps.capacity.models import Gpu
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Flavor, Region
from tests.browser.conftest import log_in
from tests.factories.accounts import PASSWORD, OrganizationFactory, UserFactory
from tests.support.processes import agent_start

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_launch_watch_open_run_a_cell_and_stop(
    live_portal, celery_worker, celery_beat, browser_context, transactional_db, demo_catalog, tmp_path, process_logs
):
    base = live_portal.url
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    agent = agent_start(process_logs, portal_url=base, name="browser-node", state_file=tmp_path / "state.json",
                        token=token, notebook_pool=1)
    try:
        user = UserFactory()
        OrganizationFactory(owner=user, name="Photon Labs", credits=Decimal("100.00"))
        page = browser_context.new_page()
        log_in(page, base, user.email, PASSWORD)

        # Given the storefront, when the user launches a notebook
        page.goto(f"{base}/")
        page.locator("#offering-notebooks [data-testid=launch]").click()
        form = page.get_by_test_id("launch-form")
        form.locator("select[name=flavor]").select_option(str(Flavor.objects.get(slug="notebook-1x-h100").pk))
        form.locator("select[name=region]").select_option("us-east-1")
        form.locator("input[name=name]").fill("browser-notebook")
        form.get_by_role("button", name="Launch").click()

        # Then the status changes live on the same page, with no reload, up to running
        detail = page.locator("#instance-detail")
        page.evaluate("window.__noReload = true")
        expect(detail).to_have_attribute("data-state", "running", timeout=90_000)
        assert page.evaluate("window.__noReload") is True
        expect(page.get_by_test_id("steps")).to_contain_text("Scheduled on node browser-node (simulated)")
        expect(page.get_by_test_id("steps")).to_contain_text("Ready in")

        # When they open JupyterLab through the proxy and run a cell
        with page.expect_popup() as popup:
            page.get_by_test_id("open").click()
        lab = popup.value
        lab.locator(".jp-LauncherCard").first.wait_for(timeout=60_000)
        lab.locator(".jp-Launcher-section").filter(has_text="Notebook").locator(".jp-LauncherCard").first.click()
        # Type only once the kernel is up and idle, and check the text landed before running it.
        expect(lab.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(r"\| Idle")).first).to_be_visible(
            timeout=60_000
        )
        cell = lab.locator(".jp-Cell .cm-content").first
        cell.click()
        cell.fill("print(6 * 7)")
        expect(cell).to_contain_text("print(6 * 7)")
        lab.keyboard.press("Shift+Enter")
        expect(lab.locator(".jp-OutputArea-output").first).to_contain_text("42", timeout=60_000)
        lab.close()

        # When they stop it, the page shows it stopped and the GPU is free again
        page.get_by_role("button", name="Stop").click()
        expect(page.locator("#instance-detail")).to_have_attribute("data-state", "stopped", timeout=30_000)
        assert not Gpu.objects.filter(node__hostname="browser-node", allocated_milli__gt=0).exists()
        page.goto(f"{base}/?region=us-east-1")
        expect(page.locator("main")).to_contain_text("available")
    finally:
        agent.stop()

"""The launch form in headless Chromium against the real portal, worker, beat and a node agent
running real JupyterLab: the defaults launch; a sold-out choice cannot be submitted; the API's
409 lists the availability; a queued launch shows its place in line and runs, live, once
capacity frees."""

import time
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from apps.accounts.selectors import organization_access_get
from apps.capacity.models import Gpu
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Flavor, Image, Region
from apps.instances.models import Instance, InstanceState
from apps.instances.services.actions import instance_launch, instance_stop
from tests.browser.conftest import log_in
from tests.factories.accounts import PASSWORD, OrganizationFactory, UserFactory
from tests.support.processes import agent_start

pytestmark = [pytest.mark.browser, pytest.mark.integration]
S = InstanceState


def _node_up(base, process_logs, tmp_path, gpus: int):
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    agent = agent_start(
        process_logs,
        portal_url=base,
        name="launch-node",
        state_file=tmp_path / "state.json",
        token=token,
        simulate=f"{gpus}xH100-80GB",
        notebook_pool=1,
    )
    deadline = time.monotonic() + 60
    while Gpu.objects.filter(node__state="ready").count() < gpus:  # registered and ready
        assert time.monotonic() < deadline, "the agent's node never became ready"
        time.sleep(0.2)
    return agent


def _wait_state(instance_id, states, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        instance = Instance.objects.get(pk=instance_id)
        if instance.state in states or time.monotonic() > deadline:
            return instance
        time.sleep(0.3)


def test_the_defaults_launch_and_a_sold_out_choice_cannot_be_submitted(
    live_portal, celery_worker, celery_beat, browser_context, transactional_db, demo_catalog, tmp_path, process_logs
):
    base = live_portal.url
    agent = _node_up(base, process_logs, tmp_path, gpus=1)
    try:
        user = UserFactory()
        org = OrganizationFactory(owner=user, name="Defaults Inc", credits=Decimal("100.00"))
        page = browser_context.new_page()
        log_in(page, base, user.email, PASSWORD)

        # Given the launch form, as a new user sees it from the storefront
        page.goto(f"{base}/")
        page.locator("#offering-notebooks [data-testid=launch]").click()
        form = page.get_by_test_id("launch-form")
        # Then the region with capacity is preselected, with its count and price, and the empty
        # one cannot be chosen, saying why
        region = form.locator("select[name=region]")
        expect(region).to_have_value("us-east-1")
        expect(region.locator("option[value=us-east-1]")).to_contain_text("1 free · $2.49/h")
        north = region.locator("option[value=eu-north-1]")
        expect(north).to_be_disabled()
        expect(north).to_contain_text("sold out in eu-north-1")
        expect(form.get_by_test_id("region-availability")).to_contain_text("US East")

        # When they launch with the defaults (only a name typed)
        form.locator("input[name=name]").fill("all-defaults")
        form.get_by_role("button", name="Launch").click()

        # Then it runs
        expect(page.locator("#instance-detail")).to_have_attribute("data-state", "running", timeout=90_000)

        # And now that the node is full, the API refuses one more at once, with the availability
        csrf = next(c["value"] for c in browser_context.cookies() if c["name"] == "csrftoken")
        reply = page.request.post(
            f"{base}/api/v1/organizations/{org.slug}/instances/",
            data={
                "flavor": "notebooks/notebook-1x-h100",
                "image": "jupyterlab-4-host",
                "region": "us-east-1",
                "name": "one-more",
            },
            headers={"X-CSRFToken": csrf, "Referer": f"{base}/"},
        )
        assert reply.status == 409, reply.text()
        availability = {row["region"]: row["available"] for row in reply.json()["availability"]}
        assert availability == {"us-east-1": 0, "eu-west-1": 0, "eu-north-1": 0}

        # And the form no longer offers the full region: the flavor is sold out everywhere
        page.goto(f"{base}/orgs/{org.slug}/instances/new/")
        h100 = str(Flavor.objects.get(slug="notebook-1x-h100").pk)
        expect(page.locator(f"select[name=flavor] option[value='{h100}']")).to_be_disabled()
        assert not Instance.objects.filter(name="one-more").exists()
    finally:
        agent.stop()


def test_a_queued_launch_shows_its_place_and_runs_live_when_capacity_frees(
    live_portal, celery_worker, celery_beat, browser_context, transactional_db, demo_catalog, tmp_path, process_logs
):
    base = live_portal.url
    agent = _node_up(base, process_logs, tmp_path, gpus=1)
    try:
        user = UserFactory()
        org = OrganizationFactory(owner=user, name="Queue Ltd", credits=Decimal("100.00"))
        access = organization_access_get(user=user, slug=org.slug)
        flavor = Flavor.objects.get(slug="notebook-1x-h100")
        # Given the node full with a running notebook
        first = instance_launch(
            access=access,
            flavor=flavor,
            image=Image.objects.get(slug="jupyterlab-4-host"),
            region=Region.objects.get(code="us-east-1"),
            name="holds-the-gpu",
        )
        assert _wait_state(first.pk, {S.RUNNING, S.FAILED}).state == S.RUNNING

        # When the user asks, in the form, to wait in the queue for the sold-out flavor
        page = browser_context.new_page()
        log_in(page, base, user.email, PASSWORD)
        page.goto(f"{base}/orgs/{org.slug}/instances/new/?flavor={flavor.pk}")
        form = page.get_by_test_id("launch-form")
        expect(form.locator(f"select[name=flavor] option[value='{flavor.pk}']")).to_be_disabled()
        form.get_by_label("Wait in the queue if no capacity is free").check()
        # (Choosing the flavor re-renders the region choices over htmx. Here that answer is held
        # back until the region is picked, as on a slow link: the person's pick must survive it.)
        held = []
        page.route("**/instances/new/**", lambda route: held.append(route)
                   if route.request.resource_type in ("xhr", "fetch") else route.continue_())
        form.locator("select[name=flavor]").select_option(str(flavor.pk))
        while not held:
            page.wait_for_timeout(50)
        form.locator("select[name=region]").select_option("us-east-1")
        form.locator("select[name=region]").evaluate("select => { select.dataset.before = 'swap'; }")
        held[0].continue_()
        page.unroute("**/instances/new/**")
        expect(form.locator("select[name=region]:not([data-before])")).to_have_value("us-east-1")
        form.locator("input[name=name]").fill("waits-its-turn")
        form.get_by_role("button", name="Launch").click()

        # Then its page says it is queued, first in line, and for what
        detail = page.locator("#instance-detail")
        expect(detail).to_have_attribute("data-state", "queued")
        expect(page.get_by_test_id("queue-position")).to_contain_text(
            "1st in line for 1 × NVIDIA H100 80GB SXM in us-east-1; 0 of 1 free."
        )

        # When the running notebook is stopped, the page goes to running without a reload
        page.evaluate("window.__noReload = true")
        instance_stop(access=access, instance=first)
        expect(detail).to_have_attribute("data-state", "running", timeout=90_000)
        assert page.evaluate("window.__noReload") is True
        expect(page.get_by_test_id("steps")).to_contain_text("Capacity freed: placed from the queue")
        expect(page.get_by_test_id("queue-position")).to_have_count(0)
    finally:
        agent.stop()

"""Reservations through the real pieces: headless Chromium books on the capacity calendar of the
real portal; the real Celery worker holds the capacity at the window's start (its ETA task or
beat's pass); a second, overlapping request is refused on the form with the reason; the calendar
draws its Gantt with the vendored Chart.js, without a CSP violation or a script error."""

import time
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.capacity.models import Allocation, AllocationState, Gpu, Reservation, ReservationState
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Flavor, Region
from tests.browser.conftest import log_in
from tests.factories.accounts import PASSWORD, OrganizationFactory, UserFactory
from tests.support.processes import agent_start

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _node_up(base, process_logs, tmp_path, gpus: int):
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    agent = agent_start(
        process_logs,
        portal_url=base,
        name="reservation-node",
        state_file=tmp_path / "state.json",
        token=token,
        simulate=f"{gpus}xH100-80GB",
        notebook_pool=0,
    )
    deadline = time.monotonic() + 60
    while Gpu.objects.filter(node__state="ready").count() < gpus:
        assert time.monotonic() < deadline, "the agent's node never became ready"
        time.sleep(0.2)
    return agent


def _book(page, *, flavor: Flavor, count: int, starts_at, ends_at) -> None:
    form = page.get_by_test_id("reservation-form")
    form.locator("select[name=flavor]").select_option(str(flavor.pk))
    form.locator("select[name=region]").select_option("us-east-1")
    form.locator("input[name=count]").fill(str(count))
    form.locator("select[name=count_kind]").select_option("gpus")
    form.locator("input[name=starts_at]").fill(f"{starts_at:%Y-%m-%dT%H:%M}")
    form.locator("input[name=ends_at]").fill(f"{ends_at:%Y-%m-%dT%H:%M}")
    form.get_by_role("button", name="Reserve").click()


def test_a_reservation_booked_on_the_calendar_is_held_at_its_start_and_an_overlap_is_refused(
    live_portal, celery_worker, celery_beat, browser_context, transactional_db, demo_catalog, tmp_path, process_logs
):
    base = live_portal.url
    agent = _node_up(base, process_logs, tmp_path, gpus=4)
    try:
        user = UserFactory()
        org = OrganizationFactory(owner=user, name="Reserving Inc", credits=Decimal("100.00"))
        flavor = Flavor.objects.get(offering__slug="gpu-instances", slug="1x-h100")
        page = browser_context.new_page()
        problems = []
        # Script errors and CSP violations; the refused form's own 400 answer is expected.
        page.on(
            "console",
            lambda message: (
                problems.append(message.text)
                if message.type == "error" and "status of 400" not in message.text
                else None
            ),
        )
        page.on("pageerror", lambda error: problems.append(str(error)))
        log_in(page, base, user.email, PASSWORD)

        # Given the calendar, reached from the navigation
        page.get_by_test_id("nav-reservations").click()
        expect(page.get_by_test_id("gantt-empty")).to_be_visible()

        # When all 4 GPUs are booked for an hour from a minute 15 to 75 s ahead (the form takes minutes)
        start = (timezone.now() + timezone.timedelta(seconds=75)).replace(second=0, microsecond=0)
        _book(page, flavor=flavor, count=4, starts_at=start, ends_at=start + timezone.timedelta(hours=1))

        # Then it shows as scheduled, and the worker holds them at the start (an ETA task enqueued
        # by beat's pass once the start is near), which the page shows live, without a reload
        reservation = Reservation.objects.get(organization=org)
        row = page.locator(f"[data-reservation='{reservation.pk}']")
        expect(row.get_by_test_id("reservation-state")).to_contain_text("Scheduled")
        deadline = time.monotonic() + 120
        while Reservation.objects.get(pk=reservation.pk).state != ReservationState.ACTIVE:
            assert time.monotonic() < deadline, Reservation.objects.get(pk=reservation.pk).reason
            time.sleep(0.3)
        held = Allocation.objects.filter(holder=f"reservation:{reservation.pk}", state=AllocationState.ACTIVE)
        assert sum(a.gpu_milli for a in held) == 4000
        expect(row.get_by_test_id("reservation-state")).to_contain_text("Active", timeout=10_000)

        # And the Gantt is drawn by Chart.js: one floating bar from start to end
        bars = page.evaluate(
            "() => window.Chart.getChart(document.querySelector('canvas[data-gantt]')).data.datasets[0].data"
        )
        assert bars == [[int(start.timestamp() * 1000), int((start + timezone.timedelta(hours=1)).timestamp() * 1000)]]

        # When one more GPU is asked for in the same hour, it is refused on the form with the reason
        _book(
            page,
            flavor=flavor,
            count=1,
            starts_at=start + timezone.timedelta(minutes=30),
            ends_at=start + timezone.timedelta(hours=2),
        )
        refusal = page.get_by_test_id("reservation-refused")
        expect(refusal).to_contain_text("only 0 of 4 NVIDIA H100 80GB SXM GPUs in us-east-1 are not reserved")
        assert Reservation.objects.count() == 1
        assert problems == []
    finally:
        agent.stop()

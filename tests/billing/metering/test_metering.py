"""Metering: only the agent-confirmed running interval is billed, cut into whole-second records
that never span an hour (so never a month), never change, and keep the price captured at launch.
The hourly grain itself (what a pass writes, and when) is in test_hourly_grain.py."""

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.billing.models import InstancePrice, MeteredRun, RunEndReason, UsageKind, UsageRecord
from apps.billing.services.metering import (
    usage_correction_add,
    usage_open_runs_meter,
    usage_run_close,
    usage_run_meter,
    usage_run_open,
)
from apps.catalog.models import Price
from apps.catalog.selectors import price_current
from apps.instances.models import InstanceState
from apps.instances.services.actions import instance_start, instance_stop
from apps.instances.services.lifecycle import instance_transition

pytestmark = pytest.mark.django_db
S = InstanceState


def test_provisioning_opens_no_run_and_the_agent_confirmed_start_does(launch, report):
    instance = launch()
    report(instance, "starting")
    assert instance.metered_runs.count() == 0  # scheduled and provisioning cost nothing

    confirmed = timezone.now() - timedelta(seconds=2, microseconds=250_000)
    instance = report(instance, "running", started_at=confirmed, route_slot="s1", socket="/run/nc/s1/jupyter.sock")

    run = instance.metered_runs.get()
    assert instance.state == S.RUNNING and run.ended_at is None
    # from the agent's confirmation, rounded up to the whole second (never before it)
    assert run.started_at == confirmed.replace(microsecond=0) + timedelta(seconds=1)
    assert run.hourly_amount == instance.billing_price.hourly_amount


def test_a_failed_launch_is_never_billed(launch, report):
    instance = launch()
    report(instance, "starting")
    instance = report(instance, "failed", reason="image pull failed")

    assert instance.state == S.FAILED
    assert not MeteredRun.objects.filter(instance=instance).exists()
    assert not UsageRecord.objects.filter(instance=instance).exists()


@pytest.mark.parametrize("how", ["stop", "failed", "lost"])
def test_the_run_ends_when_the_instance_leaves_running(how, launch, report, notebook_setup):
    instance = launch()
    started = timezone.now().replace(microsecond=0) - timedelta(minutes=10)
    report(instance, "running", started_at=started, route_slot="s1", socket="/run/nc/s1/jupyter.sock")

    if how == "stop":
        instance_stop(access=notebook_setup["access"], instance=instance)
        reason = RunEndReason.STOPPED
    elif how == "failed":
        report(instance, "failed", reason="kernel panic")
        reason = RunEndReason.FAILED
    else:
        # the node fell silent 4 minutes after the start; it is declared down later
        node = notebook_setup["node"]
        type(node).objects.filter(pk=node.pk).update(last_heartbeat_at=started + timedelta(minutes=4))
        instance_transition(instance_id=instance.pk, to_state=S.LOST, expected_from=[S.RUNNING], message="node down")
        reason = RunEndReason.LOST

    run = MeteredRun.objects.get(instance=instance)
    assert run.end_reason == reason and run.ended_at is not None
    if how == "lost":
        assert run.ended_at == started + timedelta(minutes=4)  # the silence is not billed
    seconds = sum(UsageRecord.objects.filter(run=run).values_list("seconds", flat=True))
    assert seconds == math.floor((run.ended_at - run.started_at).total_seconds())
    # and a later stop report (STOPPING → STOPPED) bills nothing more
    if how == "stop":
        report(instance, "stopped")
        assert sum(UsageRecord.objects.filter(run=run).values_list("seconds", flat=True)) == seconds


def test_records_never_span_a_month_and_sum_to_the_whole_seconds_of_the_run(launch):
    rng = random.Random(20251101)
    instances = [launch(name=f"nb-{i}") for i in range(4)]
    for instance in instances:
        for _ in range(5):
            # a start with a fraction of a second, somewhere around a month boundary
            month_end = datetime(2025, rng.randint(1, 12), 1, tzinfo=UTC)
            start = month_end - timedelta(seconds=rng.randint(0, 200_000), microseconds=rng.randint(0, 999_999))
            run = usage_run_open(instance=instance, at=start)
            end = start + timedelta(seconds=rng.randint(0, 400_000), microseconds=rng.randint(0, 999_999))
            # the meter passes at random moments while it runs, then the stop closes it
            for moment in sorted(start + (end - start) * rng.random() for _ in range(rng.randint(0, 4))):
                usage_run_meter(run_id=run.pk, now=moment)
            run = usage_run_close(instance=instance, ended_at=end, reason=RunEndReason.STOPPED)

            records = list(UsageRecord.objects.filter(run=run).order_by("period_start"))
            assert sum(r.seconds for r in records) == math.floor((run.ended_at - run.started_at).total_seconds())
            for record in records:
                last = record.period_end - timedelta(microseconds=1)
                # inside one clock hour (so one day and one month), and none empty
                assert record.seconds > 0
                assert record.period_start.replace(minute=0, second=0, microsecond=0) == last.replace(
                    minute=0, second=0, microsecond=0
                )
                assert record.period_end - record.period_start == timedelta(seconds=record.seconds)
            # contiguous: no second billed twice, none skipped
            assert all(a.period_end == b.period_start for a, b in zip(records, records[1:], strict=False))


def test_metering_is_idempotent_and_moves_forward_only(launch):
    instance = launch()
    start = datetime(2025, 10, 7, 10, 20, 5, tzinfo=UTC)
    run = usage_run_open(instance=instance, at=start)

    usage_open_runs_meter(now=start + timedelta(minutes=50))  # 11:10:05: the 10 o'clock hour is over
    usage_open_runs_meter(now=start + timedelta(minutes=50))
    usage_open_runs_meter(now=start + timedelta(minutes=10))  # a late, older pass

    assert sum(UsageRecord.objects.filter(run=run).values_list("seconds", flat=True)) == 2395  # 10:20:05-11:00
    assert UsageRecord.objects.filter(run=run).count() == 1


# A run that started five minutes before an hour boundary, metered just after it: one 300 s record.
SHORT_START = datetime(2025, 10, 7, 10, 55, tzinfo=UTC)
SHORT_PASS = SHORT_START + timedelta(minutes=5, seconds=30)


def test_usage_records_cannot_be_changed_or_deleted(launch):
    instance = launch()
    usage_run_open(instance=instance, at=SHORT_START)
    usage_open_runs_meter(now=SHORT_PASS)
    record = UsageRecord.objects.get(instance=instance)

    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        UsageRecord.objects.filter(pk=record.pk).update(seconds=1)
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        UsageRecord.objects.filter(pk=record.pk).delete()
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE billing_usagerecord SET hourly_amount = 0 WHERE id = %s", [record.pk])

    record.refresh_from_db()
    assert record.seconds == 300


def test_a_correction_is_a_new_record_and_the_original_stays(launch):
    instance = launch()
    usage_run_open(instance=instance, at=SHORT_START)
    usage_open_runs_meter(now=SHORT_PASS)
    original = UsageRecord.objects.get(instance=instance)

    correction = usage_correction_add(record=original, seconds=-120, reason="agent clock skew")

    assert correction.pk != original.pk and correction.kind == UsageKind.CORRECTION
    assert correction.corrects_id == original.pk and correction.period_start == original.period_start
    original.refresh_from_db()
    assert original.seconds == 300
    assert sum(UsageRecord.objects.filter(instance=instance).values_list("seconds", flat=True)) == 180
    with pytest.raises(ValidationError, match="more time than was recorded"):
        usage_correction_add(record=original, seconds=-181, reason="too much")
    with pytest.raises(ValidationError, match="Say why"):
        usage_correction_add(record=original, seconds=10, reason="  ")


def test_the_price_captured_at_launch_is_charged_even_after_the_list_price_changes(launch, report, notebook_setup):
    instance = launch()
    launched_price = instance.billing_price.hourly_amount
    # the list price doubles after the launch
    current = price_current(flavor=notebook_setup["flavor"], region=notebook_setup["region"], unit="hour")
    Price.objects.create(
        flavor=current.flavor,
        region=current.region,
        unit=current.unit,
        currency=current.currency,
        amount=current.amount * 2,
        valid_from=timezone.now() - timedelta(seconds=1),
    )
    started = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    report(instance, "running", started_at=started, route_slot="s1", socket="/run/nc/s1/jupyter.sock")
    instance_stop(access=notebook_setup["access"], instance=instance)

    run = MeteredRun.objects.get(instance=instance)
    assert run.hourly_amount == launched_price != current.amount * 2
    assert set(UsageRecord.objects.filter(run=run).values_list("hourly_amount", flat=True)) == {launched_price}

    # a start after the change captures the new price for the next run
    report(instance, "stopped")
    instance = instance_start(access=notebook_setup["access"], instance=type(instance).objects.get(pk=instance.pk))
    assert launched_price == current.amount
    assert InstancePrice.objects.get(instance=instance).hourly_amount == current.amount * 2

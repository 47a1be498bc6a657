"""The roll-up folds usage records, reservation charges and GPU telemetry into hourly and daily
rows, once: folding again adds nothing, new records add, corrections take off, shares count by
the flavor's slice, used GPU-seconds come from the held GPUs' minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command

from apps.billing.models import InstancePrice, UsageRecord
from apps.billing.services.metering import usage_correction_add, usage_run_close, usage_run_open
from apps.capacity.models import Allocation, AllocationSlice, AllocationState, GpuSample
from apps.chargeback.models import RollupCursor, UsageDay, UsageHour
from apps.chargeback.selectors.idle import chargeback_idle_holders
from apps.chargeback.services.rollup import usage_rollup_reset, usage_rollup_run
from apps.chargeback.tasks import usage_rollup
from apps.instances.models import Instance
from tests.chargeback.conftest import reservation_held
from tests.factories.accounts import UserFactory
from tests.factories.billing import InstanceFactory, run_open, run_record
from tests.factories.capacity import GpuFactory, NodeFactory
from tests.factories.catalog import FlavorFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 10, 14, 10, 0, tzinfo=UTC)
LATER = datetime(2025, 10, 20, tzinfo=UTC)  # every hour of the tests is over by then
WHOLE_GPU_HOUR = 3600 * 1000


def hours(**filters) -> dict:
    """{hour: (seconds, allocated, used)} of the instance or reservation in `filters`."""
    return {
        row.hour: (row.seconds, row.allocated_milli_seconds, row.used_milli_seconds)
        for row in UsageHour.objects.filter(**filters).order_by("hour")
    }


def days(**filters) -> dict:
    return {
        row.day: (row.seconds, row.allocated_milli_seconds, row.used_milli_seconds)
        for row in UsageDay.objects.filter(**filters).order_by("day")
    }


def snapshot() -> list:
    return list(UsageHour.objects.order_by("id").values()) + list(UsageDay.objects.order_by("id").values())


def test_folding_twice_changes_nothing():
    # given a run of 2 h 30 min at 2.49/h, metered into records
    instance = InstanceFactory()
    run_record(instance=instance, started_at=T0, ended_at=T0 + timedelta(hours=2, minutes=30), hourly_amount="2.49")

    # when the roll-up runs, and again
    first = usage_rollup_run(now=LATER)
    before = snapshot()
    second = usage_rollup_run(now=LATER)

    # then the hours hold the run once, the day their sum, and the second run added nothing
    assert first.records == UsageRecord.objects.count() and second.records == 0
    assert hours(instance=instance) == {
        T0: (3600, WHOLE_GPU_HOUR, 0),
        T0 + timedelta(hours=1): (3600, WHOLE_GPU_HOUR, 0),
        T0 + timedelta(hours=2): (1800, WHOLE_GPU_HOUR // 2, 0),
    }
    assert days(instance=instance) == {T0.date(): (9000, 9000 * 1000, 0)}
    assert snapshot() == before
    row = UsageHour.objects.get(instance=instance, hour=T0)
    assert (row.organization_id, row.project_id, row.owner_id) == (
        instance.organization_id, instance.project_id, instance.owner_id,
    )
    assert (row.offering_id, row.flavor_id, row.region_id) == (
        instance.offering_id, instance.flavor_id, instance.region_id,
    )
    assert (row.hourly_amount, row.currency) == (Decimal("2.490000"), "USD")


def test_new_records_add_onto_the_hours_already_folded():
    # given a run folded, then another run of the same instance in the same hour and the next
    instance = InstanceFactory()
    run_record(instance=instance, started_at=T0, ended_at=T0 + timedelta(minutes=20), hourly_amount="2.49")
    usage_rollup_run(now=LATER)
    run_record(
        instance=instance, started_at=T0 + timedelta(minutes=40), ended_at=T0 + timedelta(hours=1, minutes=10),
        hourly_amount="2.49",
    )

    # when the roll-up runs again
    result = usage_rollup_run(now=LATER)

    # then the new seconds are added onto the same hour's row and make the next hour's
    assert result.records >= 2
    assert hours(instance=instance) == {
        T0: (2400, 2400 * 1000, 0),
        T0 + timedelta(hours=1): (600, 600 * 1000, 0),
    }
    assert days(instance=instance) == {T0.date(): (3000, 3000 * 1000, 0)}


def test_a_correction_takes_seconds_off_its_hour():
    # given a folded run of 30 min
    instance = InstanceFactory()
    run_record(instance=instance, started_at=T0, ended_at=T0 + timedelta(minutes=30), hourly_amount="3.00")
    usage_rollup_run(now=LATER)
    record = UsageRecord.objects.get(instance=instance)

    # when 10 minutes are corrected off it and the roll-up runs
    usage_correction_add(record=record, seconds=-600, reason="agent clock skew")
    usage_rollup_run(now=LATER)

    # then its hour (and day) hold 20 minutes, at the same price
    assert hours(instance=instance) == {T0: (1200, 1200 * 1000, 0)}
    assert days(instance=instance) == {T0.date(): (1200, 1200 * 1000, 0)}


def test_a_price_change_in_one_hour_keeps_two_rows():
    # given two runs in one hour at different prices (the instance was started again after a price change)
    instance = InstanceFactory()
    run_record(instance=instance, started_at=T0, ended_at=T0 + timedelta(minutes=10), hourly_amount="2.00")
    run_record(
        instance=instance, started_at=T0 + timedelta(minutes=30), ended_at=T0 + timedelta(minutes=45),
        hourly_amount="2.50",
    )

    # when folded
    usage_rollup_run(now=LATER)

    # then each price has its row: cost is seconds × price rounded per instance and price
    rows = UsageHour.objects.filter(instance=instance).order_by("hourly_amount")
    assert [(r.hourly_amount, r.seconds) for r in rows] == [(Decimal("2.000000"), 600), (Decimal("2.500000"), 900)]


def test_a_reservation_charge_is_spread_over_the_hours_of_its_window():
    # given 4 GPUs of a 2-GPU flavor held 10:30 to 13:15 (9,900 s) at 4.00/h per unit (8.00/h)
    booker = UserFactory()
    instance = InstanceFactory()  # for the org, project and region
    flavor = FlavorFactory(gpu_count=2)
    start = T0 + timedelta(minutes=30)
    reservation = reservation_held(
        project=instance.project, flavor=flavor, region=instance.region, start=start,
        end=start + timedelta(hours=2, minutes=45), gpus=4, hourly_amount="4.00", created_by=booker,
    )

    # when folded (twice)
    assert usage_rollup_run(now=LATER).charges == 1
    assert usage_rollup_run(now=LATER).charges == 0

    # then each hour holds its part of the window, at the whole reservation's price, 4 GPUs held
    assert hours(reservation=reservation) == {
        T0: (1800, 1800 * 4000, 0),
        T0 + timedelta(hours=1): (3600, 3600 * 4000, 0),
        T0 + timedelta(hours=2): (3600, 3600 * 4000, 0),
        T0 + timedelta(hours=3): (900, 900 * 4000, 0),
    }
    assert days(reservation=reservation) == {T0.date(): (9900, 9900 * 4000, 0)}
    row = UsageHour.objects.filter(reservation=reservation).first()
    assert (row.owner_id, row.flavor_id, row.offering_id, row.instance_id) == (
        booker.pk, flavor.pk, flavor.offering_id, None,
    )
    assert row.hourly_amount == Decimal("8.000000")


def test_a_reservation_over_midnight_and_the_month_end_lands_on_each_day():
    # given a reservation held from Oct 31 22:00 to Nov 1 01:30 (two charges, one per month)
    instance = InstanceFactory()
    flavor = FlavorFactory(gpu_count=1)
    start = datetime(2025, 10, 31, 22, 0, tzinfo=UTC)
    reservation = reservation_held(
        project=instance.project, flavor=flavor, region=instance.region, start=start,
        end=start + timedelta(hours=3, minutes=30), gpus=1, hourly_amount="1.00",
    )

    # when folded
    assert usage_rollup_run(now=LATER + timedelta(days=30)).charges == 2

    # then each day holds its hours
    assert days(reservation=reservation) == {
        start.date(): (7200, 7200 * 1000, 0),
        datetime(2025, 11, 1).date(): (5400, 5400 * 1000, 0),
    }


@pytest.mark.parametrize(
    ("traits", "milli"),
    [({"mig": True}, 142), ({"fraction": True}, 500), ({"gpu_count": 4}, 4000)],
    ids=["mig-1g-of-7", "half-gpu", "four-whole-gpus"],
)
def test_a_slice_counts_by_its_share_of_a_gpu(traits, milli):
    # given an hour of an instance of a MIG 1g (1/7, rounded down), half-GPU or 4-GPU flavor
    instance = InstanceFactory(flavor=FlavorFactory(**traits))
    run_record(instance=instance, started_at=T0, ended_at=T0 + timedelta(hours=1), hourly_amount="1.00")

    # when folded
    usage_rollup_run(now=LATER)

    # then its allocated GPU-seconds are the hour × its share
    assert hours(instance=instance) == {T0: (3600, 3600 * milli, 0)}


def _held(instance, gpu, *, milli: int, since: datetime, until: datetime | None) -> Allocation:
    """An allocation of `instance` holding `milli` of `gpu` over [since, until)."""
    allocation = Allocation.objects.create(
        organization_id=instance.organization_id, project_id=instance.project_id, flavor_id=instance.flavor_id,
        node=gpu.node, gpu_milli=milli, holder=f"instance:{instance.pk}", created_at=since, released_at=until,
        state=AllocationState.RELEASED if until else AllocationState.ACTIVE,
    )
    AllocationSlice.objects.create(allocation=allocation, gpu=gpu, milli=milli, live=until is None)
    return allocation


def _samples(gpu, start: datetime, minutes: int, pct: int) -> None:
    GpuSample.objects.bulk_create(
        [GpuSample(gpu=gpu, minute=start + timedelta(minutes=m), utilization_pct=pct) for m in range(minutes)]
    )


def test_used_gpu_seconds_come_from_the_held_gpus_minutes():
    # given a half-GPU instance running 10:00-12:00, holding half of a GPU busy at 40 % from 10:00
    # to 11:30 (then released), and a GPU it never held at 100 %
    instance = InstanceFactory(flavor=FlavorFactory(fraction=True))
    node = NodeFactory()
    gpu, other = GpuFactory(node=node, index=0), GpuFactory(node=node, index=1)
    run_record(instance=instance, started_at=T0, ended_at=T0 + timedelta(hours=2), hourly_amount="1.00")
    _held(instance, gpu, milli=500, since=T0 - timedelta(minutes=3), until=T0 + timedelta(minutes=90))
    _samples(gpu, T0 - timedelta(minutes=5), 3 * 60, pct=40)
    _samples(other, T0, 2 * 60, pct=100)

    # when the roll-up runs 3 minutes after 11:00 (the hour is over, but reports may be late),
    # then at 12:06 and again
    early = usage_rollup_run(now=T0 + timedelta(hours=1, minutes=3))
    assert early.samples == 0 and hours(instance=instance)[T0][2] == 0
    usage_rollup_run(now=T0 + timedelta(hours=2, minutes=6))
    usage_rollup_run(now=T0 + timedelta(hours=2, minutes=6))

    # then each hour's used share is 40 % × half a GPU over the held minutes inside the run
    # (10:00-11:00, then 11:00-11:30), beside its allocated half GPU for the billed hour
    assert hours(instance=instance) == {
        T0: (3600, 3600 * 500, 3600 * 500 * 40 // 100),
        T0 + timedelta(hours=1): (3600, 3600 * 500, 1800 * 500 * 40 // 100),
    }
    assert days(instance=instance)[T0.date()] == (7200, 7200 * 500, 5400 * 500 * 40 // 100)
    assert RollupCursor.objects.get(source="telemetry").until == T0 + timedelta(hours=2)


def test_telemetry_folded_before_the_records_lands_on_the_same_row():
    # given a running instance's telemetry folded before its records exist (the run still open)
    instance = InstanceFactory()
    node = NodeFactory()
    gpu = GpuFactory(node=node)
    run_open(instance=instance, started_at=T0, hourly_amount="2.00")
    _held(instance, gpu, milli=1000, since=T0, until=None)
    _samples(gpu, T0, 60, pct=100)
    usage_rollup_run(now=T0 + timedelta(hours=1, minutes=6))
    assert hours(instance=instance) == {T0: (0, 0, WHOLE_GPU_HOUR)}

    # when the run's records come and the roll-up runs
    usage_run_close(instance=instance, ended_at=T0 + timedelta(hours=1), reason="stopped")
    usage_rollup_run(now=T0 + timedelta(hours=1, minutes=10))

    # then they add onto that same row
    assert hours(instance=instance) == {T0: (3600, WHOLE_GPU_HOUR, WHOLE_GPU_HOUR)}


def test_two_organizations_stay_apart():
    # given two organizations' instances running in the same hour
    a, b = InstanceFactory(), InstanceFactory()
    run_record(instance=a, started_at=T0, ended_at=T0 + timedelta(minutes=10), hourly_amount="1.00")
    run_record(instance=b, started_at=T0, ended_at=T0 + timedelta(minutes=20), hourly_amount="1.00")

    # when folded
    usage_rollup_run(now=LATER)

    # then each organization's rows hold only its own instance's seconds
    for instance, seconds in ((a, 600), (b, 1200)):
        rows = UsageHour.objects.filter(organization_id=instance.organization_id)
        assert [(r.instance_id, r.seconds) for r in rows] == [(instance.pk, seconds)]
        days_ = UsageDay.objects.filter(organization_id=instance.organization_id)
        assert [(r.instance_id, r.seconds) for r in days_] == [(instance.pk, seconds)]


def test_a_rebuild_from_scratch_gives_the_same_rows_and_keeps_used():
    # given a folded history with a correction, a reservation and telemetry
    instance = InstanceFactory()
    gpu = GpuFactory()
    run_record(instance=instance, started_at=T0, ended_at=T0 + timedelta(hours=1, minutes=5), hourly_amount="2.00")
    usage_correction_add(record=UsageRecord.objects.first(), seconds=-60, reason="test")
    _held(instance, gpu, milli=1000, since=T0, until=T0 + timedelta(hours=2))
    _samples(gpu, T0, 60, pct=50)
    reservation_held(
        project=instance.project, flavor=instance.flavor, region=instance.region, start=T0,
        end=T0 + timedelta(hours=2), gpus=1, hourly_amount="1.00",
    )
    usage_rollup_run(now=LATER)
    before = (hours(instance=instance), hours(reservation__isnull=False), days(instance=instance))

    # when the roll-ups are rebuilt from the records (telemetry kept), then in full
    usage_rollup_reset()
    usage_rollup_run(now=LATER)
    after = (hours(instance=instance), hours(reservation__isnull=False), days(instance=instance))

    # then nothing changed
    assert after == before
    assert before[0][T0][2] == WHOLE_GPU_HOUR // 2


def test_the_beat_task_folds_what_is_new():
    # given a finished run, and the beat entry of the roll-up task
    instance = InstanceFactory()
    run_record(instance=instance, started_at=T0, ended_at=T0 + timedelta(minutes=5), hourly_amount="1.00")
    entry = settings.CELERY_BEAT_SCHEDULE["chargeback-usage-rollup"]

    # when the task runs (as the worker runs it), twice
    first = usage_rollup.apply().get()
    second = usage_rollup.apply().get()

    # then it folded the run once, and beat names it
    assert entry["task"] == usage_rollup.name == "chargeback.usage_rollup"
    assert (first["records"], second["records"]) == (1, 0)
    assert hours(instance=instance) == {T0: (300, 300 * 1000, 0)}


def test_the_backfill_command_rebuilds_the_roll_ups_from_the_records():
    # given folded usage, and roll-ups gone wrong (say, edited by hand)
    instance = InstanceFactory()
    run_record(instance=instance, started_at=T0, ended_at=T0 + timedelta(minutes=90), hourly_amount="1.00")
    usage_rollup_run(now=LATER)
    expected = (hours(instance=instance), days(instance=instance))
    UsageHour.objects.update(seconds=1)
    UsageDay.objects.update(seconds=1)

    # when the backfill command runs
    out = StringIO()
    call_command("usage_rollup_backfill", stdout=out)

    # then the roll-ups are the records' again
    assert (hours(instance=instance), days(instance=instance)) == expected
    assert "folded 2 usage records" in out.getvalue()


def test_an_instance_inside_a_reservation_counts_its_gpus_once_on_the_reservation():
    # given a reservation of 2 whole GPUs held 10:00-12:00, and an instance launched into it that
    # ran 10:00-11:00 on one of its GPUs at 50 % (metered by billing itself: priced 0, "In
    # reservation <id>") and was corrected by 10 minutes, the instance since moved out of the
    # reservation (its link cleared)
    instance = InstanceFactory(flavor=FlavorFactory(gpu_count=1))
    reservation = reservation_held(
        project=instance.project, flavor=instance.flavor, region=instance.region, start=T0,
        end=T0 + timedelta(hours=2), gpus=2, hourly_amount="1.00",
    )
    Instance.objects.filter(pk=instance.pk).update(reservation=reservation)
    instance.refresh_from_db()
    InstancePrice.objects.create(instance=instance, hourly_amount=Decimal("3.00"), currency="USD", captured_at=T0)
    run = usage_run_open(instance=instance, at=T0)
    assert (run.hourly_amount, run.note) == (Decimal(0), f"In reservation {reservation.pk}")
    usage_run_close(instance=instance, ended_at=T0 + timedelta(hours=1), reason="stopped")
    usage_correction_add(record=UsageRecord.objects.get(instance=instance), seconds=-600, reason="agent clock skew")
    Instance.objects.filter(pk=instance.pk).update(reservation=None)
    gpu = GpuFactory()
    _held(instance, gpu, milli=1000, since=T0, until=T0 + timedelta(hours=1))
    _samples(gpu, T0, 60, pct=50)

    # when folded
    usage_rollup_run(now=LATER)

    # then the reservation's rows hold its 2 GPUs for the window, the instance's rows hold its
    # billed seconds and what it used but no GPUs of their own: allocated counted once
    assert hours(reservation=reservation) == {
        T0: (3600, 2 * WHOLE_GPU_HOUR, 0),
        T0 + timedelta(hours=1): (3600, 2 * WHOLE_GPU_HOUR, 0),
    }
    assert hours(instance=instance) == {T0: (3000, 0, WHOLE_GPU_HOUR // 2)}
    assert days(instance=instance) == {T0.date(): (3000, 0, WHOLE_GPU_HOUR // 2)}
    allocated = sum(UsageDay.objects.values_list("allocated_milli_seconds", flat=True))
    assert allocated == 2 * 2 * WHOLE_GPU_HOUR


def test_a_free_run_outside_any_reservation_still_holds_its_gpus():
    # given a run priced 0 that is not in a reservation (say, a free flavor), corrected once
    instance = InstanceFactory()
    run_record(instance=instance, started_at=T0, ended_at=T0 + timedelta(minutes=30), hourly_amount="0")
    usage_correction_add(record=UsageRecord.objects.get(instance=instance), seconds=-600, reason="agent clock skew")

    # when folded
    usage_rollup_run(now=LATER)

    # then its GPUs count as its own
    assert hours(instance=instance) == {T0: (1200, 1200 * 1000, 0)}


def test_idle_holders_judge_an_instance_by_its_own_gpus_not_its_reservations():
    # given an instance that ran 10:00-11:00 inside a reservation at 100 %, then 12:00-13:00 on
    # demand on its own GPU at 0 %
    instance = InstanceFactory(flavor=FlavorFactory(gpu_count=1))
    reservation = reservation_held(
        project=instance.project, flavor=instance.flavor, region=instance.region, start=T0,
        end=T0 + timedelta(hours=1), gpus=1, hourly_amount="1.00",
    )
    Instance.objects.filter(pk=instance.pk).update(reservation=reservation)
    instance.refresh_from_db()
    InstancePrice.objects.create(instance=instance, hourly_amount=Decimal("3.00"), currency="USD", captured_at=T0)
    usage_run_open(instance=instance, at=T0)
    usage_run_close(instance=instance, ended_at=T0 + timedelta(hours=1), reason="stopped")
    Instance.objects.filter(pk=instance.pk).update(reservation=None)
    run_record(
        instance=instance, started_at=T0 + timedelta(hours=2), ended_at=T0 + timedelta(hours=3), hourly_amount="3.00"
    )
    gpu = GpuFactory()
    _held(instance, gpu, milli=1000, since=T0, until=T0 + timedelta(hours=3))
    _samples(gpu, T0, 60, pct=100)
    _samples(gpu, T0 + timedelta(hours=2), 60, pct=0)
    usage_rollup_run(now=LATER)

    # when the idle holders below 10 % are asked for that day
    idle = chargeback_idle_holders(
        organization_id=instance.organization_id, start=T0.date(), end=T0.date() + timedelta(days=1),
        below_pct=10, min_hours=0,
    )

    # then the instance is listed for its own hour, idle (the reservation's hour is not its own),
    # and the reservation is not listed
    assert [(h.instance_id, h.allocated_milli_seconds, h.used_milli_seconds) for h in idle] == [
        (instance.pk, WHOLE_GPU_HOUR, 0)
    ]

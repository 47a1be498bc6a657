"""The roll-up against concurrent writers, on real connections: a record whose id is below one
already visible but whose transaction commits later is folded by a later run, never skipped; two
runs never fold at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from apps.billing.models import MeteredRun, UsageKind, UsageRecord
from apps.chargeback.models import UsageHour
from apps.chargeback.services import rollup
from apps.chargeback.services.rollup import ROLLUP_LOCK, usage_rollup_run
from tests.factories.billing import InstanceFactory, run_open

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2025, 10, 14, 10, 0, tzinfo=UTC)
LATER = datetime(2025, 10, 20, tzinfo=UTC)


def _record(run: MeteredRun, *, offset_s: int, seconds: int) -> UsageRecord:
    start = run.started_at + timedelta(seconds=offset_s)
    return UsageRecord.objects.create(
        run=run, instance_id=run.instance_id, organization_id=run.organization_id, project_id=run.project_id,
        kind=UsageKind.USAGE, period_start=start, period_end=start + timedelta(seconds=seconds), seconds=seconds,
        hourly_amount=run.hourly_amount, currency=run.currency,
    )


class _InFlight:
    """`work()` run in a transaction of its own connection, held open until `finish()`."""

    def __init__(self, work) -> None:
        self.done, self.release, self.errors = threading.Event(), threading.Event(), []
        self.thread = threading.Thread(target=self._run, args=(work,))
        self.thread.start()
        assert self.done.wait(10)

    def _run(self, work) -> None:
        try:
            with transaction.atomic():
                work()
                self.done.set()
                self.release.wait(30)
        except BaseException as exc:  # noqa: BLE001 - re-raised by finish()
            self.errors.append(exc)
            self.done.set()
        finally:
            connection.close()

    def finish(self) -> None:
        self.release.set()
        self.thread.join(30)
        assert not self.errors, self.errors


def test_a_lower_id_committed_after_a_higher_one_is_folded_by_a_later_run(monkeypatch):
    # given a record inserted (a lower id) by a transaction still open, and one inserted and
    # committed after it (a higher id, visible)
    monkeypatch.setattr(rollup, "HORIZON_WAIT_S", 0.2)
    run = run_open(instance=InstanceFactory(), started_at=T0, hourly_amount="1.00")
    slow = _InFlight(lambda: _record(run, offset_s=0, seconds=100))
    fast = _record(run, offset_s=100, seconds=200)
    assert list(UsageRecord.objects.values_list("pk", flat=True)) == [fast.pk]  # the lower id is not visible

    # when the roll-up runs while the first is in flight, then again after it committed
    during = usage_rollup_run(now=LATER)
    folded_during = UsageHour.objects.filter(instance_id=run.instance_id).count()
    slow.finish()
    after = usage_rollup_run(now=LATER)

    # then the first run folded nothing past the in-flight id, and the second folded both
    assert during.records == 0 and folded_during == 0
    assert after.records == 2
    assert UsageHour.objects.get(instance_id=run.instance_id).seconds == 300


def test_a_writer_that_ends_while_the_run_waits_is_folded_in_the_same_run(monkeypatch):
    # given a record in flight that commits a moment after the roll-up starts waiting for it
    run = run_open(instance=InstanceFactory(), started_at=T0, hourly_amount="1.00")
    slow = _InFlight(lambda: _record(run, offset_s=0, seconds=100))
    _record(run, offset_s=100, seconds=50)
    timer = threading.Timer(0.2, slow.release.set)
    timer.start()

    # when the roll-up runs
    result = usage_rollup_run(now=LATER)
    slow.finish()

    # then both records are in
    assert result.records == 2
    assert UsageHour.objects.get(instance_id=run.instance_id).seconds == 150


def test_a_second_run_while_one_folds_does_nothing():
    # given a run holding the roll-up's lock, and a record to fold
    run = run_open(instance=InstanceFactory(), started_at=T0, hourly_amount="1.00")
    _record(run, offset_s=0, seconds=60)

    def hold_lock():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [ROLLUP_LOCK])

    holder = _InFlight(hold_lock)

    # when another run starts
    result = usage_rollup_run(now=LATER)
    holder.finish()

    # then it reports busy and folded nothing; the next run folds the record
    assert result.busy and UsageHour.objects.count() == 0
    assert usage_rollup_run(now=LATER).records == 1

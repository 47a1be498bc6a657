"""A user's stop racing the budget pass, on real PostgreSQL (READ COMMITTED, a connection per
thread): the stop closes the instance's metered run while the pass meters every open run and
stops what a reached hard cap covers. Before one lock order, the stop (instance row, then run)
and the metering (run, then the instance row, through the usage record's foreign key) could
deadlock, and the user saw a 500."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from apps.accounts.selectors import organization_access_get
from apps.billing.models import Budget, BudgetAlert, MeteredRun, UsageRecord
from apps.billing.selectors.usage import month_bounds
from apps.billing.services.budgets import CAP_STOP, CAP_WARNING, budgets_enforce
from apps.instances.models import Instance, InstanceEvent, InstanceState
from apps.instances.services.actions import instance_stop
from tests.billing.budgets.spend import instance_running
from tests.factories.accounts import OrganizationFactory, UserFactory

S = InstanceState
ROUNDS = 12  # races; each one stops INSTANCES instances while the budget pass runs
INSTANCES = 6


def _deadlock_in(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, psycopg.errors.DeadlockDetected):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _race(*, owner, organization, instances) -> list[BaseException]:
    """Every instance stopped by its own thread while one more runs the budget pass, all
    released at once; returns what escaped any of them."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(instances) + 1)

    def user_stops(instance_id) -> None:
        try:
            access = organization_access_get(user=owner, slug=organization.slug)
            instance = Instance.objects.get(pk=instance_id)
            barrier.wait(timeout=30)
            instance_stop(access=access, instance=instance)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    def budget_pass() -> None:
        try:
            barrier.wait(timeout=30)
            budgets_enforce()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=user_stops, args=(i.pk,)) for i in instances]
    threads.append(threading.Thread(target=budget_pass))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_a_stop_racing_the_budget_pass_never_deadlocks_and_closes_each_run_once(settings):
    settings.BILLING = {**settings.BILLING, "CAP_STOP_GRACE_S": 0}
    owner = UserFactory()
    for _ in range(ROUNDS):
        # given an organization over its hard cap (warned already, so this pass stops what runs),
        # with notebooks that have run for ten minutes and have not been metered yet
        organization = OrganizationFactory(owner=owner)
        budget = Budget.objects.create(organization=organization, monthly_amount=Decimal("1.00"), hard_cap=True)
        # The warning first, before anything runs: the session's Celery beat (started by the
        # integration tests) runs its own budget pass every second, and one that saw the spend
        # before this row existed would write the warning itself.
        BudgetAlert.objects.create(
            budget=budget,
            month=month_bounds(timezone.now())[0].date(),
            threshold=CAP_WARNING,
            spend=Decimal("6.00"),
            created_at=timezone.now() - timedelta(minutes=5),
        )
        instances = [
            instance_running(organization=organization, hourly="36", since_s=600, owner=owner) for _ in range(INSTANCES)
        ]

        # when the owner stops each of them while the budget pass meters and enforces
        escaped = _race(owner=owner, organization=organization, instances=instances)
        deadlocks = [exc for exc in escaped if _deadlock_in(exc)]
        assert deadlocks == [], f"{len(deadlocks)} deadlock(s) reached a caller"
        assert escaped == []

        # then every instance is stopping, by exactly one transition, and its run closed once,
        # cut into records that cover its seconds exactly once
        for instance in instances:
            instance.refresh_from_db()
            assert instance.state == S.STOPPING
            moves = InstanceEvent.objects.filter(instance=instance, from_state=S.RUNNING, to_state=S.STOPPING)
            assert moves.count() == 1
            [run] = MeteredRun.objects.filter(instance=instance)
            assert run.ended_at is not None and run.end_reason == "stopped"
            seconds = sum(UsageRecord.objects.filter(run=run).values_list("seconds", flat=True))
            assert seconds == run.metered_seconds == int((run.ended_at - run.started_at).total_seconds())
        # and the cap's stop was decided at most once
        assert BudgetAlert.objects.filter(budget=budget, threshold=CAP_STOP).count() <= 1

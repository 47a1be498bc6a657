"""Hard caps: at 100 % what runs is warned (a note on each instance and a mail), then stopped
through the instances lifecycle after the grace period; each step happens once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.accounts.models import Project
from apps.accounts.selectors import organization_access_get
from apps.billing.models import Budget, BudgetAlert
from apps.billing.services.budgets import budget_enforce, budget_set
from apps.instances.models import InstanceEvent, InstanceState
from apps.instances.services.actions import instance_stop_request
from tests.billing.budgets.spend import instance_running
from tests.factories.accounts import MembershipFactory
from tests.factories.billing import InstanceFactory

pytestmark = pytest.mark.django_db
S = InstanceState


def billing_events(instance) -> list[InstanceEvent]:
    return list(InstanceEvent.objects.filter(instance=instance, source="billing").order_by("id"))


@pytest.fixture
def capped(org, settings):
    """A $5 hard cap, and a member's notebook that has cost $10 so far ($3600/h for 10 s)."""
    settings.BILLING = {**settings.BILLING, "CAP_STOP_GRACE_S": 600}
    budget = Budget.objects.create(organization=org, monthly_amount=Decimal("5.00"), hard_cap=True)
    member = MembershipFactory(organization=org, role="member").user
    instance = instance_running(organization=org, hourly="3600", since_s=10, owner=member)
    return budget, instance


def test_a_reached_cap_warns_then_stops_after_the_grace(capped, user, eager_tasks, mailoutbox, run_on_commit):
    budget, instance = capped
    now = timezone.now()

    # when the cap is found reached: a warning on the instance, a mail, and it keeps running
    run_on_commit(budget_enforce, budget_id=budget.pk, now=now)
    instance.refresh_from_db()
    assert instance.state == S.RUNNING
    [note] = billing_events(instance)
    assert note.to_state == "" and "spending cap of $5.00" in note.message and "stopped in 10 min" in note.message
    assert len(mailoutbox) == 1 and "running instances will be stopped" in mailoutbox[0].subject
    # to the owner of the organization and to the member whose notebook it is
    assert sorted(mailoutbox[0].to) == sorted([user.email, instance.owner.email])

    # just before the grace ends: nothing more
    run_on_commit(budget_enforce, budget_id=budget.pk, now=now + timedelta(seconds=599))
    instance.refresh_from_db()
    assert instance.state == S.RUNNING and len(billing_events(instance)) == 1

    # when the grace is over: stopped through the lifecycle with the reason, and one more mail
    run_on_commit(budget_enforce, budget_id=budget.pk, now=now + timedelta(seconds=600))
    instance.refresh_from_db()
    assert instance.state == S.STOPPING
    stop = billing_events(instance)[-1]
    assert (stop.from_state, stop.to_state) == (S.RUNNING, S.STOPPING)
    assert "spending cap of $5.00" in stop.message and instance.state_reason == stop.message
    assert len(mailoutbox) == 2 and "instances stopped" in mailoutbox[1].subject

    # and enforcing again changes nothing
    run_on_commit(budget_enforce, budget_id=budget.pk, now=now + timedelta(seconds=700))
    assert len(billing_events(instance)) == 2 and len(mailoutbox) == 2
    assert set(BudgetAlert.objects.filter(budget=budget).values_list("threshold", flat=True)) == {
        "50",
        "80",
        "100",
        "cap_warning",
        "cap_stop",
    }


def test_raising_the_cap_after_the_warning_cancels_the_stop(capped, user, org):
    budget, instance = capped
    now = timezone.now()
    budget_enforce(budget_id=budget.pk, now=now)
    # when the owner raises the cap above what was spent
    budget_set(access=organization_access_get(user=user, slug=org.slug), monthly_amount="1000", hard_cap=True)
    assert not BudgetAlert.objects.filter(budget=budget, threshold="cap_warning").exists()
    # then nothing is stopped when the old warning's grace would have ended
    budget_enforce(budget_id=budget.pk, now=now + timedelta(seconds=600))
    instance.refresh_from_db()
    assert instance.state == S.RUNNING


def test_a_soft_budget_never_stops_anything(org):
    budget = Budget.objects.create(organization=org, monthly_amount=Decimal("5.00"), hard_cap=False)
    instance = instance_running(organization=org, hourly="3600", since_s=10)
    budget_enforce(budget_id=budget.pk, now=timezone.now())
    budget_enforce(budget_id=budget.pk, now=timezone.now() + timedelta(days=1))
    instance.refresh_from_db()
    assert instance.state == S.RUNNING and billing_events(instance) == []


def test_a_project_cap_stops_that_projects_instances_only(org, settings):
    settings.BILLING = {**settings.BILLING, "CAP_STOP_GRACE_S": 0}
    research = Project.objects.create(organization=org, name="Research", slug="research")
    budget = Budget.objects.create(organization=org, project=research, monthly_amount=Decimal("1.00"), hard_cap=True)
    theirs = instance_running(organization=org, hourly="3600", since_s=10, project=research)
    waiting = InstanceFactory(organization=org, project=research, state=S.REQUESTED)
    other = instance_running(organization=org, hourly="3600", since_s=10)
    now = timezone.now()
    budget_enforce(budget_id=budget.pk, now=now)
    budget_enforce(budget_id=budget.pk, now=now + timedelta(seconds=1))
    for instance in (theirs, waiting, other):
        instance.refresh_from_db()
    assert theirs.state == S.STOPPING and waiting.state == S.STOPPED and other.state == S.RUNNING
    assert "project Research" in theirs.state_reason


def test_stopping_for_billing_is_idempotent_and_leaves_ended_instances_alone(org):
    running = instance_running(organization=org, hourly="1", since_s=10)
    assert (
        instance_stop_request(instance=running, message="Stopping: billing test", source="billing").state == S.STOPPING
    )
    assert instance_stop_request(instance=running, message="Stopping: billing test", source="billing") is None
    stopped = InstanceFactory(organization=org, state=S.STOPPED)
    assert instance_stop_request(instance=stopped, message="Stopping: billing test", source="billing") is None
    assert [e.message for e in billing_events(running)] == ["Stopping: billing test"]

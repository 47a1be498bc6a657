"""Lifecycle hooks: apps above instances follow transitions without being imported by them."""

import pytest
from django.core.exceptions import ValidationError

from apps.billing.models import InstancePrice
from apps.instances import hooks
from apps.instances.models import InstanceEvent, InstanceState
from apps.instances.services.lifecycle import instance_transition

pytestmark = pytest.mark.django_db
S = InstanceState


@pytest.fixture
def subscribed():
    """Subscribe for one test, and forget it afterwards."""
    added = []

    def _subscribe(kind, subscriber):
        added.append(kind(subscriber))
        return subscriber

    yield _subscribe
    for subscriber in added:
        hooks.subscriber_remove(subscriber)


def test_a_launch_is_announced_from_nothing_and_billing_captures_its_price(launch, subscribed):
    # given a subscriber in the transaction
    seen = []
    subscribed(hooks.in_transaction_subscribe, lambda *, instance, transition: seen.append(transition))
    # when a notebook is launched
    instance = launch(schedule=False)
    # then the launch is the transition from nothing to REQUESTED, and billing (subscribed in its
    # AppConfig.ready) captured the price in it
    assert [(t.instance_id, t.from_state, t.to_state) for t in seen] == [(instance.pk, None, S.REQUESTED)]
    assert InstancePrice.objects.filter(instance=instance).exists()


def test_on_commit_subscribers_hear_only_what_committed(launch, subscribed, django_capture_on_commit_callbacks):
    instance = launch(schedule=False)
    heard = []
    subscribed(hooks.on_commit_subscribe, lambda *, transition: heard.append(transition))
    # when one transition commits
    with django_capture_on_commit_callbacks(execute=True):
        instance_transition(instance_id=instance.pk, to_state=S.FAILED, message="x", expected_from=[S.REQUESTED])
    # then its subscriber hears it, with ids only
    assert [(t.instance_id, t.from_state, t.to_state) for t in heard] == [(instance.pk, S.REQUESTED, S.FAILED)]


def test_an_in_transaction_subscriber_that_refuses_rolls_the_transition_back(launch, subscribed):
    instance = launch(schedule=False)
    before = InstanceEvent.objects.count()

    def refuse(*, instance, transition):
        raise ValidationError("not now")

    subscribed(hooks.in_transaction_subscribe, refuse)
    # when a transition's subscriber refuses
    with pytest.raises(ValidationError, match="not now"):
        instance_transition(instance_id=instance.pk, to_state=S.FAILED, message="x", expected_from=[S.REQUESTED])
    # then the state and the log are as they were
    instance.refresh_from_db()
    assert instance.state == S.REQUESTED and InstanceEvent.objects.count() == before


def test_a_failing_on_commit_subscriber_does_not_keep_the_others_from_hearing(
    launch, subscribed, django_capture_on_commit_callbacks
):
    instance = launch(schedule=False)
    heard = []

    def broken(*, transition):
        raise RuntimeError("broken subscriber")

    subscribed(hooks.on_commit_subscribe, broken)
    subscribed(hooks.on_commit_subscribe, lambda *, transition: heard.append(transition.to_state))
    with django_capture_on_commit_callbacks(execute=True):
        instance_transition(instance_id=instance.pk, to_state=S.FAILED, message="x", expected_from=[S.REQUESTED])
    assert heard == [S.FAILED]


def test_without_a_launch_check_nothing_launches(notebook_setup, monkeypatch):
    # given no app registered a launch check (billing missing)
    monkeypatch.setattr(hooks, "_launch_checks", [])
    # when asked, then the launch is refused rather than allowed unbilled
    with pytest.raises(Exception, match="No launch check is registered"):
        hooks.launch_checks_run(organization=notebook_setup["access"].organization, project=None)

"""The instance lifecycle: one transition function, compare-and-set, an event per change."""

import pytest
from django.core.exceptions import ValidationError

from apps.capacity.models import AllocationState
from apps.instances.models import Instance, InstanceEvent, InstanceState
from apps.instances.services.lifecycle import instance_transition
from apps.instances.services.placement import LaunchUnplaceable, instance_schedule

pytestmark = pytest.mark.django_db
S = InstanceState


def test_launch_then_schedule_holds_a_gpu_and_logs_each_step(launch):
    instance = launch()

    assert instance.state == S.SCHEDULED
    assert instance.allocation.state == AllocationState.ACTIVE and instance.node_id == instance.allocation.node_id
    messages = list(instance.events.values_list("message", flat=True))
    assert messages[0] == "Launch requested"
    assert messages[1].startswith("Scheduled on node ") and "(simulated), GPU " in messages[1]


def test_a_transition_from_an_unexpected_state_changes_nothing(launch):
    instance = launch()
    before = InstanceEvent.objects.count()

    assert (
        instance_transition(instance_id=instance.pk, to_state=S.RUNNING, message="x", expected_from=[S.STOPPED]) is None
    )

    instance.refresh_from_db()
    assert instance.state == S.SCHEDULED and InstanceEvent.objects.count() == before


def test_a_forbidden_transition_is_refused(launch):
    instance = launch(schedule=False)
    with pytest.raises(ValidationError, match="cannot become running"):
        instance_transition(instance_id=instance.pk, to_state=S.RUNNING, message="x", expected_from=[S.REQUESTED])


def test_scheduling_twice_is_harmless(launch):
    instance = launch()
    again = instance_schedule(instance_id=instance.pk)
    assert again.state == S.SCHEDULED and again.allocation_id == instance.allocation_id
    assert instance.organization.allocations.count() == 1


def test_no_capacity_refuses_the_launch_at_request_time_and_saves_nothing(launch, notebook_setup):
    # Given no healthy GPU in the region
    notebook_setup["node"].gpus.update(health="failed")
    # When launching, then it is refused now (never accepted and failed later), with the availability
    with pytest.raises(LaunchUnplaceable) as refused:
        launch()
    assert "No free" in refused.value.message
    assert {"region": "us-east-1", "name": notebook_setup["region"].name, "available": 0} in refused.value.availability
    assert not Instance.objects.exists()

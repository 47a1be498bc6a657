"""Agent reports drive the lifecycle; the reconciler repairs what was left half-way."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.capacity.models import AllocationState, Gpu, Node, NodeState
from apps.instances.models import Instance, InstanceEvent, InstanceRuntime, InstanceState
from apps.instances.services.reconcile import instances_reconcile
from apps.instances.services.reports import StaleWorkloadReport, UnknownWorkload, workload_report_apply

pytestmark = pytest.mark.django_db
S = InstanceState


def age(instance, seconds):
    """Pretend the instance's last change, and its event log, happened `seconds` ago."""
    then = timezone.now() - timedelta(seconds=seconds)
    Instance.objects.filter(pk=instance.pk).update(state_changed_at=then)
    InstanceEvent.objects.filter(instance=instance).update(created_at=then)


def report(node, instance, seq, state, **kw):
    return workload_report_apply(node=node, instance_id=instance.pk, seq=seq, state=state, **kw)


def running(node, instance, seq=2):
    return report(
        node,
        instance,
        seq,
        "running",
        route_slot=str(instance.pk),
        socket="/run/neocloud/0123456789ab/0123456789abcdef/jupyter.sock",
        started_at=timezone.now(),
    )


def test_starting_then_running_records_the_route_and_ready_time(launch, notebook_setup):
    node = notebook_setup["node"]
    instance = launch()
    assert report(node, instance, 1, "starting").state == S.PROVISIONING
    instance = running(node, instance)
    assert instance.state == S.RUNNING
    assert instance.runtime.route_slot == str(instance.pk) and instance.runtime.socket.endswith("/jupyter.sock")
    assert instance.events.last().message.startswith("Ready in ")


def test_a_failed_start_fails_the_instance_with_the_reason_and_releases_capacity(launch, notebook_setup):
    node = notebook_setup["node"]
    instance = launch()
    report(node, instance, 1, "starting")
    failed = report(node, instance, 2, "failed", reason="jupyter exited with code 2: bad option --ServerApp.port")
    assert failed.state == S.FAILED and "bad option" in failed.state_reason
    assert failed.allocation.state == AllocationState.RELEASED
    assert not Gpu.objects.filter(allocated_milli__gt=0).exists()


def test_stale_and_foreign_reports_are_refused(launch, notebook_setup):
    node = notebook_setup["node"]
    instance = launch()
    running(node, instance, seq=5)
    with pytest.raises(StaleWorkloadReport):
        report(node, instance, 4, "failed", reason="late")
    other = Node.objects.create(region=node.region, hostname="other", credential_hash="x", simulated=True)
    with pytest.raises(UnknownWorkload):
        report(other, instance, 9, "running")
    assert Instance.objects.get(pk=instance.pk).state == S.RUNNING


def test_a_requested_instance_no_worker_picked_up_is_enqueued_again(launch, settings, monkeypatch):
    # The periodic task enqueues what the reconciler finds (apps.instances imports no task).
    from provisioning.tasks import instances_reconcile as reconcile_task

    sent = []
    monkeypatch.setattr("provisioning.tasks.instance_provision.delay", lambda instance_id: sent.append(instance_id))
    instance = launch(schedule=False)
    age(instance, settings.INSTANCES["REQUEUE_AFTER_S"] + 1)
    assert reconcile_task()["requeued"] == 1
    assert reconcile_task()["requeued"] == 0  # not again until REQUEUE_AFTER_S has passed
    assert sent == [str(instance.pk)]


def test_a_notebook_that_never_becomes_ready_fails_within_the_bound(launch, notebook_setup, settings):
    instance = launch()
    report(notebook_setup["node"], instance, 1, "starting")
    age(instance, settings.INSTANCES["START_TIMEOUT_S"] + 1)

    assert instances_reconcile()["failed"] == 1
    instance.refresh_from_db()
    assert instance.state == S.FAILED and "did not become ready" in instance.state_reason
    assert instance.allocation.state == AllocationState.RELEASED


def test_instances_on_a_down_node_are_lost(launch, notebook_setup):
    node = notebook_setup["node"]
    instance = running(node, launch())
    Node.objects.filter(pk=node.pk).update(state=NodeState.DOWN)
    assert instances_reconcile()["lost"] == 1
    assert Instance.objects.get(pk=instance.pk).state == S.LOST


def _idle(instance, minutes):
    InstanceRuntime.objects.filter(instance=instance).update(
        busy_kernels=0, last_activity_at=timezone.now() - timedelta(minutes=minutes)
    )


def test_an_idle_notebook_is_warned_then_stopped(launch, notebook_setup, settings):
    settings.INSTANCES = {**settings.INSTANCES, "IDLE_AFTER_S": 600, "IDLE_GRACE_S": 60}
    instance = running(notebook_setup["node"], launch())
    _idle(instance, 30)

    assert instances_reconcile()["warned"] == 1
    assert Instance.objects.get(pk=instance.pk).idle_warned_at is not None
    Instance.objects.filter(pk=instance.pk).update(idle_warned_at=timezone.now() - timedelta(minutes=2))
    assert instances_reconcile()["culled"] == 1
    assert Instance.objects.get(pk=instance.pk).state == S.STOPPING


@pytest.mark.parametrize("busy", ["kernel", "gpu"])
def test_a_busy_kernel_or_gpu_is_never_culled(launch, notebook_setup, settings, busy):
    settings.INSTANCES = {**settings.INSTANCES, "IDLE_AFTER_S": 600, "IDLE_GRACE_S": 0}
    instance = running(notebook_setup["node"], launch())
    _idle(instance, 30)
    if busy == "kernel":
        InstanceRuntime.objects.filter(instance=instance).update(busy_kernels=1)
    else:
        Gpu.objects.filter(slices__allocation_id=instance.allocation_id).update(utilization_pct=97)
    for _ in range(3):
        result = instances_reconcile()
    assert result["warned"] == 0 and result["culled"] == 0
    assert Instance.objects.get(pk=instance.pk).state == S.RUNNING

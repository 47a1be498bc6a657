"""Faults through the real pieces: Jupyter failing to start, the agent killed mid-launch, and a
Celery worker killed while a launch is queued for it. Each ends in a clear, bounded state."""

import signal
import time

import psutil
import pytest
import redis
from django.conf import settings

from apps.accounts.selectors import organization_access_get
from apps.capacity.models import Gpu
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Flavor, Image, Region
from apps.instances.models import Instance, InstanceState
from apps.instances.services.actions import instance_launch
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.support.processes import TEST_HEARTBEAT_INTERVAL_S, TEST_REQUEUE_AFTER_S, agent_start

pytestmark = pytest.mark.integration
S = InstanceState


def wait_for_state(instance_id, states, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        instance = Instance.objects.get(pk=instance_id)
        if instance.state in states:
            return instance
        time.sleep(0.1)
    raise TimeoutError(f"instance stayed {Instance.objects.get(pk=instance_id).state} for {timeout} s")


def kill_jupyter_under(path) -> None:
    """Jupyter servers outlive a SIGKILLed agent by design (a restarted agent re-adopts them)."""
    for proc in psutil.process_iter(["cmdline"]):
        if str(path) in " ".join(proc.info["cmdline"] or []):
            proc.kill()


def launch_messages_drop(instance_id) -> int:
    """A paused worker takes the next message only if it was waiting on the queue when paused; if
    a periodic task kept it busy (billing's beat tasks run every second in tests), the launch is
    still queued and a new worker would simply take it. Dropping it makes the scenario the same
    every run: the message died with the worker."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    dropped = 0
    for raw in broker.lrange("celery", 0, -1):
        if str(instance_id).encode() in raw:
            dropped += broker.lrem("celery", 1, raw)
    return dropped


@pytest.fixture
def faults(live_portal, celery_worker, celery_beat, transactional_db, demo_catalog, tmp_path, process_logs):
    region = Region.objects.get(code="us-east-1")
    _, token = registration_token_create(region=region, actor=None)
    agent = agent_start(process_logs, portal_url=live_portal.url, name="fault-node", state_file=tmp_path / "s.json",
                        token=token, notebook_pool=0)
    deadline = time.monotonic() + 30
    while Gpu.objects.filter(node__hostname="fault-node").count() < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    user = UserFactory()
    org = OrganizationFactory(owner=user)

    def launch(name, image=None):
        return instance_launch(
            access=organization_access_get(user=user, slug=org.slug),
            flavor=Flavor.objects.get(slug="notebook-1x-h100"),
            image=image or Image.objects.get(slug="jupyterlab-4-host"), region=region, name=name,
        )

    yield {"agent": agent, "launch": launch, "worker": celery_worker}
    agent.stop()
    kill_jupyter_under(tmp_path)


def test_jupyter_failing_to_start_ends_failed_with_the_reason_and_capacity_released(faults):
    broken = Image.objects.create(slug="broken", name="Broken image", offering_kinds=["notebook"],
                                  notebook_args=["--ServerApp.max_body_size=notanumber"])
    instance = faults["launch"]("broken-notebook", image=broken)

    failed = wait_for_state(instance.pk, {S.FAILED, S.RUNNING}, timeout=60)

    assert failed.state == S.FAILED, failed.state_reason
    assert failed.state_reason.startswith("Failed: ") and "max_body_size" in failed.state_reason
    assert not Gpu.objects.filter(node__hostname="fault-node", allocated_milli__gt=0).exists()


def test_an_agent_killed_mid_launch_ends_lost_within_the_bound(faults):
    instance = faults["launch"]("orphaned")
    wait_for_state(instance.pk, {S.SCHEDULED, S.PROVISIONING}, timeout=30)

    faults["agent"].process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()

    lost = wait_for_state(instance.pk, {S.LOST, S.FAILED}, timeout=30)
    took = time.monotonic() - killed_at
    # Down within three heartbeats, then the next reconciler pass (every second in tests).
    assert took < 3 * TEST_HEARTBEAT_INTERVAL_S + 5, took
    assert lost.state == S.LOST and "stopped responding" in lost.state_reason


def test_a_worker_killed_with_a_launch_queued_is_repaired_by_the_reconciler(faults):
    worker = faults["worker"]
    # Given a worker that dies holding the launch's message (paused, then killed: never acked)
    worker.current.process.send_signal(signal.SIGSTOP)
    instance = faults["launch"]("survivor")
    time.sleep(0.5)
    worker.current.process.send_signal(signal.SIGKILL)
    worker.current.process.wait(10)
    assert Instance.objects.get(pk=instance.pk).state == S.REQUESTED
    launch_messages_drop(instance.pk)

    # When a new worker comes up, the reconciler enqueues the launch again
    worker.start()
    running = wait_for_state(instance.pk, {S.RUNNING, S.FAILED}, timeout=TEST_REQUEUE_AFTER_S + 60)

    assert running.state == S.RUNNING, running.state_reason
    assert running.events.filter(source="reconciler", message__contains="queued again").exists()
    assert Instance.objects.get(pk=instance.pk).allocation.slices.filter(live=True).count() == 1

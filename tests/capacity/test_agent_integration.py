"""Real node agent processes against the real portal (ASGI server, Celery worker and beat):
registration, inventory and telemetry arrive; a killed agent's node goes down within three
heartbeat intervals and its capacity leaves the storefront; a restarted agent brings it back."""

import signal

import pytest

from apps.capacity.models import Gpu, Node, NodeState
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Flavor, Region
from tests.support.processes import TEST_HEARTBEAT_INTERVAL_S, agent_start
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def h100_availability(region) -> int:
    from apps.capacity.selectors.availability import flavor_availability

    flavor = Flavor.objects.filter(gpu_model__slug__startswith="h100", slice_kind="whole", gpu_count=1).first()
    return flavor_availability(flavors=[flavor], region=region).get(flavor.pk, 0)


def test_agent_registers_reports_goes_down_when_killed_and_comes_back(
    live_portal, celery_worker, celery_beat, transactional_db, demo_catalog, tmp_path, process_logs
):
    region = Region.objects.get(code="us-east-1")
    _, token = registration_token_create(region=region, actor=None)
    state_file = tmp_path / "agent-state.json"

    # Given a real agent process reporting a simulated 8×H100 host
    agent = agent_start(process_logs, portal_url=live_portal.url, name="it-node-1", state_file=state_file, token=token)
    node = wait_until(lambda: Node.objects.filter(hostname="it-node-1").first())
    wait_until(lambda: Gpu.objects.filter(node=node, telemetry_at__isnull=False).count() == 8)

    # Then the portal holds its inventory, labelled simulated, and offers its capacity
    node.refresh_from_db()
    assert node.simulated and node.state == NodeState.READY
    assert set(Gpu.objects.filter(node=node).values_list("gpu_model__slug", flat=True)) == {"h100-80gb-sxm"}
    assert all(uuid.startswith("GPU-SIM-") for uuid in Gpu.objects.filter(node=node).values_list("uuid", flat=True))
    assert h100_availability(region) >= 8

    # When the agent is killed
    agent.process.send_signal(signal.SIGKILL)
    agent.process.wait(5)

    # Then the node goes down within three heartbeat intervals of its last heartbeat
    wait_until(lambda: Node.objects.get(pk=node.pk).state == NodeState.DOWN, timeout=10 * TEST_HEARTBEAT_INTERVAL_S)
    node.refresh_from_db()
    silent_for = (node.state_changed_at - node.last_heartbeat_at).total_seconds()
    assert silent_for <= 3 * TEST_HEARTBEAT_INTERVAL_S, silent_for
    # And its capacity leaves the storefront
    assert h100_availability(region) == 0

    # When the agent restarts with its saved credential (no new token)
    restarted = agent_start(
        process_logs, portal_url=live_portal.url, name="it-node-1", state_file=state_file, token=None
    )
    try:
        wait_until(lambda: Node.objects.get(pk=node.pk).state == NodeState.READY)
        assert h100_availability(region) >= 8
        assert Node.objects.filter(hostname="it-node-1").count() == 1
    finally:
        restarted.stop()

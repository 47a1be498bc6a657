"""Real agent processes run their node health check at start: the one whose simulated GPU 3 is
bad (`--simulate 8xH100-80GB,bad=3`) is cordoned with the reason and an event and its GPUs are
not offered; a healthy one stays ready and offered."""

import pytest

from apps.capacity.models import Gpu, Node, NodeEvent, NodeState
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Region
from tests.capacity.test_agent_integration import h100_availability
from tests.support.processes import agent_start
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_a_node_failing_its_health_check_is_cordoned_and_not_offered(
    live_portal, transactional_db, demo_catalog, tmp_path, process_logs
):
    region = Region.objects.get(code="us-east-1")
    assert not Node.objects.filter(region=region).exists()
    agents = []
    try:
        # Given two real agents: one healthy 8xH100 host, one whose GPU 3 reports failed rows
        for name, spec in (("hc-good", "8xH100-80GB"), ("hc-bad", "8xH100-80GB,bad=3")):
            _, token = registration_token_create(region=region, actor=None)
            agents.append(agent_start(process_logs, portal_url=live_portal.url, name=name,
                                      state_file=tmp_path / f"{name}.json", token=token, simulate=spec))
        good = wait_until(lambda: Node.objects.filter(hostname="hc-good", health_checked_at__isnull=False).first())
        bad = wait_until(lambda: Node.objects.filter(hostname="hc-bad", health_checked_at__isnull=False).first())
        wait_until(lambda: Gpu.objects.filter(node__in=[good, bad]).count() == 16)

        # Then the bad node is cordoned with the reason, and an event row says so
        assert bad.state == NodeState.CORDONED and bad.health_passed is False
        assert bad.state_reason.startswith("health check failed: GPU 3 (GPU-SIM-")
        assert "row remapping failed" in bad.state_reason
        event = NodeEvent.objects.get(node=bad, to_state=NodeState.CORDONED)
        assert event.from_state == NodeState.READY and event.actor is None
        # And the healthy one stays ready with its passing check stored
        assert good.state == NodeState.READY and good.health_passed is True
        # And only the healthy node's 8 GPUs are offered
        assert h100_availability(region) == 8
    finally:
        for agent in agents:
            agent.stop()

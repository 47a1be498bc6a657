"""An agent killed (SIGKILL) while a GPU instance runs behind its sshd, through the real pieces
(ASGI server, Celery worker and beat, a real agent and OpenSSH): the instance shows lost with the
reason, its GPU stays held while the node is away, and the agent's return releases it and stops
what was left of the lost instance's sshd."""

import signal
import subprocess
from pathlib import Path

import pytest
from django.test import Client

from apps.accounts.selectors import organization_access_get
from apps.accounts.ssh_keys import ssh_key_add
from apps.capacity.models import Allocation, AllocationState, Gpu, Node, NodeState
from apps.capacity.selectors.availability import flavor_availability
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Flavor, Image, Region
from apps.instances.models import Instance, InstanceRuntime, InstanceState
from apps.instances.services.actions import instance_launch
from apps.instances.services.placement import LaunchUnplaceable
from devtools.commands import agent_command
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.support.processes import TEST_HEARTBEAT_INTERVAL_S, agent_start, process_env, spawn
from tests.support.ssh import NEEDS_ROOT_AND_OPENSSH
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    *NEEDS_ROOT_AND_OPENSSH,
]
S = InstanceState
NODE = "ssh-lost-node"
PORTS = (42370, 42379)  # apart from the other SSH tests' ranges


def _ssh(key: Path, runtime: InstanceRuntime, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(runtime.ssh_port), "-F", "/dev/null",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
         "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
         f"{runtime.ssh_user}@{runtime.ssh_host}", command],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _one_h100_free(region) -> int:
    flavor = Flavor.objects.get(offering__slug="gpu-instances", slug="1x-h100")
    return flavor_availability(flavors=[flavor], region=region).get(flavor.pk, 0)


def _agent_restart(process_logs, *, portal_url: str, state_file: Path, workload_root: str):
    """The same host's agent coming back: its saved credential (no token) and its workload folder,
    where it finds what the killed agent left running."""
    command = agent_command(
        portal_url=portal_url, state_file=state_file, workload_root=Path(workload_root), notebook_pool=0,
        simulate="8xH100-80GB", hostname=NODE, telemetry_interval_s=1, address="127.0.0.1", ssh_ports=PORTS,
    )  # fmt: skip
    agent = spawn(f"agent-{NODE}-again", command, process_env(), process_logs)
    agent.leaves_behind = workload_root
    return agent


def test_an_agent_killed_under_a_running_ssh_instance(
    live_portal, celery_worker, celery_beat, transactional_db, demo_catalog, tmp_path, process_logs
):
    region = Region.objects.get(code="us-east-1")
    _, token = registration_token_create(region=region, actor=None)
    state_file = tmp_path / "state.json"
    agent = agent_start(
        process_logs, portal_url=live_portal.url, name=NODE, state_file=state_file, token=token,
        address="127.0.0.1", ssh_ports=PORTS,
    )  # fmt: skip
    back = None
    try:
        wait_until(lambda: Gpu.objects.filter(node__hostname=NODE, node__state=NodeState.READY).count() == 8)
        node = Node.objects.get(hostname=NODE)

        # Given a GPU instance running behind its sshd, logged in to with the owner's key
        owner = UserFactory()
        org = OrganizationFactory(owner=owner)
        private = tmp_path / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)], check=True)
        key = ssh_key_add(user=owner, name="laptop", public_key=private.with_suffix(".pub").read_text())
        instance = instance_launch(
            access=organization_access_get(user=owner, slug=org.slug),
            flavor=Flavor.objects.get(offering__slug="gpu-instances", slug="1x-h100"),
            image=Image.objects.filter(offering_kinds__contains=["gpu_slice"]).first(),
            region=region, name="doomed", ssh_keys=[key.pk],
        )  # fmt: skip
        running = wait_until(lambda: Instance.objects.filter(pk=instance.pk, state__in=[S.RUNNING, S.FAILED]).first())
        assert running.state == S.RUNNING, running.state_reason
        runtime = InstanceRuntime.objects.get(instance_id=instance.pk)
        logged_in = _ssh(private, runtime, 'echo "$CUDA_VISIBLE_DEVICES"')
        assert logged_in.returncode == 0 and logged_in.stdout.strip().startswith("GPU-"), logged_in.stderr
        held_gpu = running.allocation.slices.get().gpu_id
        assert _one_h100_free(region) == 7

        # When its agent is killed
        agent.process.send_signal(signal.SIGKILL)
        agent.process.wait(5)

        # Then, after the heartbeat timeout, the instance is lost with the reason, on its page too
        lost = wait_until(
            lambda: Instance.objects.filter(pk=instance.pk, state=S.LOST).first(),
            timeout=20 * TEST_HEARTBEAT_INTERVAL_S,
        )
        assert lost.state_reason == f"Lost: node {NODE} stopped responding"
        page = Client()
        page.force_login(owner)
        html = page.get(f"/orgs/{org.slug}/instances/{instance.pk}/").content.decode()
        assert 'data-testid="failure"' in html and f"node {NODE} stopped responding" in html
        assert 'data-testid="ssh-access"' not in html  # no command to a host that is not there
        api = page.get(f"/api/v1/organizations/{org.slug}/instances/{instance.pk}/").json()
        assert api["state"] == "lost" and api["ssh"] is None

        # And its GPU stays held while the node is away: nothing can be placed on it (its sshd
        # outlived the agent, as workloads do so that a restarted agent re-adopts them)
        assert _ssh(private, runtime, "true").returncode == 0
        assert Allocation.objects.get(pk=lost.allocation_id).state == AllocationState.LOST
        assert Gpu.objects.get(pk=held_gpu).allocated_milli == 1000
        assert _one_h100_free(region) == 0
        with pytest.raises(LaunchUnplaceable):
            instance_launch(
                access=organization_access_get(user=owner, slug=org.slug),
                flavor=Flavor.objects.get(offering__slug="gpu-instances", slug="1x-h100"),
                image=Image.objects.filter(offering_kinds__contains=["gpu_slice"]).first(),
                region=region, name="hopeful", ssh_keys=[key.pk],
            )  # fmt: skip

        # When the agent comes back (same credential, same workload folder)
        back = _agent_restart(
            process_logs, portal_url=live_portal.url, state_file=state_file, workload_root=agent.leaves_behind
        )
        wait_until(lambda: Node.objects.get(pk=node.pk).state == NodeState.READY, timeout=60)

        # Then the lost hold is released and all 8 GPUs are offered again; the instance stays lost
        wait_until(lambda: Gpu.objects.get(pk=held_gpu).allocated_milli == 0)
        assert Allocation.objects.get(pk=lost.allocation_id).state == AllocationState.RELEASED
        assert _one_h100_free(region) == 8
        assert Instance.objects.get(pk=instance.pk).state == S.LOST
        # And the returned agent stops what was left of the lost instance's sshd
        wait_until(lambda: _ssh(private, runtime, "true").returncode == 255, timeout=30)
    finally:
        if back is not None:
            back.stop()
        agent.stop()

"""Bare-metal nodes (kind bare_metal) on the agent side: the workload service runs them with the
SSH runner and every GPU, behind the node health check (a real check over a simulated inventory)
and with a wipe of the account and home on every stop; the portal's side is doubled
(tests/agent/test_workloads_support.py). Real sshd, real accounts, the real ssh client."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from provisioning.agent.client import PortalClient, RetryPolicy
from provisioning.agent.loop import seq_start, sources_simulated
from provisioning.agent.workloads.identity import accounts_of_root
from provisioning.agent.workloads.process import proc_alive, proc_uid
from provisioning.agent.workloads.service import WorkloadOptions, WorkloadService
from provisioning.agent.workloads.ssh import ssh_root_clear
from tests.agent.test_workloads_support import WorkloadPortalServer
from tests.support.processes import workload_root_new
from tests.support.ssh import NEEDS_ROOT_AND_OPENSSH
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    *NEEDS_ROOT_AND_OPENSSH,
]

METAL, SLICE = "77700000-0000-4000-8000-00000000000a", "77700000-0000-4000-8000-00000000000b"
GPUS = [f"GPU-SIM-0000000{i}-0000-0000-0000-000000000000" for i in range(8)]
PORTS = (42400, 42419)


def spec(instance_id: str, key: str, *, kind: str = "bare_metal", state: str = "running", gpus=GPUS) -> dict:
    return {"id": instance_id, "kind": kind, "state": state, "gpus": list(gpus), "authorized_keys": [key]}


def ssh_run(key: Path, body: dict, command: str) -> subprocess.CompletedProcess:
    options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes", "IdentitiesOnly=yes"]
    argv = ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(body["port"])]
    for option in [*options, "LogLevel=ERROR", "ConnectTimeout=10"]:
        argv += ["-o", option]
    return subprocess.run(
        [*argv, f"{body['user']}@{body['host']}", command],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


class Agent:
    """The agent's workload side, started as loop.py starts it, with the simulated host's check."""

    def __init__(self, portal, root: Path, simulate: str = "8xH100-80GB"):
        self.portal, self.root = portal, root
        self.stop = threading.Event()
        self.fatal: list[Exception] = []
        client = PortalClient(
            portal.url, timeout_s=5, stop=self.stop, retry=RetryPolicy(attempts=2, base_s=0.05, cap_s=0.1)
        )
        client.authenticate("node-1", "s3cret")
        self.service = WorkloadService(
            WorkloadOptions(workload_root=root, pool_size=0, poll_wait_s=5, address="127.0.0.1", ssh_ports=PORTS)
        )
        self.service.prepare()
        seq, lock = iter(range(seq_start(), 2**62)), threading.Lock()

        def seq_take() -> int:
            with lock:
                return next(seq)

        check = sources_simulated(simulate, "bm-agent", "/").health_check
        self.service.start(
            client, seq_take, self.stop, activity_interval_s=1.0, on_fatal=self.fatal.append, health_check=check
        )

    def close(self, *, stop_servers: bool) -> None:
        self.stop.set()
        self.service.shutdown(stop_servers=stop_servers)


@pytest.fixture
def key(tmp_path) -> Path:
    path = tmp_path / "mine"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mine", "-f", str(path)], check=True)
    return path


@pytest.fixture
def portal():
    with WorkloadPortalServer() as portal:
        yield portal


def test_a_node_failing_its_check_at_hand_over_reports_the_check_and_creates_nothing(portal, key):
    root = workload_root_new("bm-bad") / "root"
    agent = Agent(portal, root, simulate="8xH100-80GB,bad=4")
    try:
        # When a bare-metal node is to be handed out on a host whose GPU 4 is bad
        portal.desire(spec(METAL, key.with_suffix(".pub").read_text().strip()))
        failed = portal.wait_report(METAL, "failed", timeout=30).body

        # Then the failure carries the check, names the GPU, and no account or home was made
        assert [b["state"] for b in portal.reports_for(METAL)] == ["starting", "failed"]
        assert failed["reason"].startswith("the node failed its health check before hand-over: GPU 4 (GPU-SIM-")
        check = failed["health_check"]
        assert check["passed"] is False and check["simulated"] is True and check["reasons"][0].startswith("GPU 4 ")
        assert failed["wiped"] == {"account": None, "home": str(root / METAL / "work"), "files": 0}
        assert not accounts_of_root(root) and not (root / METAL).exists()
    finally:
        agent.close(stop_servers=True)
        ssh_root_clear(root)
    assert not agent.fatal


def test_every_gpu_is_visible_and_a_stop_wipes_the_home_so_a_start_begins_empty(portal, key):
    root = workload_root_new("bm-good") / "root"
    agent = Agent(portal, root)
    public = key.with_suffix(".pub").read_text().strip()
    try:
        portal.desire(spec(METAL, public))
        running = portal.wait_report(METAL, "running", timeout=60).body
        done = ssh_run(key, running, 'echo "$CUDA_VISIBLE_DEVICES"; echo data > ~/a.txt; mkdir ~/d; touch ~/d/b')
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == ",".join(GPUS)
        # and a process that left its session for good
        escaped = ssh_run(key, running, "setsid nohup sleep 600 >/dev/null 2>&1 & id -u")
        assert escaped.returncode == 0, escaped.stderr
        uid = int(escaped.stdout.split()[-1])
        assert wait_until(lambda: [pid for pid in pids() if proc_uid(pid) == uid and proc_alive(pid)], 10)

        # When it is stopped, the report says what was wiped, and it is gone
        seen = len(portal.reports_for(METAL))
        portal.desire(spec(METAL, public, state="stopped", gpus=()))
        stopped = portal.wait_report(METAL, "stopped", timeout=30, after=seen).body
        assert stopped["wiped"] == {"account": running["user"], "home": str(root / METAL / "work"), "files": 2}
        assert not (root / METAL).exists() and not accounts_of_root(root)
        assert not [pid for pid in pids() if proc_uid(pid) == uid and proc_alive(pid)]

        # And a start again gets a fresh account and an empty home
        seen = len(portal.reports_for(METAL))
        portal.desire(spec(METAL, public))
        again = portal.wait_report(METAL, "running", timeout=60, after=seen).body
        assert again["user"] != running["user"]
        listed = ssh_run(key, again, "ls -A ~ | wc -l")
        assert listed.returncode == 0 and listed.stdout.strip() == "0", listed.stdout
    finally:
        agent.close(stop_servers=True)
        ssh_root_clear(root)
    assert not agent.fatal


def test_a_restarted_agent_gives_each_sshd_back_to_its_own_runner(portal, key):
    # Given a GPU instance and a bare-metal node on one agent
    root = workload_root_new("bm-adopt") / "root"
    public = key.with_suffix(".pub").read_text().strip()
    first = Agent(portal, root)
    second = None
    try:
        portal.desire(spec(METAL, public), spec(SLICE, public, kind="gpu_slice", gpus=GPUS[:1]))
        metal = portal.wait_report(METAL, "running", timeout=60).body
        portal.wait_report(SLICE, "running", timeout=60)
        pids = {i: r.workload(i).server.pid for i, r in ((METAL, first.service.bare_metal), (SLICE, first.service.ssh))}
        seen = {i: len(portal.reports_for(i)) for i in (METAL, SLICE)}

        # When the agent stops (servers keep running) and a new run starts with the same list
        first.close(stop_servers=False)
        second = Agent(portal, root)

        # Then each runner re-adopts its own sshd: both report running again, nothing is stopped
        for instance_id in (METAL, SLICE):
            portal.wait_report(instance_id, "running", timeout=30, after=seen[instance_id])
        assert second.service.bare_metal.workload(METAL).server.pid == pids[METAL]
        assert second.service.ssh.workload(SLICE).server.pid == pids[SLICE]
        assert second.service.ssh.workload(METAL) is None and second.service.bare_metal.workload(SLICE) is None
        assert all(b["state"] == "running" for i in (METAL, SLICE) for b in portal.reports_for(i)[seen[i] :])
        assert ssh_run(key, metal, "true").returncode == 0
    finally:
        (second or first).close(stop_servers=True)
        ssh_root_clear(root)


def test_late_bad_breaks_a_simulated_gpu_after_the_first_check_and_never_in_the_inventory():
    sources = sources_simulated("8xH100-80GB,late_bad=2+5", "late-host", "/")

    first, second = sources.health_check(), sources.health_check()

    assert first.passed and not second.passed
    assert [reason.split(" (")[0] for reason in second.reasons[::2]] == ["GPU 2", "GPU 5"]
    assert all(gpu["health"] == "ok" for gpu in sources.inventory_read().to_payload()["gpus"])
    with pytest.raises(ValueError, match="late_bad= takes GPU indexes 0..7"):
        sources_simulated("8xH100-80GB,late_bad=8", "late-host", "/")

"""Notebook workloads end to end: real JupyterLab servers and kernels, the portal's side doubled.

One module-scoped agent side (WorkloadService: long-poll thread, supervisor, warm pool of one)
serves every test, so the few JupyterLab cold starts are shared. Instance "cold" has image
jupyter_args, which the pool does not serve: it always gets a cold start; "pooled" has none and
gets the warm server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from provisioning.agent.client import PortalClient, RetryPolicy
from provisioning.agent.loop import seq_start
from provisioning.agent.workloads.identity import account_create, account_remove
from provisioning.agent.workloads.process import proc_alive, proc_descendants, proc_uid
from provisioning.agent.workloads.service import WorkloadOptions, WorkloadService
from tests.agent.test_workloads_support import (
    WorkloadPortalServer,
    jupyter_request,
    jupyter_request_bare,
    kernel_execute,
    kernel_start,
    notebook_spec,
)
from tests.support.processes import workload_root_new
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

COLD, POOLED = "c01d0000-0000-4000-8000-000000000001", "900100ed-0000-4000-8000-000000000002"
COLD_GPUS = ["GPU-11111111-2222-3333-4444-555555555555", "GPU-66666666-7777-8888-9999-000000000000"]
POOLED_GPUS = ["MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"]
IMAGE_ARGS = ["--ServerApp.iopub_msg_rate_limit=2000"]  # harmless; makes the start a cold one
CUDA_PRINT = "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'))"
# Leaves the kernel's process tree for good: the middle process exits, the grandchild is adopted
# by init in a session of its own, writes its pid to `path` and sleeps.
ESCAPE = """import subprocess, sys
subprocess.run([sys.executable, "-c", '''
import os, time
if os.fork() == 0:
    os.setsid()
    with open("{path}", "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(600)
'''])
"""
CONNECT = """import socket, sys
try:
    socket.socket(socket.AF_UNIX).connect(sys.argv[1])
    print("ok")
except OSError as exc:
    print(type(exc).__name__)
"""


def account_exists(name: str) -> bool:
    return any(line.startswith(f"{name}:") for line in Path("/etc/passwd").read_text().splitlines())


def _connect_as(path: str, *, user: int, group: int) -> str:
    done = subprocess.run([sys.executable, "-c", CONNECT, path], user=user, group=group,
                          extra_groups=[], capture_output=True, text=True, timeout=30)
    return done.stdout.strip() or done.stderr.strip()


class Agent:
    """The agent's workload side, started the way loop.py starts it."""

    def __init__(self, portal, root: Path):
        self.portal, self.root = portal, root
        self.stop = threading.Event()
        self.fatal: list[Exception] = []
        self.client = PortalClient(portal.url, timeout_s=5, stop=self.stop,
                                   retry=RetryPolicy(attempts=2, base_s=0.05, cap_s=0.1))
        self.client.authenticate("node-1", "s3cret")
        self.service = WorkloadService(WorkloadOptions(workload_root=root, pool_size=1,
                                                       poll_wait_s=5))
        self.service.prepare()
        seq = iter(range(seq_start(), 2**62))
        lock = threading.Lock()

        def seq_take() -> int:
            with lock:
                return next(seq)

        self.service.start(self.client, seq_take, self.stop, activity_interval_s=1.0,
                           on_fatal=self.fatal.append)

    @property
    def pool(self):
        return self.service.pool

    def server(self, instance_id: str):
        workload = self.service.supervisor.workload(instance_id)
        return workload.server if workload else None


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    os.environ["NEOCLOUD_AGENT_TOKEN"] = "agent-secret"  # must not reach any workload
    with WorkloadPortalServer() as portal:
        agent = Agent(portal, workload_root_new("workloads") / "root")
        try:
            yield agent
        finally:
            os.environ.pop("NEOCLOUD_AGENT_TOKEN", None)
            agent.stop.set()
            agent.service.shutdown(stop_servers=True)
    assert not agent.fatal


@pytest.fixture(scope="module")
def cold(agent):
    """The "cold" instance running (its report), with the time the cold start took."""
    desired_at = agent.portal.desire(notebook_spec(COLD, gpus=COLD_GPUS, args=IMAGE_ARGS))
    running = agent.portal.wait_report(COLD, "running", timeout=90)
    print(f"\ncold start: desired -> running report in {running.at - desired_at:.2f} s")
    return running.body



def test_cold_start_reports_starting_then_running_and_serves_jupyter(agent, cold):
    states = [body["state"] for body in agent.portal.reports_for(COLD)]
    assert states[:2] == ["starting", "running"]
    starting = agent.portal.reports_for(COLD)[0]
    assert starting["route_slot"] == COLD and starting["socket"] is None
    assert cold["route_slot"] == COLD and cold["socket"].endswith("/jupyter.sock")
    assert set(cold) == {"seq", "state", "reason", "route_slot", "socket", "pooled", "started_at",
                         "activity"}  # no token: the socket's permissions are the authentication
    assert cold["pooled"] is False and cold["started_at"] and cold["reason"] is None
    seqs = [body["seq"] for body in agent.portal.reports_for(COLD)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    status, answer = jupyter_request(cold, "api/status")
    assert status == 200 and "last_activity" in answer
    # Without the XSRF cookie a browser would have, nothing can be changed (no CSRF into it).
    assert jupyter_request_bare(cold, "api/kernels", method="POST")[0] == 403


def test_cold_kernel_sees_exactly_its_gpus_and_activity_is_reported(agent, cold):
    kernel_id = kernel_start(cold)
    assert kernel_execute(cold, kernel_id, CUDA_PRINT).strip() == ",".join(COLD_GPUS)
    facts = json.loads(kernel_execute(cold, kernel_id, (
        "import json, os; print(json.dumps({'home': os.environ['HOME'], "
        "'leak': [k for k in os.environ if 'NEOCLOUD' in k or k == 'JUPYTER_TOKEN'], "
        "'cwd': os.path.realpath(os.getcwd())}))")))
    assert facts["home"] == str(agent.server(COLD).paths.home)
    assert facts["cwd"] == str((agent.root / COLD / "work").resolve())
    assert facts["leak"] == []  # no token of the server's, none of the agent's
    report = agent.portal.wait_report(
        COLD, "running", timeout=20, where=lambda b: (b["activity"] or {}).get("kernels") == 1)
    activity = report.body["activity"]
    assert activity["busy_kernels"] == 0 and activity["last_activity"]
    assert set(activity) == {"last_activity", "kernels", "busy_kernels", "connections"}


def test_notebooks_never_run_as_root(agent, cold):
    if os.geteuid() != 0:
        pytest.skip("the agent is not root here, so workloads run as this user anyway")
    server = agent.server(COLD)
    assert proc_uid(server.pid) not in (None, 0)
    kernels = proc_descendants(server.pid)
    assert kernels and all(proc_uid(pid) not in (None, 0) for pid in kernels)
    work = agent.root / COLD / "work"
    assert work.stat().st_uid == proc_uid(server.pid)


def test_every_server_has_an_account_of_its_own_and_only_it_and_the_proxy_reach_it(agent, cold):
    if os.geteuid() != 0:
        pytest.skip("the agent is not root here: one account for everything, nothing isolated")
    wait_until(lambda: agent.pool.ready_count() == 1, 90, "the warm pool")
    servers = [agent.server(COLD), agent.pool.ready_servers()[0]]
    uids = [proc_uid(server.pid) for server in servers]
    assert len(set(uids)) == 2 and 0 not in uids
    assert all(server.run_as.name.startswith("nc-") and account_exists(server.run_as.name)
               for server in servers)

    # Given the cold server's socket, when a process of another account tries to connect, it is
    # refused; a process in the proxy's group (nginx's workers) connects.
    socket_path = servers[0].socket
    stranger = account_create(workload_root=agent.root, home=agent.root)
    try:
        refused = _connect_as(socket_path, user=stranger.uid, group=stranger.gid)
        member = _connect_as(socket_path, user=stranger.uid, group=agent.service.proxy_gid)
    finally:
        account_remove(stranger)
    assert refused == "PermissionError" and member == "ok"


def test_pooled_hand_out_is_a_running_report_without_a_new_process(agent, cold):
    wait_until(lambda: agent.pool.ready_count() == 1, 90, "the warm pool")
    warm = agent.pool.ready_servers()[0]
    started_before = agent.pool.started

    desired_at = agent.portal.desire(notebook_spec(COLD, gpus=COLD_GPUS, args=IMAGE_ARGS),
                                     notebook_spec(POOLED, gpus=POOLED_GPUS))
    running = agent.portal.wait_report(POOLED, "running", timeout=10)
    print(f"\npooled hand-out: desired -> running report in "
          f"{(running.at - desired_at) * 1000:.1f} ms (long-poll included)")

    body = running.body
    assert [b["state"] for b in agent.portal.reports_for(POOLED)][0] == "running"  # no starting
    assert body["pooled"] is True and body["route_slot"] == warm.route_slot != POOLED
    assert body["socket"] == warm.socket
    assert agent.server(POOLED).pid == warm.pid
    assert agent.pool.started in (started_before, started_before + 1)  # only the refill

    kernel_id = kernel_start(body)
    assert kernel_execute(body, kernel_id, CUDA_PRINT).strip() == ",".join(POOLED_GPUS)
    cwd = kernel_execute(body, kernel_id, "import os; print(os.path.realpath(os.getcwd()))")
    assert cwd.strip() == str((agent.root / POOLED / "work").resolve())
    # Its files are the instance's working directory, not the pool slot's empty one.
    assert jupyter_request(body, "api/contents/from-kernel.txt", method="PUT",
                           body={"type": "file", "format": "text", "content": "hi"})[0] == 201
    assert (agent.root / POOLED / "work" / "from-kernel.txt").read_text() == "hi"


def test_stop_kills_the_process_tree_and_is_idempotent(agent, cold):
    server = agent.server(POOLED)
    # A process that left the server's tree (double fork, new session) and a file in the host's
    # shared /tmp: both must go with the server's account, whose uid a later tenant may get.
    escaped = Path("/tmp") / f"escaped-{os.getpid()}-{POOLED[:8]}"
    running = agent.portal.wait_report(POOLED, "running").body
    kernel_execute(running, kernel_start(running), ESCAPE.format(path=escaped))
    wait_until(lambda: escaped.exists() and escaped.read_text().strip(), 10, "the escaped process")
    escaped_pid = int(escaped.read_text())
    assert escaped_pid not in proc_descendants(server.pid)
    tree = [server.pid, *proc_descendants(server.pid)]
    assert len(tree) >= 2  # the server and the kernel started above
    slot_dir, account = server.paths.dir, server.run_as

    agent.portal.desire(notebook_spec(COLD, gpus=COLD_GPUS, args=IMAGE_ARGS),
                        notebook_spec(POOLED, state="stopped"))
    stopped = agent.portal.wait_report(POOLED, "stopped", timeout=20).body
    assert stopped["route_slot"] is None and stopped["socket"] is None
    assert not any(proc_alive(pid) for pid in tree)
    assert not slot_dir.exists()
    assert (agent.root / POOLED / "work" / "from-kernel.txt").exists()  # kept for a restart
    if os.geteuid() == 0:
        assert not proc_alive(escaped_pid) and not escaped.exists()
        assert not account_exists(account.name)
        # kept, but root's until a server of the instance's holds it again
        work = agent.root / POOLED / "work"
        assert {path.stat().st_uid for path in [work, *work.rglob("*")]} == {0}

    # Stopping again, or stopping something never started, only (re)states "stopped".
    never = "0e0e0e0e-0000-4000-8000-000000000003"
    agent.portal.desire(notebook_spec(COLD, gpus=COLD_GPUS, args=IMAGE_ARGS),
                        notebook_spec(POOLED, state="stopped"), notebook_spec(never, "stopped"),
                        {"id": "ray-1", "kind": "ray", "state": "running"})
    assert agent.portal.wait_report(never, "stopped", timeout=10).body["socket"] is None
    assert [b["state"] for b in agent.portal.reports_for(POOLED)] == ["running"] * (
        len(agent.portal.reports_for(POOLED)) - 1) + ["stopped"]
    assert agent.portal.reports_for("ray-1") == []

    # The handed-out server never goes back to the pool; the pool refills with a fresh one.
    wait_until(lambda: agent.pool.ready_count() == 1, 90, "the pool to refill")
    assert agent.pool.ready_servers()[0].pid not in tree


def test_working_directory_persists_across_stop_and_start(agent, cold):
    note = {"type": "file", "format": "text", "content": "kept across restarts"}
    assert jupyter_request(cold, "api/contents/notes.txt", method="PUT", body=note)[0] == 201
    before = len(agent.portal.reports_for(COLD))
    old_pid = agent.server(COLD).pid

    agent.portal.desire(notebook_spec(COLD, "stopped"))
    agent.portal.wait_report(COLD, "stopped", after=before, timeout=20)
    assert not proc_alive(old_pid)
    stopped_at = len(agent.portal.reports_for(COLD))  # activity reports came before "stopped"
    agent.portal.desire(notebook_spec(COLD, gpus=COLD_GPUS, args=IMAGE_ARGS))
    running = agent.portal.wait_report(COLD, "running", after=stopped_at, timeout=90).body

    assert agent.server(COLD).pid != old_pid
    status, content = jupyter_request(running, "api/contents/notes.txt")
    assert status == 200 and content["content"] == "kept across restarts"


def test_failed_start_reports_a_readable_reason(agent):
    bad_value, protected = ("fa11ed00-0000-4000-8000-000000000004",
                            "fa11ed00-0000-4000-8000-000000000005")
    agent.portal.desire(
        notebook_spec(COLD, gpus=COLD_GPUS, args=IMAGE_ARGS),
        notebook_spec(bad_value, args=["--ServerApp.max_body_size=notanumber"]),
        notebook_spec(protected, args=["--ServerApp.port=notaport"]),
    )
    failed = agent.portal.wait_report(bad_value, "failed", timeout=60).body
    assert [b["state"] for b in agent.portal.reports_for(bad_value)] == ["starting", "failed"]
    assert "JupyterLab exited with code 1 before it was ready" in failed["reason"]
    assert "max_body_size" in failed["reason"] and len(failed["reason"]) <= 1000
    assert failed["socket"] is None
    assert not (agent.root / "slots" / bad_value).exists()

    refused = agent.portal.wait_report(protected, "failed", timeout=10).body
    assert "may not set ServerApp.port" in refused["reason"]
    time.sleep(1.5)  # not retried while the spec stays the same
    assert [b["state"] for b in agent.portal.reports_for(bad_value)] == ["starting", "failed"]


def test_unknown_instance_404_is_stopped(agent):
    ghost = "9405e000-0000-4000-8000-000000000006"
    wait_until(lambda: agent.pool.ready_count() == 1, 90, "the warm pool")  # a hand-out
    agent.portal.status_codes[ghost] = 404
    agent.portal.desire(notebook_spec(COLD, gpus=COLD_GPUS, args=IMAGE_ARGS), notebook_spec(ghost))
    agent.portal.wait_report(ghost, "running", timeout=90)
    wait_until(lambda: agent.server(ghost) is None and not agent.service.supervisor.workload(
        ghost).thread, 20, "the unknown instance's server to stop")
    time.sleep(0.5)
    assert [b["state"] for b in agent.portal.reports_for(ghost)][-1] == "running"


def test_deleted_stops_and_removes_the_working_directory(agent, cold):
    assert (agent.root / COLD / "work" / "notes.txt").exists()
    pid = agent.server(COLD).pid
    before = len(agent.portal.reports_for(COLD))
    agent.portal.desire(notebook_spec(COLD, "deleted"))
    agent.portal.wait_report(COLD, "stopped", after=before, timeout=20)
    assert not proc_alive(pid)
    wait_until(lambda: not (agent.root / COLD).exists(), 10, "the working directory to go")

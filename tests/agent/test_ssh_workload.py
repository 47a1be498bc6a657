"""SSH instances (kind gpu_slice) end to end on the agent side: a real sshd per instance started
through the agent's workload service from the long-poll's desired state, reached with the real
OpenSSH client; the portal's side is doubled (tests/agent/test_workloads_support.py).

One module-scoped agent serves every test; instance A is started once and reused, so the whole
module costs a few sshd starts of about a second each.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from provisioning.agent.client import PortalClient, RetryPolicy
from provisioning.agent.loop import seq_start
from provisioning.agent.workloads.identity import accounts_of_root, processes_kill
from provisioning.agent.workloads.notebook import workload_root_clear
from provisioning.agent.workloads.process import proc_alive, proc_uid
from provisioning.agent.workloads.service import WorkloadOptions, WorkloadService
from provisioning.agent.workloads.ssh import ssh_root_clear, ssh_slot_dir
from provisioning.protocol import SSH_ENDPOINT_FIELDS, SpecRefused, report_body, spec_from_wire
from tests.agent.test_workloads_support import WorkloadPortalServer
from tests.support.processes import workload_root_new
from tests.support.ssh import NEEDS_ROOT_AND_OPENSSH
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    *NEEDS_ROOT_AND_OPENSSH,
]

A, B = "55500000-0000-4000-8000-00000000000a", "55500000-0000-4000-8000-00000000000b"
A_GPUS = ["GPU-11111111-2222-3333-4444-555555555555", "GPU-66666666-7777-8888-9999-000000000000"]
B_GPUS = ["MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"]
PORTS = (42200, 42219)
REPO_ROOT = Path(__file__).resolve().parents[2]


def ssh_spec(instance_id: str, keys: list[str], state: str = "running", gpus=()) -> dict:
    return {"id": instance_id, "kind": "gpu_slice", "state": state, "gpus": list(gpus),
            "authorized_keys": keys}


def account_exists(name: str) -> bool:
    return any(line.startswith(f"{name}:") for line in Path("/etc/passwd").read_text().splitlines())


def ssh_run(key: Path, body: dict, command: str, user: str | None = None,
            known_hosts: Path | None = None) -> subprocess.CompletedProcess:
    """The real OpenSSH client, as a user would run it from the instance page's command;
    `known_hosts`: check the server's host key against it (else any key is taken)."""
    checking = (["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"]
                if known_hosts else
                ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(body["port"]), *checking,
         "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-F", "/dev/null",
         f"{user or body['user']}@{body['host']}", command],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


class Agent:
    """The agent's workload side, started the way loop.py starts it, with an SSH port range."""

    def __init__(self, portal, root: Path, address: str | None = "127.0.0.1",
                 ssh_ports: tuple[int, int] | None = PORTS):
        self.portal, self.root = portal, root
        self.stop = threading.Event()
        self.fatal: list[Exception] = []
        self.client = PortalClient(portal.url, timeout_s=5, stop=self.stop,
                                   retry=RetryPolicy(attempts=2, base_s=0.05, cap_s=0.1))
        self.client.authenticate("node-1", "s3cret")
        self.service = WorkloadService(WorkloadOptions(
            workload_root=root, pool_size=0, poll_wait_s=5, address=address, ssh_ports=ssh_ports))
        self.service.prepare()
        seq = iter(range(seq_start(), 2**62))
        lock = threading.Lock()

        def seq_take() -> int:
            with lock:
                return next(seq)

        self.service.start(self.client, seq_take, self.stop, activity_interval_s=1.0,
                           on_fatal=self.fatal.append)

    def server(self, instance_id: str):
        workload = self.service.ssh.workload(instance_id)
        return workload.server if workload else None


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """Two users' key pairs, made by ssh-keygen: "mine" is chosen at launch, "theirs" is not."""
    folder = tmp_path_factory.mktemp("ssh-keys")
    pairs = {}
    for name in ("mine", "theirs"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                        "-f", str(folder / name)], check=True)
        pairs[name] = folder / name
    return pairs


def public(key: Path) -> str:
    return key.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def agent():
    os.environ["NEOCLOUD_AGENT_TOKEN"] = "agent-secret"  # must not reach any session
    with WorkloadPortalServer() as portal:
        agent = Agent(portal, workload_root_new("ssh") / "root")
        try:
            yield agent
        finally:
            os.environ.pop("NEOCLOUD_AGENT_TOKEN", None)
            agent.stop.set()
            agent.service.shutdown(stop_servers=True)
            ssh_root_clear(agent.root)
    assert not agent.fatal


@pytest.fixture(scope="module")
def running_a(agent, keys) -> dict:
    agent.portal.desire(ssh_spec(A, [public(keys["mine"])], gpus=A_GPUS))
    return agent.portal.wait_report(A, "running", timeout=60).body


def test_launch_reports_an_ssh_endpoint_in_the_node_range(agent, running_a):
    states = [body["state"] for body in agent.portal.reports_for(A)]
    assert states[:2] == ["starting", "running"]
    assert running_a["host"] == "127.0.0.1" and PORTS[0] <= running_a["port"] <= PORTS[1]
    assert running_a["user"].startswith("nc-") and account_exists(running_a["user"])
    assert running_a["reason"] is None and running_a["started_at"]
    assert running_a["host_key"].startswith("ssh-ed25519 ")


def test_the_reported_host_key_is_the_one_the_server_proves(agent, keys, running_a, tmp_path):
    # Given a known_hosts line made from the report alone (what the portal can offer its user)
    known = tmp_path / "known_hosts"
    known.write_text(f"[{running_a['host']}]:{running_a['port']} {running_a['host_key']}\n")
    # when the client checks the host key strictly, it connects
    assert ssh_run(keys["mine"], running_a, "true", known_hosts=known).returncode == 0
    # and a different key for that endpoint is taken as a man in the middle
    other = subprocess.run(["ssh-keygen", "-y", "-f", str(keys["theirs"])], check=True,
                           capture_output=True, text=True).stdout.split()[:2]
    known.write_text(f"[{running_a['host']}]:{running_a['port']} {' '.join(other)}\n")
    refused = ssh_run(keys["mine"], running_a, "true", known_hosts=known)
    assert refused.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_the_chosen_key_logs_in_as_the_instance_account_with_only_its_gpus(agent, keys, running_a):
    # Given instance A running, when its user connects with the key chosen at launch
    done = ssh_run(keys["mine"], running_a,
                   'echo "$CUDA_VISIBLE_DEVICES"; id -u; id -un; echo "$HOME"; pwd; '
                   'env | grep -c NEOCLOUD_ || true')
    assert done.returncode == 0, done.stderr
    cuda, uid, name, home, cwd, leaked = done.stdout.split("\n")[:6]
    # then the session sees exactly its GPUs, runs as the instance's account (not root), in its
    # persistent home, and nothing of the agent's environment
    assert cuda == ",".join(A_GPUS)
    server = agent.server(A)
    assert int(uid) == server.run_as.uid != 0 and name == running_a["user"]
    assert home == cwd == str(agent.root / A / "work")
    assert leaked == "0"
    # and the listener itself is root's sshd with the instance's own configuration
    assert proc_uid(server.pid) == 0


def test_another_key_root_and_a_password_are_refused(agent, keys, running_a):
    theirs = ssh_run(keys["theirs"], running_a, "true")
    assert theirs.returncode == 255 and "Permission denied" in theirs.stderr
    as_root = ssh_run(keys["mine"], running_a, "true", user="root")
    assert as_root.returncode == 255 and "Permission denied" in as_root.stderr
    # The server offers public keys only (no password, no keyboard-interactive).
    assert "(publickey)" in theirs.stderr


def test_another_tenant_cannot_read_the_home_and_gets_its_own_port(agent, keys, running_a):
    # Given A's user writes a file in the home, and a second tenant's instance B on the node
    assert ssh_run(keys["mine"], running_a, "echo secret > ~/private.txt").returncode == 0
    # ... and leaves a process running as A's account (its environment holds A's GPUs)
    started = ssh_run(keys["mine"], running_a, "nohup sleep 300 >/dev/null 2>&1 & echo $!")
    a_pid = int(started.stdout.strip())
    assert proc_uid(a_pid) == pwd.getpwnam(running_a["user"]).pw_uid
    agent.portal.desire(ssh_spec(A, [public(keys["mine"])], gpus=A_GPUS),
                        ssh_spec(B, [public(keys["theirs"])], gpus=B_GPUS))
    running_b = agent.portal.wait_report(B, "running", timeout=60).body
    try:
        assert running_b["port"] != running_a["port"] and running_b["user"] != running_a["user"]
        # when B's user tries to read A's home, the slot's sshd files or A's GPUs, or to read or
        # signal A's process, nothing comes
        a_home = agent.root / A / "work"
        slot_a = ssh_slot_dir(agent.root, A)
        done = ssh_run(keys["theirs"], running_b,
                       f'echo "$CUDA_VISIBLE_DEVICES"; cat {a_home}/private.txt; ls {a_home}; '
                       f'cat {slot_a}/host_key; cat {slot_a}/authorized_keys; '
                       f'cat /proc/{a_pid}/environ; kill -TERM {a_pid}; echo end')
        lines = done.stdout.split("\n")
        assert lines[0] == ",".join(B_GPUS) and lines[1] == "end"
        assert done.stderr.count("Permission denied") == 5, done.stderr
        assert "Operation not permitted" in done.stderr and proc_alive(a_pid)
        # and B's key does not open A
        assert ssh_run(keys["theirs"], running_a, "true").returncode == 255
    finally:
        agent.portal.desire(ssh_spec(A, [public(keys["mine"])], gpus=A_GPUS),
                            ssh_spec(B, [public(keys["theirs"])], state="deleted"))
        agent.portal.wait_report(B, "stopped", timeout=30)
    # (the home of a deleted instance goes right after its "stopped" report)
    wait_until(lambda: not (agent.root / B).exists(), 30, "B's home removed")
    assert not account_exists(running_b["user"])


def test_a_restarted_agent_re_adopts_the_running_sshd(agent, keys, running_a):
    # Given A running, when the agent stops (its servers keep running) and a new run starts
    server = agent.server(A)
    reports = len(agent.portal.reports_for(A))
    agent.stop.set()
    agent.service.shutdown()
    assert ssh_run(keys["mine"], running_a, "true").returncode == 0  # sessions go on meanwhile
    second = Agent(agent.portal, agent.root)
    agent.stop, agent.service, agent.fatal = second.stop, second.service, agent.fatal + second.fatal
    # then it reports the same endpoint of the same sshd, and the key still logs in
    again = agent.portal.wait_report(A, "running", timeout=30, after=reports).body
    assert (again["host"], again["port"], again["user"]) == (
        running_a["host"], running_a["port"], running_a["user"])
    assert agent.server(A).pid == server.pid
    done = ssh_run(keys["mine"], again, 'echo "$CUDA_VISIBLE_DEVICES"')
    assert done.returncode == 0 and done.stdout.strip() == ",".join(A_GPUS)


def test_stop_removes_everything_of_the_account_and_a_start_keeps_the_home(agent, keys, running_a):
    # Given a file in A's home and a process of A's user that left its session for good
    started = ssh_run(keys["mine"], running_a,
                      "echo kept > ~/kept.txt; setsid nohup sleep 600 >/dev/null 2>&1 & echo ok")
    assert started.returncode == 0 and "ok" in started.stdout
    server = agent.server(A)
    uid, name, sshd_pid = server.run_as.uid, running_a["user"], server.pid
    reports = len(agent.portal.reports_for(A))

    # When A is stopped
    agent.portal.desire(ssh_spec(A, [public(keys["mine"])], state="stopped"))
    agent.portal.wait_report(A, "stopped", timeout=30, after=reports)
    # then nothing of the account remains: no process, no account, no slot, no listener
    # (a zombie runs nothing: only its parent can reap it, see identity.processes_kill)
    assert not [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                if proc_uid(pid) == uid and proc_alive(pid)]
    assert not account_exists(name) and not Path(f"/proc/{sshd_pid}").exists()
    assert not ssh_slot_dir(agent.root, A).exists()
    assert ssh_run(keys["mine"], running_a, "true").returncode == 255
    home = agent.root / A / "work"
    assert home.stat().st_uid == 0  # held by root while no account serves it

    # When it is started again, it gets a fresh account, and the home still has the file
    reports = len(agent.portal.reports_for(A))
    agent.portal.desire(ssh_spec(A, [public(keys["mine"])], gpus=A_GPUS))
    again = agent.portal.wait_report(A, "running", timeout=60, after=reports).body
    try:
        assert again["user"] != name
        done = ssh_run(keys["mine"], again, "cat ~/kept.txt; stat -c %U ~/kept.txt")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["kept", again["user"]]
    finally:
        processes_kill(uid)  # nothing to kill if the stop did its job; never leave a sleeper


def test_a_start_the_node_cannot_serve_fails_with_the_reason_and_leaves_nothing(keys):
    # Given an agent started without --address and --ssh-ports, when an SSH instance is wanted
    with WorkloadPortalServer() as portal:
        bare = Agent(portal, workload_root_new("ssh-bare") / "root", address=None, ssh_ports=None)
        try:
            portal.desire(ssh_spec(A, [public(keys["mine"])], gpus=A_GPUS))
            failed = portal.wait_report(A, "failed", timeout=30).body
            # then it fails at once with the reason (not silence), and no account is left
            assert "--ssh-ports" in failed["reason"] and "port" not in failed
            assert accounts_of_root(bare.root) == []
        finally:
            bare.stop.set()
            bare.service.shutdown(stop_servers=True)
    assert not bare.fatal


def test_the_agent_process_serves_ssh_on_its_address_and_ports_and_clearing_stops_it(keys):
    # Given the whole agent process started with --address and --ssh-ports
    folder = workload_root_new("ssh-process")
    root = folder / "root"
    with WorkloadPortalServer() as portal:
        portal.desire(ssh_spec(A, [public(keys["mine"])], gpus=A_GPUS))
        agent = subprocess.Popen(
            [sys.executable, "-m", "provisioning.agent.main", "--portal", portal.url,
             "--simulate", "1xH100-80GB", "--hostname", "sim-ssh", "--token", "t",
             "--state-file", str(folder / "state.json"), "--workload-root", str(root),
             "--address", "127.0.0.1", "--ssh-ports", f"{PORTS[1] - 4}-{PORTS[1]}"],
            cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
            stderr=subprocess.PIPE, text=True)
        try:
            # when it is asked for an SSH instance, the key logs in on a port of that range
            running = portal.wait_report(A, "running", timeout=60).body
            assert PORTS[1] - 4 <= running["port"] <= PORTS[1]
            done = ssh_run(keys["mine"], running, 'echo "$CUDA_VISIBLE_DEVICES"')
            assert done.returncode == 0 and done.stdout.strip() == ",".join(A_GPUS)
        finally:
            agent.send_signal(signal.SIGTERM)
            _, stderr = agent.communicate(timeout=30)
        assert agent.returncode == 0, stderr
        # and a clean shutdown leaves the instance running; clearing the root stops it
        assert ssh_run(keys["mine"], running, "true").returncode == 0
        assert workload_root_clear(root) == 1
    assert ssh_run(keys["mine"], running, "true").returncode == 255
    assert accounts_of_root(root) == [] and not account_exists(running["user"])


# --- the spec and the report, as the protocol checks them -----------------------------------


def test_a_key_line_that_would_smuggle_a_second_key_or_options_is_refused(keys):
    good = public(keys["mine"])
    assert spec_from_wire(ssh_spec(A, [good])).authorized_keys == (good,)
    for bad in (good + "\n" + public(keys["theirs"]), 'command="sh" ' + good,
                "-----BEGIN OPENSSH PRIVATE KEY-----", "ssh-ed25519"):
        with pytest.raises(SpecRefused):
            spec_from_wire(ssh_spec(A, [bad]))


def test_an_ssh_endpoint_is_reported_only_when_well_formed():
    key = "ssh-ed25519 " + "A" * 68
    body = report_body("running", ssh_endpoint=("127.0.1.2", 22100, "nc-0123456789ab", key))
    assert [body[f] for f in SSH_ENDPOINT_FIELDS] == ["127.0.1.2", 22100, "nc-0123456789ab", key]
    assert not set(SSH_ENDPOINT_FIELDS) & set(report_body("running"))
    for endpoint in (("node-1", 22100, "nc-a", key), ("127.0.0.1", 22, "nc-a", key),
                     ("127.0.0.1", True, "nc-a", key), ("127.0.0.1", 22100, "-oProxyCommand=x", key),
                     ("127.0.0.1", 22100, "nc-a", key + " x\n@cert-authority * " + key)):
        with pytest.raises(ValueError):
            report_body("running", ssh_endpoint=endpoint)

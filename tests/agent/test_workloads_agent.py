"""The whole agent process running notebooks: long-poll, reports, shutdown, re-adoption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioning.agent.loop import EXIT_REJECTED
from provisioning.agent.main import main
from provisioning.agent.workloads.identity import accounts_of_root
from provisioning.agent.workloads.notebook import workload_root_clear
from provisioning.agent.workloads.process import proc_alive
from tests.agent.test_workloads_support import WorkloadPortalServer, notebook_spec

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTANCE = "a9e47000-0000-4000-8000-000000000001"
GPU = "GPU-SIM-00000000-0000-0000-0000-000000000000"


def agent_start(portal, tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "provisioning.agent.main", "--portal", portal.url,
         "--simulate", "1xH100-80GB", "--hostname", "sim-nb", "--token", "t",
         "--state-file", str(tmp_path / "state.json"), "--telemetry-interval", "1"],
        cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        stderr=subprocess.PIPE, text=True,
    )


def agent_stop(agent: subprocess.Popen) -> str:
    agent.send_signal(signal.SIGTERM)
    _, stderr = agent.communicate(timeout=30)
    assert agent.returncode == 0, stderr
    return stderr


def test_agent_runs_a_notebook_and_re_adopts_it_after_a_restart(tmp_path):
    record = tmp_path / "workloads" / "slots" / INSTANCE / "slot.json"
    agents: list[subprocess.Popen] = []
    with WorkloadPortalServer() as portal:
        try:
            portal.desire(notebook_spec(INSTANCE, gpus=[GPU]))
            agents.append(agent_start(portal, tmp_path))
            first = portal.wait_report(INSTANCE, "running", timeout=90).body
            pid = json.loads(record.read_text())["pid"]
            portal.wait_report(INSTANCE, "running", timeout=10,  # telemetry-interval activity
                               where=lambda body: body["activity"] is not None)
            stderr = agent_stop(agents[0])
            assert "SIGTERM received" in stderr
            assert proc_alive(pid), "a clean agent shutdown leaves instance servers running"

            seen = len(portal.reports_for(INSTANCE))
            agents.append(agent_start(portal, tmp_path))
            again = portal.wait_report(INSTANCE, "running", after=seen, timeout=30).body
            assert [b["state"] for b in portal.reports_for(INSTANCE)[seen:]][0] == "running"
            for key in ("route_slot", "socket", "started_at"):
                assert again[key] == first[key], key
            assert again["seq"] > first["seq"]
            assert json.loads(record.read_text())["pid"] == pid
            account = json.loads(record.read_text())["account"]["name"]  # adopted with the server
            assert account in Path("/etc/passwd").read_text() or os.geteuid() != 0

            portal.desire(notebook_spec(INSTANCE, "stopped"))
            portal.wait_report(INSTANCE, "stopped", after=seen, timeout=20)
            assert not proc_alive(pid)
            assert f"\n{account}:" not in "\n" + Path("/etc/passwd").read_text()  # removed with it
            stderr = agent_stop(agents[1])
            assert "re-adopted" in stderr
        finally:
            for agent in agents:
                if agent.poll() is None:
                    agent.kill()
                    agent.communicate()
            workload_root_clear(tmp_path / "workloads")


def test_clearing_a_workload_root_stops_what_an_agent_left_and_removes_its_accounts(tmp_path):
    root = tmp_path / "workloads"
    record = root / "slots" / INSTANCE / "slot.json"
    with WorkloadPortalServer() as portal:
        # Given an agent that ran a notebook and stopped cleanly, leaving the server running
        portal.desire(notebook_spec(INSTANCE, gpus=[GPU]))
        agent = agent_start(portal, tmp_path)
        try:
            portal.wait_report(INSTANCE, "running", timeout=90)
        finally:
            agent_stop(agent)
        pid = json.loads(record.read_text())["pid"]
        assert proc_alive(pid)
        # When its workload root is cleared (a test's or the run command's teardown)
        stopped = workload_root_clear(root)
    # Then the server is gone, with its slot and (as root) its account
    assert stopped == 1 and not proc_alive(pid) and not record.parent.exists()
    assert accounts_of_root(root) == []


def test_long_poll_401_ends_the_agent_like_a_heartbeat_401(tmp_path, caplog):
    with WorkloadPortalServer() as portal:
        portal.poll_code = 401
        began = time.monotonic()
        code = main(["--portal", portal.url, "--simulate", "1xH100-80GB", "--hostname", "sim-401",
                     "--token", "t", "--state-file", str(tmp_path / "s.json")])
    assert code == EXIT_REJECTED
    assert time.monotonic() - began < 15
    assert "new --token" in caplog.text


def test_a_proxy_group_that_cannot_exist_is_a_usage_error(tmp_path, capsys):
    if os.geteuid() != 0:
        pytest.skip("the proxy group only matters when the agent is root")
    code = main(["--portal", "http://127.0.0.1:9", "--simulate", "1xH100-80GB",
                 "--state-file", str(tmp_path / "s.json"), "--proxy-group", "no:such group"])
    assert code == 2
    assert "--proxy-group 'no:such group'" in capsys.readouterr().err

"""The agent end to end through `main()` against a local stand-in for the portal's transport."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from provisioning.agent import nvml
from provisioning.agent.client import PortalClient, RetryPolicy
from provisioning.agent.inventory import NodeTelemetry
from provisioning.agent.loop import (
    EXIT_REJECTED,
    AgentRun,
    Sources,
    agent_heartbeat,
    sources_simulated,
)
from provisioning.agent.main import main
from tests.agent.portal_double import portal_double_default_script, portal_double_running

REPO_ROOT = Path(__file__).resolve().parents[2]
REGISTER, HEARTBEAT, TELEMETRY = (f"/api/v1/agent/{p}" for p in ("register", "heartbeat",
                                                                  "telemetry"))


def agent_once(portal, state_file: Path, *extra: str) -> int:
    return main(["--portal", portal.url, "--simulate", "2xH100-80GB", "--hostname", "sim-a",
                 "--state-file", str(state_file), "--once", *extra])


def test_first_run_registers_then_heartbeats_and_sends_telemetry(tmp_path):
    state_file = tmp_path / "state.json"
    with portal_double_running() as portal:
        assert agent_once(portal, state_file, "--token", "tok-1") == 0

    assert [request.path for request in portal.requests] == [REGISTER, HEARTBEAT, TELEMETRY]
    register, heartbeat, telemetry = portal.requests
    assert register.body["token"] == "tok-1"
    assert "Authorization" not in register.headers
    inventory = register.body["inventory"]
    assert (inventory["hostname"], inventory["simulated"], len(inventory["gpus"])) == (
        "sim-a", True, 2)
    assert inventory["gpus"][0]["uuid"].startswith("GPU-SIM-")

    node_auth = "Node 6f1c2b1e-0000-4000-8000-000000000001:s3cret"
    assert heartbeat.headers["Authorization"] == telemetry.headers["Authorization"] == node_auth
    assert heartbeat.body["inventory"] is None  # the portal took it with the registration
    assert heartbeat.body["seq"] > 1_700_000_000_000  # starts at the start time in ms
    assert telemetry.body["seq"] == heartbeat.body["seq"] + 1
    assert len(telemetry.body["telemetry"]["gpus"]) == 2

    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    saved = json.loads(state_file.read_text())
    assert saved["node_id"] == "6f1c2b1e-0000-4000-8000-000000000001"
    assert saved["credential"] == "s3cret"


def test_restart_resumes_without_token_and_resends_inventory(tmp_path, monkeypatch):
    state_file = tmp_path / "state.json"
    monkeypatch.setenv("NEOCLOUD_AGENT_TOKEN", "tok-from-env")
    with portal_double_running() as portal:
        assert agent_once(portal, state_file) == 0
        monkeypatch.delenv("NEOCLOUD_AGENT_TOKEN")
        time.sleep(0.005)
        assert agent_once(portal, state_file) == 0

    assert portal.requests[0].body["token"] == "tok-from-env"
    assert [r.path for r in portal.requests] == [REGISTER, HEARTBEAT, TELEMETRY, HEARTBEAT,
                                                 TELEMETRY]
    first_run, second_run = portal.requests_to(HEARTBEAT)
    assert second_run.body["inventory"]["simulated"] is True  # a new run tells it again
    assert second_run.body["seq"] > portal.requests_to(TELEMETRY)[0].body["seq"]


def test_heartbeat_401_exits_with_clear_message(tmp_path, caplog):
    state_file = tmp_path / "state.json"
    script = portal_double_default_script()
    script[HEARTBEAT] = [(401, {"detail": "node credential revoked"})]
    with portal_double_running(script) as portal:
        assert agent_once(portal, state_file, "--token", "tok-1") == EXIT_REJECTED

    assert [r.path for r in portal.requests] == [REGISTER, HEARTBEAT]  # no retries, no telemetry
    assert "HTTP 401: node credential revoked" in caplog.text
    assert f"delete {state_file}" in caplog.text and "new --token" in caplog.text


def test_used_registration_token_exits_with_clear_message(tmp_path, caplog):
    script = {REGISTER: [(400, {"detail": "registration token already used"})]}
    with portal_double_running(script) as portal:
        assert agent_once(portal, tmp_path / "s.json", "--token", "old") == EXIT_REJECTED
    assert "registration token already used" in caplog.text
    assert "ask the portal for a new one" in caplog.text
    assert not (tmp_path / "s.json").exists()


def test_unregistered_without_token_says_what_to_do(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("NEOCLOUD_AGENT_TOKEN", raising=False)
    with portal_double_running() as portal:
        assert agent_once(portal, tmp_path / "s.json") == EXIT_REJECTED
    assert portal.requests == []
    assert "pass --token or set NEOCLOUD_AGENT_TOKEN" in caplog.text


def test_state_of_another_host_is_refused(tmp_path, caplog):
    state_file = tmp_path / "state.json"
    with portal_double_running() as portal:
        assert agent_once(portal, state_file, "--token", "t") == 0
        code = main(["--portal", portal.url, "--simulate", "1xL40S-48GB", "--hostname", "sim-b",
                     "--state-file", str(state_file), "--once"])
    assert code == EXIT_REJECTED
    assert "belongs to sim-a" in caplog.text


def test_bad_simulate_spec_is_a_usage_error(capsys):
    assert main(["--portal", "http://127.0.0.1:9", "--simulate", "8xB300"]) == 2
    assert "bad --simulate spec '8xB300'" in capsys.readouterr().err


def test_without_simulate_and_without_nvml_refuses_to_start(capsys, tmp_path):
    if nvml.nvml_available():
        pytest.skip("this host has NVML: the no-GPU refusal is not reachable here")
    code = main(["--portal", "http://127.0.0.1:9", "--state-file", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "NVML is unavailable on this host" in err
    assert "--simulate" in err  # it says how to simulate, but never does so on its own


def test_capture_without_nvml_fails_clearly(capsys, tmp_path):
    if nvml.nvml_available():
        pytest.skip("this host has NVML: see test_nvml.py for the real capture")
    assert main(["--capture", str(tmp_path / "cap")]) == 1
    assert "cannot capture, NVML is unavailable" in capsys.readouterr().err


def test_heartbeat_sends_inventory_only_when_changed():
    sources = sources_simulated("2xH100-80GB", "sim-a", "/")
    with portal_double_running() as portal:
        client = PortalClient(portal.url, retry=RetryPolicy(attempts=1))
        client.authenticate("n", "c")
        run = AgentRun(client=client, sources=sources, state_path=Path("/nonexistent"),
                       token=None, telemetry_interval_s=10, stop=threading.Event())
        agent_heartbeat(run)
        agent_heartbeat(run)
        changed = sources.inventory_read()
        changed.gpus[1].health, changed.gpus[1].health_reasons = "degraded", ["ECC"]
        run.sources = Sources(inventory_read=lambda: changed,
                              telemetry_read=lambda: NodeTelemetry(collected_at="t"))
        agent_heartbeat(run)
        agent_heartbeat(run)

    sent = [request.body["inventory"] for request in portal.requests_to(HEARTBEAT)]
    assert [inventory is not None for inventory in sent] == [True, False, True, False]
    assert sent[2]["gpus"][1]["health"] == "degraded"
    seqs = [request.body["seq"] for request in portal.requests_to(HEARTBEAT)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4


def test_sigterm_stops_the_loop_cleanly(tmp_path):
    with portal_double_running() as portal:
        agent = subprocess.Popen(
            [sys.executable, "-m", "provisioning.agent.main", "--portal", portal.url,
             "--simulate", "1xH100-80GB", "--hostname", "sim-sig", "--token", "t",
             "--state-file", str(tmp_path / "s.json"), "--telemetry-interval", "0.2"],
            cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
            stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 20
        while len(portal.requests_to(TELEMETRY)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=10)

    assert len(portal.requests_to(TELEMETRY)) >= 2
    assert agent.returncode == 0, stderr
    assert "SIGTERM received" in stderr and "stopping" in stderr
    assert "SIMULATED GPUs" in stderr


def test_agent_never_imports_django_or_the_portal():
    code = ("import sys, provisioning.agent.main, provisioning.agent.loop, "
            "provisioning.agent.simulate, provisioning.agent.nvml\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('django', 'apps', 'portal', 'rest_framework', 'celery'))\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))

"""The workload protocol and the small parts around it, without Jupyter (fast)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from provisioning.agent.client import (
    STATUS_ACCEPTED,
    STATUS_STALE,
    STATUS_UNKNOWN,
    CredentialRejected,
    PortalClient,
    PortalUnavailable,
    RetryPolicy,
)
from provisioning.agent.workloads import kernel_launcher
from provisioning.agent.workloads.notebook import jupyter_args_refusal
from provisioning.agent.workloads.process import proc_alive, proc_descendants, tree_stop
from provisioning.agent.workloads.slot import SlotPaths, name_is_safe, work_link
from provisioning.agent.workloads.spec import DesiredState, spec_parse, specs_parse
from provisioning.agent.workloads.watch import watch_run
from provisioning.protocol import (
    FAILED,
    REASON_LIMIT,
    REPORT_FIELDS,
    RUNNING,
    STARTING,
    STOPPED,
    NotebookSpec,
    report_body,
    report_transition_allowed,
    spec_from_wire,
)
from tests.agent.test_workloads_support import WorkloadPortalServer, notebook_spec

FAST = RetryPolicy(attempts=2, base_s=0.01, cap_s=0.02)
INSTANCE = "1a2b3c4d-0000-4000-8000-000000000001"


def client_for(portal) -> PortalClient:
    client = PortalClient(portal.url, retry=FAST, status_retry=FAST, timeout_s=5)
    client.authenticate("node-1", "s3cret")
    return client


def test_long_poll_sends_version_and_wait_and_returns_the_snapshot():
    with WorkloadPortalServer() as portal:
        portal.desire(notebook_spec(INSTANCE))
        answer = client_for(portal).workloads_poll(0, 0.5)
        began = time.monotonic()
        unchanged = client_for(portal).workloads_poll(answer.version, 0.3)
    assert (answer.version, answer.workloads) == (1, [notebook_spec(INSTANCE)])
    assert unchanged.version == 1 and time.monotonic() - began >= 0.3  # it waited
    assert portal.polls[0] == {"version": "0", "wait": "0.5"}


@pytest.mark.parametrize("code, raised", [(503, PortalUnavailable), (401, CredentialRejected)])
def test_long_poll_errors(code, raised):
    with WorkloadPortalServer() as portal:
        portal.poll_code = code
        with pytest.raises(raised):
            client_for(portal).workloads_poll(0, 1)
    assert len(portal.polls) == 1  # the watch thread owns the retries


@pytest.mark.parametrize("code, outcome", [(202, STATUS_ACCEPTED), (409, STATUS_STALE),
                                           (404, STATUS_UNKNOWN)])
def test_status_report_outcomes(code, outcome):
    with WorkloadPortalServer() as portal:
        portal.status_codes[INSTANCE] = code
        body = {"seq": 7, "state": "stopped"}
        assert client_for(portal).workload_status(INSTANCE, body) == outcome
    assert [(r.instance_id, r.body) for r in portal.reports] == [(INSTANCE, body)]


def test_watch_hands_changes_over_and_stops_on_401():
    desired, applied, fatal = DesiredState(), [], []
    stop = threading.Event()
    with WorkloadPortalServer() as portal:
        portal.desire(notebook_spec(INSTANCE))
        thread = threading.Thread(target=watch_run, args=(client_for(portal), desired,
                                                          applied.append, stop, fatal.append),
                                  kwargs={"wait_s": 0.5})
        thread.start()
        deadline = time.monotonic() + 5
        while not applied and time.monotonic() < deadline:
            time.sleep(0.01)
        portal.desire(notebook_spec(INSTANCE, "stopped"))
        while len(applied) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        portal.poll_code = 401
        thread.join(timeout=5)
    stop.set()
    assert [w[0]["state"] for w in applied] == ["running", "stopped"]
    assert desired.version == 2
    assert len(fatal) == 1 and isinstance(fatal[0], CredentialRejected)
    assert not thread.is_alive()


def test_desired_state_has_one_channel_and_an_unchanged_list_is_not_applied_again():
    # Given a long-poll answer
    desired = DesiredState()
    old, new = [notebook_spec(INSTANCE)], [notebook_spec(INSTANCE, "stopped")]
    assert desired.from_poll(5, old) == old
    # When the same list comes again (under another version) it is not handed over again
    assert desired.from_poll(6, old) is None and desired.version == 6
    # Then a changed list is, and there is no other channel to take a list from
    assert desired.from_poll(7, new) == new and desired.current == new
    assert not hasattr(desired, "from_heartbeat")


def test_the_agent_takes_the_desired_state_only_from_the_long_poll():
    # Given a portal (an older one) whose heartbeat reply still carries a list
    with WorkloadPortalServer() as portal:
        client = client_for(portal)
        # When the agent heartbeats
        reply = client.heartbeat(7, "2026-11-20T00:00:00+00:00", None)
    # Then nothing but the interval (and whether it took telemetry, here none sent) is read from it
    assert vars(reply) == {"heartbeat_interval_s": reply.heartbeat_interval_s, "telemetry_taken": False}


def _sequence_allowed(states: list[str]) -> bool:
    previous = None
    for state in states:
        if not report_transition_allowed(previous, state):
            return False
        previous = state
    return True


def test_the_protocol_knows_which_report_may_follow_which():
    # Given the sequences a supervisor sends: cold start, warm-pool hand-out, a failed start
    # that the user starts again, a stop while starting
    assert _sequence_allowed([STARTING, RUNNING, RUNNING, STOPPED])
    assert _sequence_allowed([RUNNING, RUNNING, FAILED])
    assert _sequence_allowed([STARTING, FAILED, STARTING, RUNNING])
    assert _sequence_allowed([STARTING, STOPPED, RUNNING])
    # Then going back from running to starting is not one of them
    assert not _sequence_allowed([STARTING, RUNNING, STARTING])
    assert not report_transition_allowed(None, "paused")


def test_a_report_body_has_exactly_the_protocol_fields_and_a_bounded_reason():
    body = report_body(FAILED, reason="x" * 5000)
    assert set(body) == set(REPORT_FIELDS) - {"seq"}
    assert len(body["reason"]) == REASON_LIMIT and body["pooled"] is False
    with pytest.raises(ValueError):
        report_body("paused")


def test_a_spec_goes_over_the_wire_and_back_unchanged():
    wire = notebook_spec(INSTANCE, gpus=["GPU-a1"], args=["--ServerApp.iopub_msg_rate_limit=2000"])
    spec = spec_from_wire(wire)
    assert isinstance(spec, NotebookSpec) and spec.wants_running
    assert spec.to_wire() == wire


def test_spec_parsing_refuses_what_it_cannot_act_on_safely(caplog):
    caplog.set_level(logging.INFO)
    assert spec_parse(notebook_spec(INSTANCE, gpus=["GPU-a1", "MIG-GPU-a1/1/0"])).gpus == (
        "GPU-a1", "MIG-GPU-a1/1/0")
    assert spec_parse(notebook_spec("../../etc")) is None
    assert spec_parse(notebook_spec(INSTANCE, gpus=["GPU-1,GPU-2"])) is None
    assert spec_parse(notebook_spec(INSTANCE, state="paused")) is None
    assert spec_parse({"id": INSTANCE, "kind": "ray", "state": "running"}) is None
    assert "kind 'ray' is not one this agent runs" in caplog.text
    assert list(specs_parse([notebook_spec(INSTANCE), "junk"])) == [INSTANCE]
    assert not name_is_safe("slots") and not name_is_safe(".hidden")


@pytest.mark.parametrize("args, refused", [
    ([], None),
    (["--ServerApp.iopub_msg_rate_limit=2000", "--collaborative"], None),
    (["--ServerApp.token="], "ServerApp.token"),
    (["--IdentityProvider.token=x"], "IdentityProvider.token"),
    (["--ip=0.0.0.0"], "ip"),
    (["--ServerApp.root_dir=/"], "ServerApp.root_dir"),
    (["--config=/tmp/evil.py"], "config"),
    (["--KernelSpecManager.allowed_kernelspecs=x"], "KernelSpecManager"),
    (["not-an-option"], "must be --options"),
])
def test_image_jupyter_args_may_not_take_over_what_the_agent_sets(args, refused):
    reason = jupyter_args_refusal(args)
    assert (reason is None) if refused is None else (refused in reason)


def test_kernel_launcher_sets_exactly_the_assigned_gpus(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "ipykernel_launcher.py").write_text(
        "import os, sys; print(repr(os.environ['CUDA_VISIBLE_DEVICES']), sys.argv[1:])")
    assignment = tmp_path / "gpus"
    env = dict(os.environ, PYTHONPATH=str(fake), CUDA_VISIBLE_DEVICES="0,1,2,3")

    def launch() -> str:
        return subprocess.run([sys.executable, kernel_launcher.__file__, str(assignment), "-f",
                               "/x/kernel.json"], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert launch() == "'' ['-f', '/x/kernel.json']"  # no assignment yet: no GPUs, never all
    assignment.write_text("GPU-a, MIG-b\n")
    assert launch() == "'GPU-a,MIG-b' ['-f', '/x/kernel.json']"


def test_work_link_is_repointed_atomically(tmp_path):
    paths = SlotPaths(tmp_path, tmp_path / "sockets")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    work_link(paths, tmp_path / "a")
    work_link(paths, tmp_path / "b")
    assert paths.work.resolve() == tmp_path / "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "work"]


def test_tree_stop_reaches_children_in_sessions_of_their_own():
    # Like Jupyter's kernels: the server's child runs in a new session (its own process group).
    leader = subprocess.Popen(["sh", "-c", "setsid sleep 60 & sleep 60"],
                              start_new_session=True)
    deadline = time.monotonic() + 5
    while len(proc_descendants(leader.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    tree = [leader.pid, *proc_descendants(leader.pid)]
    assert len(tree) >= 3
    tree_stop(leader.pid, leader, grace_s=0.5)
    assert not any(proc_alive(pid) for pid in tree)
    tree_stop(leader.pid, leader, grace_s=0.1)  # again: nothing to do, no error


def test_drivers_and_the_protocol_import_no_app_and_no_django():
    import ast
    from pathlib import Path

    import provisioning

    # Statically: no import of apps.* or django anywhere in the drivers or the protocol
    root = Path(provisioning.__file__).parent
    files = [*sorted((root / "drivers").rglob("*.py")), root / "protocol.py"]
    upward = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            upward += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("apps", "django")]
    assert upward == []
    # And at run time: importing them loads neither
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, provisioning.drivers, provisioning.drivers.agent_notebook, "
         "provisioning.protocol; print(sorted({m.split('.')[0] for m in sys.modules} & {'apps', 'django'}))"],
        capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]"

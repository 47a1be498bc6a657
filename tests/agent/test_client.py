"""The HTTP client: retries on 5xx, gives up on 4xx, and the 0600 state file."""

from __future__ import annotations

import stat

import pytest

from provisioning.agent.client import (
    AgentState,
    CredentialRejected,
    HeartbeatReply,
    PortalClient,
    PortalRejected,
    PortalUnavailable,
    RetryPolicy,
    state_load,
    state_save,
)
from tests.agent.portal_double import portal_double_running

FAST = RetryPolicy(attempts=4, base_s=0.01, cap_s=0.02)
HEARTBEAT = "/api/v1/agent/heartbeat"


def client_for(portal, retry: RetryPolicy = FAST) -> PortalClient:
    client = PortalClient(portal.url, retry=retry, timeout_s=5)
    client.authenticate("node-1", "s3cret")
    return client


def test_heartbeat_retries_5xx_then_succeeds():
    script = {HEARTBEAT: [(503, {"detail": "restarting"}), (502, {}),
                          (200, {"heartbeat_interval_s": 15, "desired_workloads": [{"id": 1}]})]}
    with portal_double_running(script) as portal:
        reply = client_for(portal).heartbeat(7, "2026-11-20T00:00:00+00:00", None)

    # The desired state has one channel, the long-poll: an older portal's list here is not taken.
    assert reply == HeartbeatReply(heartbeat_interval_s=15)
    sent = portal.requests_to(HEARTBEAT)
    assert len(sent) == 3
    assert sent[0].headers["Authorization"] == "Node node-1:s3cret"
    assert sent[0].body == {"seq": 7, "sent_at": "2026-11-20T00:00:00+00:00", "inventory": None}


def test_5xx_gives_up_after_the_policy_s_attempts():
    with portal_double_running({HEARTBEAT: [(500, {})]}) as portal:
        with pytest.raises(PortalUnavailable, match="after 4 tries"):
            client_for(portal).heartbeat(1, "t", None)
    assert len(portal.requests) == 4


def test_connection_refused_is_transient():
    with portal_double_running() as portal:
        url = portal.url
    client = PortalClient(url, retry=RetryPolicy(attempts=2, base_s=0.01, cap_s=0.01))
    client.authenticate("node-1", "s3cret")
    with pytest.raises(PortalUnavailable):
        client.telemetry(1, {"collected_at": "t", "gpus": []})


@pytest.mark.parametrize("status", [401, 403])
def test_credential_rejected_is_not_retried(status):
    with portal_double_running({HEARTBEAT: [(status, {"detail": "unknown node credential"})]}) \
            as portal:
        with pytest.raises(CredentialRejected) as raised:
            client_for(portal).heartbeat(1, "t", None)
    assert len(portal.requests) == 1
    assert (raised.value.status, raised.value.detail) == (status, "unknown node credential")


def test_other_4xx_is_rejected_with_the_portal_s_reason():
    with portal_double_running({HEARTBEAT: [(400, {"detail": "seq must be an integer"})]}) \
            as portal:
        with pytest.raises(PortalRejected, match="HTTP 400: seq must be an integer") as raised:
            client_for(portal).heartbeat(1, "t", None)
    assert not isinstance(raised.value, CredentialRejected)
    assert len(portal.requests) == 1


def test_backoff_is_capped_and_jittered():
    policy = RetryPolicy(base_s=1, cap_s=30)
    delays = [policy.delay_s(retry) for retry in range(12) for _ in range(20)]
    assert all(0 <= delay <= 30 for delay in delays)
    assert len(set(delays)) > 100


def test_state_file_is_0600_and_round_trips(tmp_path):
    path = tmp_path / "nested" / "state.json"
    state = AgentState(portal_url="http://p", hostname="h", node_id="n", credential="c")
    state_save(path, state)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert state_load(path) == state
    state_save(path, state)  # overwriting keeps the mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_state_file_readable_by_others_is_tightened(tmp_path):
    path = tmp_path / "state.json"
    state_save(path, AgentState(portal_url="p", hostname="h", node_id="n", credential="c"))
    path.chmod(0o644)
    assert state_load(path).credential == "c"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_state_missing_is_none(tmp_path):
    assert state_load(tmp_path / "absent.json") is None

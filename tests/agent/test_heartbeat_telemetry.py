"""Telemetry rides on the heartbeat: one request per interval against a portal that takes it
(its reply says how many GPUs it updated), and apart, as before, against one that does not."""

from pathlib import Path

from provisioning.agent.main import main
from tests.agent.portal_double import portal_double_default_script, portal_double_running

REGISTER, HEARTBEAT, TELEMETRY = (f"/api/v1/agent/{p}" for p in ("register", "heartbeat", "telemetry"))


def agent_once(portal, state_file: Path) -> int:
    return main(["--portal", portal.url, "--simulate", "2xH100-80GB", "--hostname", "sim-a",
                 "--state-file", str(state_file), "--once", "--token", "tok-1"])


def test_a_portal_that_takes_telemetry_in_the_heartbeat_gets_one_request(tmp_path):
    # Given a portal that answers gpus_updated to a heartbeat carrying telemetry
    script = portal_double_default_script()
    script[HEARTBEAT] = [(200, {"heartbeat_interval_s": 10, "gpus_updated": 2})]
    with portal_double_running(script) as portal:
        # When the agent runs one round
        assert agent_once(portal, tmp_path / "state.json") == 0

    # Then the heartbeat carried the telemetry and no telemetry report was sent
    assert [request.path for request in portal.requests] == [REGISTER, HEARTBEAT]
    heartbeat = portal.requests[1].body
    assert heartbeat["inventory"] is None
    assert len(heartbeat["telemetry"]["gpus"]) == 2
    assert heartbeat["telemetry"]["gpus"][0]["uuid"].startswith("GPU-SIM-")


def test_an_older_portal_that_ignores_it_still_gets_the_telemetry_apart(tmp_path):
    # Given a portal whose heartbeat reply has no gpus_updated (it ignored the field)
    with portal_double_running() as portal:
        assert agent_once(portal, tmp_path / "state.json") == 0

    # Then the telemetry went apart too, right after, with a later seq
    assert [request.path for request in portal.requests] == [REGISTER, HEARTBEAT, TELEMETRY]
    heartbeat, telemetry = portal.requests[1].body, portal.requests[2].body
    assert telemetry["seq"] > heartbeat["seq"]
    assert len(telemetry["telemetry"]["gpus"]) == 2

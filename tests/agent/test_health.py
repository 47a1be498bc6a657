"""The node health check (provisioning/agent/health.py) on simulated GPUs and real NVML captures."""

import importlib.util
import json

import pytest

from provisioning.agent.health import CUDA_NOT_RUN, node_health_check
from provisioning.agent.main import main
from provisioning.agent.simulate import simulated_inventory_raw, simulation_spec_parse
from provisioning.protocol import F_HEALTH_CHECK
from tests.agent.fixture_files import FIXTURES, fixture_load
from tests.agent.portal_double import portal_double_running


def _simulated(spec_text: str) -> dict:
    return simulated_inventory_raw(simulation_spec_parse(spec_text), "sim-node-01")


def test_healthy_simulated_node_passes_without_running_cuda():
    # given a simulated 8-GPU host with nothing wrong
    result = node_health_check(_simulated("8xH100-80GB"))
    # then it passes, says it is simulated, and the CUDA part is reported as not run
    assert result.passed and result.reasons == []
    assert result.simulated and not result.cuda_ran
    assert "simulated" in result.cuda_note
    assert [gpu.cuda for gpu in result.gpus] == [CUDA_NOT_RUN] * 8
    assert json.loads(json.dumps(result.to_payload()))["passed"] is True


def test_injected_bad_gpu_fails_the_node_with_its_reason():
    # given a simulated host whose GPU 3 has a row-remapping failure
    result = node_health_check(_simulated("8xH100-80GB,bad=3"))
    # then the node fails, only GPU 3 is blamed, and the reason names it
    assert not result.passed
    assert [gpu.index for gpu in result.gpus if not gpu.passed] == [3]
    assert any(r.startswith("GPU 3 (GPU-SIM-") and "row remapping failed" in r
               for r in result.reasons)
    assert any("uncorrected ECC" in r for r in result.reasons)


def test_bad_option_is_validated():
    with pytest.raises(ValueError, match="bad= takes GPU indexes 0..1"):
        simulation_spec_parse("2xH100-80GB,bad=2")
    with pytest.raises(ValueError, match="unknown option"):
        simulation_spec_parse("2xH100-80GB,broken=1")
    assert simulation_spec_parse("4xH100-80GB,bad=3+1,mig=1g.10gb*7").bad_gpus == (1, 3)


def test_real_capture_without_cuda_here_says_so():
    # given a real NVML capture from an H100 host, checked on this machine (no torch/CUDA)
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is importable here: the CUDA part would really run")
    raw = fixture_load(FIXTURES / "nvml_h100_capture.json")["inventory_raw"]
    result = node_health_check(raw)
    # then the NVML part is judged and the CUDA part is plainly not run, never faked
    assert not result.simulated and not result.cuda_ran
    assert result.cuda_note.startswith("no CUDA here")
    assert all(gpu.cuda == CUDA_NOT_RUN for gpu in result.gpus)
    assert result.gpus and result.passed, result.reasons


def test_lost_gpu_fails():
    raw = _simulated("2xH100-80GB")
    raw["gpus"][1]["errors"] = {"memory": "NVMLError_GpuIsLost: GPU is lost"}
    result = node_health_check(raw)
    assert not result.passed
    assert any("GPU 1" in r and "lost" in r for r in result.reasons)


def test_agent_registers_with_its_health_check(tmp_path):
    # given an agent whose simulated GPU 1 is bad, against the portal's transport stand-in
    with portal_double_running() as portal:
        code = main(["--portal", portal.url, "--simulate", "2xH100-80GB,bad=1", "--hostname",
                     "sim-h", "--state-file", str(tmp_path / "state.json"), "--once",
                     "--token", "tok-1"])
    # then the registration carries the failed check with GPU 1's reason
    assert code == 0
    register = portal.requests_to("/api/v1/agent/register")[0]
    health = register.body["inventory"][F_HEALTH_CHECK]
    assert health["passed"] is False and health["simulated"] is True
    assert health["reasons"][0].startswith("GPU 1 (GPU-SIM-")
    assert [gpu["passed"] for gpu in health["gpus"]] == [True, False]
    # and the first heartbeat does not resend the unchanged inventory (the check did not re-run)
    assert portal.requests_to("/api/v1/agent/heartbeat")[0].body["inventory"] is None


def test_the_wire_form_keeps_within_the_portals_limits():
    raw = _simulated("16xH100-80GB,bad=" + "+".join(str(i) for i in range(16)))
    for gpu in raw["gpus"]:
        gpu["retired_pages_pending"] = 1
        gpu["remapped_rows"]["pending"] = True
        gpu["errors"] = {"name": "NVMLError_Unknown: " + "x" * 400}
    payload = node_health_check(raw).to_payload()
    assert len(payload["reasons"]) == 64 and payload["reasons"][-1].startswith("and ")
    assert max(len(reason) for reason in payload["reasons"]) <= 300

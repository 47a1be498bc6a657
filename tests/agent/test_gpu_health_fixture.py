"""What the node health check (provisioning/agent/health.py) found on a real H100 host, captured
by tests/agent/gpu_health_check.py (needs a GPU, so it does not run in CI). These checks keep the
committed evidence honest: they fail if the capture is of simulated GPUs, if CUDA did not really
run, if the verified product's error is not within the check's own tolerance, or if the control
(a deliberately corrupted product) was not caught by that same tolerance."""

import json
from pathlib import Path

import pytest

from provisioning.agent.health import MATMUL_TOLERANCE, node_health_check

FIXTURE = Path(__file__).parent / "fixtures" / "gpu_health_h100.json"


@pytest.fixture(scope="module")
def capture() -> dict:
    return json.loads(FIXTURE.read_text())


def test_the_check_passed_on_real_gpus_with_cuda_run_on_every_one(capture):
    check = capture["health_check"]
    assert check["passed"] is True and check["simulated"] is False and check["cuda_ran"] is True
    uuids = [gpu["uuid"] for gpu in capture["inventory_raw"]["gpus"]]
    assert [gpu["uuid"] for gpu in check["gpus"]] == uuids
    assert all(gpu["cuda"] == "passed" and gpu["reasons"] == [] for gpu in check["gpus"])
    assert capture["inventory_raw"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"


def test_the_verified_product_is_within_tolerance_and_the_corrupted_control_is_not(capture):
    assert max(gpu["cuda_max_error"] for gpu in capture["health_check"]["gpus"]) < MATMUL_TOLERANCE
    control = capture["corruption_control"]
    assert control["caught"] is True and control["relative_error"] > MATMUL_TOLERANCE


def test_the_captured_nvml_read_passes_the_health_rules_offline(capture):
    # The same NVML facts through the same rules, without CUDA (no GPU here): healthy.
    result = node_health_check(capture["inventory_raw"], cuda=False)
    assert result.passed is True and result.cuda_ran is False, result.reasons

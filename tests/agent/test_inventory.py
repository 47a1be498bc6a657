"""The pure parsers from raw NVML reads to the wire format, over committed fixtures.

Every `fixtures/*.json` with an `inventory_raw` key is checked for the invariants; a capture from
a real GPU host (`neocloud-agent --capture`, committed as `nvml_<gpu>_capture.json`) joins in by
being there. The hand-written example also pins down exact values and the health rules.
"""

from __future__ import annotations

import copy
import json

import pytest

from provisioning.agent.inventory import (
    HEALTH_DEGRADED,
    HEALTH_FAILED,
    HEALTH_OK,
    gpu_health,
    inventory_from_nvml,
    telemetry_from_nvml,
)
from tests.agent.fixture_files import ALL_FIXTURES, CAPTURES, HANDWRITTEN, fixture_load


def test_fixtures_are_labelled_with_their_source():
    for path in ALL_FIXTURES:
        source = fixture_load(path)["source"]
        if "handwritten" in path.name:
            assert source == "hand-written example, not captured"
        else:
            assert source.startswith("captured by `neocloud-agent --capture`"), path.name


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda path: path.stem)
def test_inventory_invariants(path):
    fixture = fixture_load(path)
    payload = inventory_from_nvml(fixture["inventory_raw"], fixture["host"]).to_payload()

    assert json.loads(json.dumps(payload)) == payload  # plain JSON, nothing else
    assert payload["simulated"] is False
    assert payload["hostname"] == fixture["host"]["hostname"]
    assert payload["driver_version"] and payload["cuda_version"]
    assert payload["gpus"], "a GPU host reports at least one GPU"
    indexes = [gpu["index"] for gpu in payload["gpus"]]
    assert indexes == sorted(indexes)
    for gpu in payload["gpus"]:
        assert gpu["uuid"].startswith("GPU-") and not gpu["uuid"].startswith("GPU-SIM-")
        assert gpu["name"].startswith("NVIDIA ")
        assert gpu["memory_bytes"] > 10 * 2**30
        assert gpu["health"] in (HEALTH_OK, HEALTH_DEGRADED, HEALTH_FAILED)
        assert (gpu["health"] == HEALTH_OK) == (gpu["health_reasons"] == [])
        for mig in gpu["mig_devices"]:
            assert mig["uuid"].startswith("MIG-")


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda path: path.stem)
def test_telemetry_invariants(path):
    fixture = fixture_load(path)
    inventory = inventory_from_nvml(fixture["inventory_raw"], fixture["host"])
    payload = telemetry_from_nvml(fixture["telemetry_raw"]).to_payload()

    assert json.loads(json.dumps(payload)) == payload
    assert payload["collected_at"].endswith("+00:00")
    assert {gpu["uuid"] for gpu in payload["gpus"]} == {gpu.uuid for gpu in inventory.gpus}
    for gpu in payload["gpus"]:
        assert gpu["utilization_pct"] is None or 0 <= gpu["utilization_pct"] <= 100
        assert gpu["memory_used_bytes"] is None or gpu["memory_used_bytes"] >= 0
        if gpu["power_w"] is not None:
            assert 0 < gpu["power_w"] <= gpu["power_limit_w"] * 1.2


@pytest.mark.parametrize("path", CAPTURES, ids=lambda path: path.stem)
def test_capture_parses_as_it_did_when_captured(path):
    fixture = fixture_load(path)
    payload = inventory_from_nvml(fixture["inventory_raw"], fixture["host"]).to_payload()
    captured = fixture["inventory_payload"]
    identity = ("uuid", "index", "name", "memory_bytes", "pci_bus_id", "health")
    assert [{k: gpu[k] for k in identity} for gpu in payload["gpus"]] == [
        {k: gpu[k] for k in identity} for gpu in captured["gpus"]
    ]


def test_handwritten_inventory_exact_values():
    fixture = fixture_load(HANDWRITTEN)
    inventory = inventory_from_nvml(fixture["inventory_raw"], fixture["host"])

    assert (inventory.hostname, inventory.cpus) == ("gpu-node-07", 224)
    assert (inventory.driver_version, inventory.cuda_version) == ("580.82.07", "13.0")
    # GPU2 fell off the bus: no UUID, so it is not reported (the portal notices it missing).
    assert [gpu.index for gpu in inventory.gpus] == [0, 1, 3]
    healthy, mig, broken = inventory.gpus

    assert healthy.uuid == "GPU-3f2a9c1e-8d4b-4e7a-9c2d-1b5e6f7a8b9c"
    assert healthy.name == "NVIDIA H100 80GB HBM3"
    assert healthy.memory_bytes == 85520809984
    assert healthy.pci_bus_id == "00000000:18:00.0"
    assert (healthy.mig_mode_current, healthy.mig_mode_pending) == (False, False)
    assert (healthy.health, healthy.health_reasons) == (HEALTH_OK, [])

    assert mig.mig_mode_current is True
    assert [(d.profile, d.memory_bytes) for d in mig.mig_devices] == [
        ("3g.40gb", 42144366592), (None, 10468982784)
    ]
    assert mig.health == HEALTH_DEGRADED
    assert mig.health_reasons == [
        "row remapping pending: reset the GPU to apply it",
        "1 uncorrected ECC error(s) since the driver was loaded",
    ]

    assert (broken.mig_mode_current, broken.mig_mode_pending) == (False, True)
    assert broken.health == HEALTH_FAILED
    assert "row remapping failed" in broken.health_reasons[0]


def test_handwritten_telemetry_exact_values():
    telemetry = telemetry_from_nvml(fixture_load(HANDWRITTEN)["telemetry_raw"])

    busy, mig, idle = telemetry.gpus
    assert telemetry.collected_at == "2026-11-20T09:15:02.342+00:00"
    assert (busy.utilization_pct, busy.temperature_c) == (87, 61)
    assert (busy.power_w, busy.power_limit_w) == (512.345, 700.0)
    assert busy.memory_used_bytes == 61203283968
    assert mig.utilization_pct is None  # NVML has none for a MIG-enabled GPU: null, not 0
    assert mig.ecc_uncorrected_volatile == 1
    assert idle.utilization_pct == 0
    assert all(gpu.xid_errors is None for gpu in telemetry.gpus)


def _healthy_gpu() -> dict:
    return copy.deepcopy(fixture_load(HANDWRITTEN)["inventory_raw"]["gpus"][0])


def test_health_ecc_error_degrades():
    gpu = _healthy_gpu()
    gpu["ecc_uncorrected_volatile"] = 2
    assert gpu_health(gpu) == (
        HEALTH_DEGRADED, ["2 uncorrected ECC error(s) since the driver was loaded"]
    )


def test_health_aggregate_ecc_alone_stays_ok():
    # Lifetime counts include errors long since handled by retirement/remapping.
    gpu = _healthy_gpu()
    gpu["ecc_uncorrected_aggregate"] = 5
    assert gpu_health(gpu) == (HEALTH_OK, [])


def test_health_pending_page_retirement_degrades():
    gpu = _healthy_gpu()
    gpu["retired_pages_pending"] = 1
    assert gpu_health(gpu)[0] == HEALTH_DEGRADED


def test_health_remap_failure_fails_and_keeps_other_reasons():
    gpu = _healthy_gpu()
    gpu["remapped_rows"]["failure"] = True
    gpu["ecc_uncorrected_volatile"] = 1
    health, reasons = gpu_health(gpu)
    assert health == HEALTH_FAILED
    assert len(reasons) == 2 and reasons[0].startswith("row remapping failed")


def test_health_lost_gpu_fails():
    gpu = _healthy_gpu()
    gpu["errors"] = {"name": "NVMLError_GpuIsLost: GPU is lost",
                     "memory": "NVMLError_GpuIsLost: GPU is lost"}
    assert gpu_health(gpu) == (
        HEALTH_FAILED,
        ["NVML reports the GPU is lost (fallen off the bus): the host needs attention"],
    )


def test_health_unreadable_core_field_degrades():
    gpu = _healthy_gpu()
    gpu["memory_total_bytes"] = None
    gpu["errors"] = {"memory": "NVMLError_Unknown: Unknown Error"}
    assert gpu_health(gpu) == (
        HEALTH_DEGRADED, ["NVML could not read memory: NVMLError_Unknown: Unknown Error"]
    )


def test_health_unsupported_counters_are_ok():
    gpu = _healthy_gpu()
    gpu.update(ecc_uncorrected_volatile=None, retired_pages_pending=None, remapped_rows=None)
    assert gpu_health(gpu) == (HEALTH_OK, [])

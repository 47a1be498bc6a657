"""The explicitly simulated GPU host: spec parsing, deterministic UUIDs, labelled payloads."""

from __future__ import annotations

import json
import re

import pytest

from provisioning.agent.inventory import inventory_from_nvml, telemetry_from_nvml
from provisioning.agent.simulate import (
    GPU_MODELS,
    simulated_inventory_raw,
    simulated_telemetry_raw,
    simulated_uuid,
    simulation_spec_parse,
)
from tests.agent.fixture_files import CAPTURES, fixture_load

HOST = {"hostname": "sim-node-01", "cpus": 8, "ram_bytes": 64 * 2**30, "disk_bytes": 2**40}
REAL_NVML_UUID = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def simulated_inventory(spec_text: str, hostname: str = "sim-node-01") -> dict:
    spec = simulation_spec_parse(spec_text)
    host = dict(HOST, hostname=hostname)
    return inventory_from_nvml(simulated_inventory_raw(spec, hostname), host).to_payload()


@pytest.mark.parametrize(
    ("text", "count", "name", "memory_mib"),
    [
        ("8xH100-80GB", 8, "NVIDIA H100 80GB HBM3", 81559),
        ("4xH200-141GB", 4, "NVIDIA H200", 143771),
        ("8xA100-80GB", 8, "NVIDIA A100-SXM4-80GB", 81920),
        ("2xL40S-48GB", 2, "NVIDIA L40S", 46068),
        (" 1 X h100-80gb ", 1, "NVIDIA H100 80GB HBM3", 81559),
    ],
)
def test_spec_parse_good(text, count, name, memory_mib):
    spec = simulation_spec_parse(text)
    assert spec.gpu_count == count
    payload = simulated_inventory(text)
    assert [gpu["name"] for gpu in payload["gpus"]] == [name] * count
    assert payload["gpus"][0]["memory_bytes"] == memory_mib * 2**20


def test_spec_parse_mig_layouts():
    assert simulation_spec_parse("8xH100-80GB,mig=1g.10gb*7").mig_layout == (("1g.10gb", 7),)
    mixed = simulation_spec_parse("2xH100-80GB, mig=3g.40gb+2g.20gb+1g.10gb*2")
    assert mixed.mig_layout == (("3g.40gb", 1), ("2g.20gb", 1), ("1g.10gb", 2))
    assert simulation_spec_parse("4xH200-141GB,mig=1g.18gb*7").mig_layout == (("1g.18gb", 7),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected <count>x<model>"),
        ("H100", "expected <count>x<model>"),
        ("8xH100", "unknown GPU model 'H100'"),
        ("8xB200-192GB", "unknown GPU model"),
        ("0xH100-80GB", "GPU count must be 1..16"),
        ("17xH100-80GB", "GPU count must be 1..16"),
        ("8xH100-80GB,ecc=1", "unknown option 'ecc=1'"),
        ("8xH100-80GB,mig=", "unknown option"),
        ("8xH100-80GB,mig=1g.10gb*8", "at most 7 x 1g.10gb fit one GPU"),
        ("8xH100-80GB,mig=1g.18gb", "H100-80GB has no MIG profile '1g.18gb'"),
        ("8xH100-80GB,mig=7g.80gb+1g.10gb", "does not fit one GPU"),
        ("8xH100-80GB,mig=big", "should look like 1g.10gb*7"),
        ("8xH100-80GB,mig=1g.10gb*0", "MIG count must be at least 1"),
        ("2xL40S-48GB,mig=1g.10gb", "L40S-48GB does not support MIG"),
        ("8xH100-80GB,mig=1g.10gb,mig=1g.10gb", "mig= given twice"),
    ],
)
def test_spec_parse_bad(text, message):
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        simulation_spec_parse(text)
    assert f"bad --simulate spec {text!r}" in str(raised.value)


def test_uuids_are_deterministic_and_never_look_real():
    first = simulated_inventory("8xH100-80GB")
    again = simulated_inventory("8xH100-80GB")
    other_host = simulated_inventory("8xH100-80GB", hostname="sim-node-02")

    uuids = [gpu["uuid"] for gpu in first["gpus"]]
    assert uuids == [gpu["uuid"] for gpu in again["gpus"]]
    assert len(set(uuids)) == 8
    assert not set(uuids) & {gpu["uuid"] for gpu in other_host["gpus"]}
    assert uuids[3] == simulated_uuid("sim-node-01", 3)
    for uuid in uuids:
        assert uuid.startswith("GPU-SIM-")
        assert not REAL_NVML_UUID.match(uuid)


def test_payload_is_labelled_simulated():
    payload = simulated_inventory("2xH100-80GB,mig=3g.40gb*2")
    assert payload["simulated"] is True
    assert json.loads(json.dumps(payload))["simulated"] is True
    gpu = payload["gpus"][0]
    assert (gpu["mig_mode_current"], gpu["health"]) == (True, "ok")
    assert [mig["profile"] for mig in gpu["mig_devices"]] == ["3g.40gb", "3g.40gb"]
    assert all(mig["uuid"].startswith("MIG-SIM-") for mig in gpu["mig_devices"])
    assert simulated_inventory("2xL40S-48GB")["gpus"][0]["mig_mode_current"] is None


def test_telemetry_idle_is_zero_and_deterministic():
    spec = simulation_spec_parse("4xH100-80GB")
    raw = simulated_telemetry_raw(spec, "sim-node-01", collected_at="2026-11-20T00:00:00+00:00")
    telemetry = telemetry_from_nvml(raw).to_payload()
    again = telemetry_from_nvml(simulated_telemetry_raw(
        spec, "sim-node-01", collected_at="2026-11-20T00:00:00+00:00")).to_payload()

    assert telemetry == again
    assert [gpu["uuid"] for gpu in telemetry["gpus"]] == [
        simulated_uuid("sim-node-01", index) for index in range(4)
    ]
    for gpu in telemetry["gpus"]:
        assert gpu["utilization_pct"] == 0
        assert 60 <= gpu["power_w"] < 100 and gpu["power_limit_w"] == 700.0
        assert 20 <= gpu["temperature_c"] <= 40
        assert gpu["ecc_uncorrected_volatile"] == 0


def test_telemetry_under_load_is_plausible():
    spec = simulation_spec_parse("2xH100-80GB")
    raw = simulated_telemetry_raw(spec, "sim-node-01", utilization_pct={1: 100})
    idle, busy = telemetry_from_nvml(raw).gpus
    assert (idle.utilization_pct, busy.utilization_pct) == (0, 100)
    assert busy.power_w == busy.power_limit_w
    assert busy.memory_used_bytes > idle.memory_used_bytes
    assert busy.temperature_c > idle.temperature_c


def test_every_model_has_a_real_nvml_name():
    assert {model.nvml_name for model in GPU_MODELS.values()} == {
        "NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA A100-SXM4-80GB", "NVIDIA L40S"
    }


def test_simulated_models_match_real_captures():
    """Where a real capture of a model is committed, the simulation reports the same name/memory."""
    by_name = {model.nvml_name: model for model in GPU_MODELS.values()}
    compared = 0
    for path in CAPTURES:
        fixture = fixture_load(path)
        for gpu in fixture["inventory_raw"]["gpus"]:
            model = by_name.get(gpu.get("name"))
            if model is not None:
                assert model.memory_bytes == gpu["memory_total_bytes"], path.name
                compared += 1
    if not compared:
        pytest.skip("no committed capture of a simulated model yet")

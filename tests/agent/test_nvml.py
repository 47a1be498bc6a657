"""nvml.py: per-field robustness (against a stand-in pynvml) and the real NVML path on a GPU."""

from __future__ import annotations

import json
import types

import pytest

from provisioning.agent import nvml
from provisioning.agent.inventory import inventory_from_nvml, telemetry_from_nvml


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's own class names
    def __str__(self):
        return "Not Supported"


class NVMLError_NotFound(NVMLError):  # noqa: N801
    def __str__(self):
        return "Not Found"


class NVMLError_GpuIsLost(NVMLError):  # noqa: N801
    def __str__(self):
        return "GPU is lost"


class NVMLError_NoPermission(NVMLError):  # noqa: N801
    def __str__(self):
        return "Insufficient Permissions"


def fake_pynvml() -> types.SimpleNamespace:
    """Two GPUs: 0 is MIG-enabled with some unsupported/forbidden fields, 1 has fallen off."""
    calls = {"init": 0, "shutdown": 0}

    def handle(index):
        if index == 1:
            raise NVMLError_GpuIsLost()
        return "gpu0"

    def unsupported(*_):
        raise NVMLError_NotSupported()

    def mig_handle(_parent, slot):
        if slot == 1:
            raise NVMLError_NotFound()
        return f"mig{slot}"

    def forbidden(*_):
        raise NVMLError_NoPermission()

    def ecc(_handle, kind, counter):
        if kind == 0:
            raise NVMLError_NoPermission()
        return 0

    names = {"gpu0": "NVIDIA H100 80GB HBM3", "mig0": "NVIDIA H100 80GB HBM3 MIG 4g.40gb",
             "mig2": "NVIDIA H100 80GB HBM3 MIG 3g.40gb"}
    memory = types.SimpleNamespace(total=85520809984, used=536870912, free=0)
    return types.SimpleNamespace(
        calls=calls,
        NVMLError=NVMLError, NVMLError_NotSupported=NVMLError_NotSupported,
        NVMLError_NotFound=NVMLError_NotFound,
        NVML_MEMORY_ERROR_TYPE_UNCORRECTED=1, NVML_MEMORY_ERROR_TYPE_CORRECTED=0,
        NVML_VOLATILE_ECC=0, NVML_AGGREGATE_ECC=1, NVML_TEMPERATURE_GPU=0,
        NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2,
        nvmlInit=lambda: calls.__setitem__("init", calls["init"] + 1),
        nvmlShutdown=lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1),
        nvmlSystemGetDriverVersion=lambda: "580.159.04",
        nvmlSystemGetCudaDriverVersion_v2=lambda: 13000,
        nvmlSystemGetNVMLVersion=lambda: b"13.580.159.04",
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetUUID=lambda h: {"gpu0": "GPU-0a1b2c3d-0000-4000-8000-000000000000"}.get(
            h, f"MIG-{h}-0000-4000-8000-000000000000"),
        nvmlDeviceGetName=lambda h: names[h],
        nvmlDeviceGetMemoryInfo=lambda h: memory,
        nvmlDeviceGetPciInfo=lambda h: types.SimpleNamespace(busId=b"00000000:18:00.0"),
        nvmlDeviceGetCudaComputeCapability=lambda h: (9, 0),
        nvmlDeviceGetMigMode=lambda h: [1, 1],
        nvmlDeviceGetMaxMigDeviceCount=lambda h: 3,
        nvmlDeviceGetMigDeviceHandleByIndex=mig_handle,
        nvmlDeviceGetGpuInstanceId=lambda h: 1,
        nvmlDeviceGetComputeInstanceId=lambda h: 0,
        nvmlDeviceGetGpuInstanceById=forbidden,
        nvmlDeviceGetEccMode=lambda h: [1, 1],
        nvmlDeviceGetTotalEccErrors=ecc,
        nvmlDeviceGetRetiredPagesPendingStatus=unsupported,
        nvmlDeviceGetRemappedRows=lambda h: (0, 0, 0, 0),
        nvmlDeviceGetUtilizationRates=unsupported,  # as NVML does with MIG on
        nvmlDeviceGetTemperature=lambda h, sensor: 33,
        nvmlDeviceGetPowerUsage=lambda h: 71234,
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 700000,
        nvmlDeviceGetClockInfo=lambda h, clock: {1: 345, 2: 2619}[clock],
        # nvmlDeviceGetArchitecture etc. deliberately absent: an older nvidia-ml-py
    )


@pytest.fixture
def fake(monkeypatch):
    module = fake_pynvml()
    monkeypatch.setattr(nvml, "pynvml", module)
    return module


def test_inventory_survives_unsupported_forbidden_and_lost(fake):
    raw = nvml.nvml_inventory_read()

    assert fake.calls["init"] == fake.calls["shutdown"] == 1
    assert json.loads(json.dumps(raw)) == raw
    assert (raw["driver_version"], raw["cuda_driver_version"], raw["nvml_version"]) == (
        "580.159.04", "13.0", "13.580.159.04")
    gpu, lost = raw["gpus"]
    assert lost == {"index": 1, "uuid": None,
                    "errors": {"handle": "NVMLError_GpuIsLost: GPU is lost"}}

    assert gpu["pci_bus_id"] == "00000000:18:00.0"
    assert gpu["retired_pages_pending"] is None and "retired_pages_pending" not in gpu["errors"]
    assert gpu["ecc_corrected_volatile"] is None
    assert gpu["errors"]["ecc_corrected_volatile"] == (
        "NVMLError_NoPermission: Insufficient Permissions")
    assert gpu["ecc_uncorrected_volatile"] == 0
    assert gpu["remapped_rows"] == {"correctable": 0, "uncorrectable": 0, "pending": False,
                                    "failure": False}
    assert [(m["slot"], m["profile"]) for m in gpu["mig_devices"]] == [(0, "4g.40gb"),
                                                                       (2, "3g.40gb")]

    payload = inventory_from_nvml(raw, {"hostname": "h", "cpus": 1, "ram_bytes": 1,
                                        "disk_bytes": 1}).to_payload()
    assert [g["uuid"] for g in payload["gpus"]] == ["GPU-0a1b2c3d-0000-4000-8000-000000000000"]
    assert payload["gpus"][0]["health"] == "ok"


def test_telemetry_survives_unsupported_and_lost(fake):
    raw = nvml.nvml_telemetry_read()
    assert fake.calls["init"] == fake.calls["shutdown"] == 1
    telemetry = telemetry_from_nvml(raw)
    (gpu,) = telemetry.gpus
    assert (gpu.utilization_pct, gpu.temperature_c, gpu.power_w) == (None, 33, 71.234)
    assert raw["gpus"][0]["clock_sm_mhz"] == 345


def test_init_failure_is_reported_not_raised(monkeypatch):
    module = fake_pynvml()

    def init_fails():
        raise NVMLError_NotFound()

    module.nvmlInit = init_fails
    monkeypatch.setattr(nvml, "pynvml", module)
    assert nvml.nvml_available() is False
    assert "NVML did not initialise" in nvml.nvml_unavailable_reason()


def test_without_nvidia_ml_py_nvml_is_unavailable(monkeypatch):
    monkeypatch.setattr(nvml, "pynvml", None)
    assert "nvidia-ml-py" in nvml.nvml_unavailable_reason()


def test_cuda_version_text():
    assert nvml.cuda_version_text(12040) == "12.4"
    assert nvml.cuda_version_text(13000) == "13.0"
    assert nvml.cuda_version_text(None) is None


def test_mig_profile_from_name():
    assert nvml.mig_profile_from_name("NVIDIA H100 80GB HBM3 MIG 1g.10gb") == "1g.10gb"
    assert nvml.mig_profile_from_name("MIG 1g.20gb+me") == "1g.20gb+me"
    assert nvml.mig_profile_from_name("NVIDIA H100 80GB HBM3") is None


@pytest.mark.gpu
def test_real_nvml_inventory():
    if not nvml.nvml_available():
        pytest.skip("no NVIDIA GPU/NVML on this host: real NVML path not exercised")
    raw = nvml.nvml_inventory_read()
    assert raw["device_count"] >= 1 and raw["driver_version"]
    assert json.loads(json.dumps(raw)) == raw
    for gpu in raw["gpus"]:
        assert gpu["uuid"].startswith("GPU-"), gpu
        assert gpu["name"].startswith("NVIDIA ") and gpu["memory_total_bytes"] > 0
    telemetry = telemetry_from_nvml(nvml.nvml_telemetry_read())
    assert {g.uuid for g in telemetry.gpus} == {g["uuid"] for g in raw["gpus"]}

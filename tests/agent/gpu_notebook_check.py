"""On a GPU host: launch a notebook through the REAL agent (real NVML, real JupyterLab) and run
a CUDA matrix multiply in its kernel, checking that the kernel sees exactly the allocated GPU.

    PYTHONPATH=. python3 -m tests.agent.gpu_notebook_check OUT_DIR

The portal side is the workload protocol's test double (tests/agent/test_workloads_support.py),
because the device machine that has GPUs cannot run the whole portal stack; everything on the
data plane is real. The JSON it writes is committed as tests/agent/fixtures/gpu_notebook_*.json
and checked by tests/agent/test_gpu_notebook_fixture.py.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from provisioning.agent.nvml import nvml_inventory_read
from tests.agent.test_workloads_support import (
    WorkloadPortalServer,
    kernel_execute,
    kernel_start,
    notebook_spec,
)

KERNEL_CODE = r"""
import json, os, time, torch
count = torch.cuda.device_count()
props = torch.cuda.get_device_properties(0)
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
c = a @ b
torch.cuda.synchronize()
start = time.perf_counter()
for _ in range(10):
    c = a @ b
torch.cuda.synchronize()
seconds = (time.perf_counter() - start) / 10
reference = a[:128].float() @ b[:, :128].float()
error = (c[:128, :128].float() - reference).abs().max().item()
scale = reference.abs().max().item()
print(json.dumps({
    "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "device_count": count,
    "device_name": props.name,
    "device_uuid": "GPU-" + str(props.uuid),
    "matmul": "8192x8192x8192 bf16, mean of 10 after 1 warm-up",
    "matmul_ms": round(seconds * 1000, 3),
    "matmul_tflops": round(2 * 8192**3 / seconds / 1e12, 1),
    "max_abs_error_vs_fp32_128x128": round(error, 4),
    "reference_max_abs_128x128": round(scale, 2),
    "kernel_uid": os.getuid(),
}))
"""


def main(out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inventory = nvml_inventory_read()
    gpus = [g["uuid"] for g in inventory["gpus"]]
    allocated = gpus[-1]  # the last GPU, so "device 0 inside the kernel" is a real remapping
    work = Path(tempfile.mkdtemp(prefix="gpu-notebook-"))
    os.chmod(work, 0o755)
    with WorkloadPortalServer() as portal:
        agent = subprocess.Popen(
            [sys.executable, "-m", "provisioning.agent.main", "--portal", portal.url, "--token", "gpu-check",
             "--state-file", str(work / "state.json"), "--workload-root", str(work / "workloads"),
             "--telemetry-interval", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            instance_id = str(uuid.uuid4())
            asked = portal.desire(notebook_spec(instance_id, gpus=[allocated]))
            running = portal.wait_report(instance_id, "running", timeout=120).body
            ready_s = time.monotonic() - asked
            kernel = kernel_start(running)
            output = kernel_execute(running, kernel, KERNEL_CODE, timeout=300)
            seen = json.loads(output.strip().splitlines()[-1])
            portal.desire(notebook_spec(instance_id, state="stopped"))
            portal.wait_report(instance_id, "stopped", timeout=60)
        finally:
            agent.terminate()
            log = agent.communicate(timeout=30)[0]
    result = {
        "source": f"tests/agent/gpu_notebook_check.py on {platform.node()}",
        "driver_version": inventory.get("driver_version"),
        "cuda_driver_version": inventory.get("cuda_driver_version"),
        "host_gpus": gpus,
        "host_gpu_names": [g["name"] for g in inventory["gpus"]],
        "allocated_gpu": allocated,
        "notebook_ready_s": round(ready_s, 2),
        "kernel": seen,
        "kernel_sees_exactly_the_allocated_gpu": seen["device_count"] == 1 and seen["device_uuid"] == allocated,
        "agent_log_tail": log.strip().splitlines()[-15:],
    }
    (out / "gpu_notebook.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if result["kernel_sees_exactly_the_allocated_gpu"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "gpu-notebook-out"))

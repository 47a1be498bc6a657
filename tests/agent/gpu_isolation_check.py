"""On a GPU host: two notebooks of two tenants on the same node, through the REAL agent (real NVML,
real JupyterLab, one account per server), each checked for what it can see and reach.

    PYTHONPATH=. python3 -m tests.agent.gpu_isolation_check OUT_DIR

Instance A is given the host's last GPU, instance B the first one on a host with two or more GPUs,
none on a one-GPU host. Each kernel reports CUDA_VISIBLE_DEVICES, what torch sees and its uid; A
runs a CUDA matrix multiply; B runs the tenant-isolation probes (tests/support/isolation.py)
against A's server and, as the control, against its own. B also reports what a kernel sees when it
drops CUDA_VISIBLE_DEVICES on purpose: the device files are the host's, not a cgroup's, which the
note records. The portal side is the workload protocol's test double, as in gpu_notebook_check.py.
The JSON it writes is committed under tests/agent/fixtures/ and checked by
tests/agent/test_gpu_isolation_fixture.py.
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
from provisioning.agent.workloads import slot
from tests.agent.gpu_notebook_check import KERNEL_CODE
from tests.agent.test_workloads_support import WorkloadPortalServer, kernel_execute, kernel_start, notebook_spec
from tests.support.isolation import probes_code

SEEN = r"""
import json, os, subprocess, sys, torch
env = dict(os.environ)
env.pop("CUDA_VISIBLE_DEVICES", None)
unset = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                       env=env, capture_output=True, text=True)
smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
print(json.dumps({
    "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "device_count": torch.cuda.device_count(),
    "uid": os.getuid(),
    "device_count_with_the_variable_dropped": (unset.stdout.strip() or unset.stderr.strip()[-300:]),
    "nvidia_smi_lines": len([line for line in smi.stdout.splitlines() if line.startswith("GPU ")]),
}))
"""


def server_facts(root: Path, instance_id: str) -> dict:
    """Where the agent put an instance's server, read as root from its slot record."""
    record = slot.record_read(slot.slot_paths(root, instance_id))
    return {
        "pid": record["pid"],
        "uid": record["account"]["uid"],
        "socket": record["socket"],
        "runtime": str(Path(record["socket"]).parent / "rt"),
        "work": str(root / instance_id / "work"),
        "home": str(slot.slot_paths(root, instance_id).home),
    }


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def main(out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inventory = nvml_inventory_read()
    gpus = [g["uuid"] for g in inventory["gpus"]]
    a_gpus, b_gpus = [gpus[-1]], ([gpus[0]] if len(gpus) > 1 else [])
    work = Path(tempfile.mkdtemp(prefix="gpu-isolation-"))
    os.chmod(work, 0o755)
    root = work / "workloads"
    a_id, b_id = str(uuid.uuid4()), str(uuid.uuid4())
    with WorkloadPortalServer() as portal:
        agent = subprocess.Popen(
            [sys.executable, "-m", "provisioning.agent.main", "--portal", portal.url, "--token", "gpu-check",
             "--state-file", str(work / "state.json"), "--workload-root", str(root), "--telemetry-interval", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            asked = portal.desire(notebook_spec(a_id, gpus=a_gpus), notebook_spec(b_id, gpus=b_gpus))
            running_a = portal.wait_report(a_id, "running", timeout=180).body
            running_b = portal.wait_report(b_id, "running", timeout=180).body
            ready_s = time.monotonic() - asked
            a, b = server_facts(root, a_id), server_facts(root, b_id)
            kernel_a, kernel_b = kernel_start(running_a), kernel_start(running_b)
            seen_a = last_json(kernel_execute(running_a, kernel_a, SEEN, timeout=300))
            seen_b = last_json(kernel_execute(running_b, kernel_b, SEEN, timeout=300))
            matmul_a = last_json(kernel_execute(running_a, kernel_a, KERNEL_CODE, timeout=300))
            attack = last_json(kernel_execute(running_b, kernel_b, probes_code(a), timeout=60))
            control = last_json(kernel_execute(running_b, kernel_b, probes_code(b), timeout=60))
            portal.desire(notebook_spec(a_id, state="stopped"), notebook_spec(b_id, state="stopped"))
            portal.wait_report(a_id, "stopped", timeout=60)
            portal.wait_report(b_id, "stopped", timeout=60)
            accounts_left = [line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines()
                             if line.startswith("nc-")]
        finally:
            agent.terminate()
            log = agent.communicate(timeout=30)[0]
    result = {
        "source": f"tests/agent/gpu_isolation_check.py on {platform.node()}",
        "driver_version": inventory.get("driver_version"),
        "host_gpus": gpus,
        "host_gpu_names": [g["name"] for g in inventory["gpus"]],
        "a_gpus": a_gpus,
        "b_gpus": b_gpus,
        "both_ready_s": round(ready_s, 2),
        "a_server": {"uid": a["uid"]},
        "b_server": {"uid": b["uid"]},
        "a_kernel": seen_a,
        "b_kernel": seen_b,
        "a_matmul": matmul_a,
        "b_attacks_a": attack,
        "b_control_on_itself": control,
        "accounts_left_after_stop": accounts_left,
        "agent_log_tail": log.strip().splitlines()[-15:],
    }
    (out / "gpu_isolation.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "gpu-isolation-out"))

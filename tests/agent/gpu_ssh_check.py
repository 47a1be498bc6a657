"""On a GPU host: two GPU instances (kind gpu_slice) of two tenants through the REAL agent (real
NVML, Debian's OpenSSH sshd per instance, one account each), reached with the real `ssh` client.

    PYTHONPATH=. python3 -m tests.agent.gpu_ssh_check OUT_DIR

Instance A is given the host's last GPU, instance B the first one on a host with two or more
GPUs, none on a one-GPU host. Over SSH each runs `nvidia-smi -L`, reports CUDA_VISIBLE_DEVICES,
what torch sees and its uid; A runs a CUDA matrix multiply checked against the CPU. Then: B's key
is refused by A's server, A writes a file in its home, A is stopped and started again (a new sshd
and account, the same home) and the file is still there. The portal side is the workload
protocol's test double, as in gpu_isolation_check.py. The JSON it writes is committed under
tests/agent/fixtures/ and checked by tests/agent/test_gpu_ssh_fixture.py.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from provisioning.agent.nvml import nvml_inventory_read
from provisioning.agent.workloads.ssh import ssh_available
from tests.agent.test_workloads_support import WorkloadPortalServer

PORTS = "42300-42319"

# Run by the instance's own login shell: what the user of a GPU instance would see.
SEEN = r"""
import json, os, shutil, subprocess
smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True) if shutil.which("nvidia-smi") else None
facts = {
    "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "uid": os.getuid(),
    "home": os.path.expanduser("~"),
    "nvidia_smi_L": smi.stdout.strip().splitlines() if smi else None,
}
try:
    import torch
except ImportError as exc:
    torch, facts["torch"] = None, str(exc)
facts["device_count"] = torch.cuda.device_count() if torch else None
if torch and torch.cuda.device_count():
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    product = (a.cuda() @ b.cuda()).cpu().double()
    reference = a.double() @ b.double()
    facts["device_name"] = torch.cuda.get_device_name(0)
    facts["matmul_relative_error"] = float((product - reference).abs().max() / reference.abs().max())
print(json.dumps(facts))
"""


def spec(instance_id: str, keys: list[str], state: str = "running", gpus=()) -> dict:
    return {"id": instance_id, "kind": "gpu_slice", "state": state, "gpus": list(gpus),
            "authorized_keys": keys}


def keypair(folder: Path, name: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)],
                   check=True)
    return folder / name


def ssh(key: Path, body: dict, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(body["port"]), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-F", "/dev/null",
         f"{body['user']}@{body['host']}", command],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def seen(key: Path, body: dict) -> dict:
    done = ssh(key, body, f"{sys.executable} -c '{SEEN}'")
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout)[-600:], "returncode": done.returncode}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    missing = ssh_available() or (None if shutil.which("ssh") else "the ssh client is missing")
    if missing:
        (out / "gpu_ssh.json").write_text(json.dumps({"error": missing}))
        print(missing)
        return 1
    inventory = nvml_inventory_read()
    gpus = [g["uuid"] for g in inventory["gpus"]]
    a_gpus, b_gpus = [gpus[-1]], ([gpus[0]] if len(gpus) > 1 else [])
    work = Path(tempfile.mkdtemp(prefix="gpu-ssh-"))
    os.chmod(work, 0o755)
    mine, theirs = keypair(work, "mine"), keypair(work, "theirs")
    pub = {k: k.with_suffix(".pub").read_text().strip() for k in (mine, theirs)}
    a_id, b_id = str(uuid.uuid4()), str(uuid.uuid4())
    with WorkloadPortalServer() as portal:
        agent = subprocess.Popen(
            [sys.executable, "-m", "provisioning.agent.main", "--portal", portal.url, "--token", "gpu-check",
             "--state-file", str(work / "state.json"), "--workload-root", str(work / "workloads"),
             "--address", "127.0.0.1", "--ssh-ports", PORTS, "--telemetry-interval", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            portal.desire(spec(a_id, [pub[mine]], gpus=a_gpus), spec(b_id, [pub[theirs]], gpus=b_gpus))
            running_a = portal.wait_report(a_id, "running", timeout=120).body
            running_b = portal.wait_report(b_id, "running", timeout=120).body
            seen_a, seen_b = seen(mine, running_a), seen(theirs, running_b)
            refused = ssh(theirs, running_a, "true")
            wrote = ssh(mine, running_a, "echo kept-across-restart > ~/persist.txt && cat ~/persist.txt")
            after = len(portal.reports_for(a_id))
            portal.desire(spec(a_id, [pub[mine]], state="stopped"), spec(b_id, [pub[theirs]], gpus=b_gpus))
            portal.wait_report(a_id, "stopped", timeout=60, after=after)
            after = len(portal.reports_for(a_id))
            portal.desire(spec(a_id, [pub[mine]], gpus=a_gpus), spec(b_id, [pub[theirs]], gpus=b_gpus))
            again_a = portal.wait_report(a_id, "running", timeout=120, after=after).body
            kept = ssh(mine, again_a, "cat ~/persist.txt")
            portal.desire(spec(a_id, [pub[mine]], state="deleted"), spec(b_id, [pub[theirs]], state="deleted"))
            portal.wait_report(a_id, "stopped", timeout=60, after=after)
        finally:
            agent.terminate()
            log = agent.communicate(timeout=30)[0]
    result = {
        "source": f"tests/agent/gpu_ssh_check.py on {platform.node()}",
        "driver_version": inventory.get("driver_version"),
        "host_gpus": gpus,
        "host_gpu_names": [g["name"] for g in inventory["gpus"]],
        "sshd_version": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
        "a_gpus": a_gpus,
        "b_gpus": b_gpus,
        "a_endpoint": {k: running_a[k] for k in ("host", "port", "user")},
        "b_endpoint": {k: running_b[k] for k in ("host", "port", "user")},
        "a_seen": seen_a,
        "b_seen": seen_b,
        "b_key_on_a": {"returncode": refused.returncode, "stderr": refused.stderr.strip()[-300:]},
        "a_wrote": wrote.stdout.strip(),
        "a_endpoint_after_restart": {k: again_a[k] for k in ("host", "port", "user")},
        "a_file_after_restart": kept.stdout.strip(),
        "agent_log_tail": log.strip().splitlines()[-15:],
    }
    (out / "gpu_ssh.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "gpu-ssh-out"))

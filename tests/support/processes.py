"""Real portal processes for integration and browser tests: the ASGI server and a Celery worker,
started as subprocesses on the pytest-django test database."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from devtools.commands import agent_command, beat_command, web_command, worker_command
from devtools.processes import (  # noqa: F401  (re-exported: tests import them from here)
    REPO,
    ManagedProcess,
    database_url,
    free_port,
    spawn,
    wait_http_ok,
    wait_log,
)


def test_database_url() -> str:
    """DATABASE_URL of the test database pytest-django created (settings now name it)."""
    return database_url(settings.DATABASES["default"])


PROXY_SECRET = "test-front-proxy-secret"
# Portal processes under test run a 1 s heartbeat so liveness can be observed in seconds.
TEST_HEARTBEAT_INTERVAL_S = 1
TEST_REQUEUE_AFTER_S = 3


def process_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.setdefault("PORTAL_HEARTBEAT_INTERVAL_S", str(TEST_HEARTBEAT_INTERVAL_S))
    # The reconciler runs every second and acts after a few, so fault tests finish in seconds.
    env.setdefault("PORTAL_RECONCILE_EVERY_S", "1")
    env.setdefault("PORTAL_REQUEUE_AFTER_S", str(TEST_REQUEUE_AFTER_S))
    # Usage is metered and budgets enforced every second, and a reached hard cap stops what runs
    # 2 s after its warning, so the spend-cap test sees the whole sequence in seconds.
    env.setdefault("PORTAL_METER_EVERY_S", "1")
    env.setdefault("PORTAL_BUDGETS_EVERY_S", "1")
    env.setdefault("PORTAL_CAP_STOP_GRACE_S", "2")
    env.pop("PORTAL_DB_POOL_MAX_SIZE", None)  # the portal's own default, as in production
    env.setdefault("PORTAL_PROXY_SECRET", PROXY_SECRET)
    # Stripe: the run's localstripe (STRIPE_API_BASE, set by the pytest plugin, is inherited) and
    # the webhook secret this process registers with it, so the portal verifies what it signs.
    env.setdefault("STRIPE_WEBHOOK_SECRET", settings.STRIPE_WEBHOOK_SECRET)
    env.update(
        DATABASE_URL=test_database_url(), DJANGO_SETTINGS_MODULE="portal.settings", PYTHONUNBUFFERED="1", **extra
    )
    return env


@dataclass
class LivePortal:
    """The portal as a browser sees it: nginx (the front proxy) in front of the ASGI server."""

    url: str
    web: ManagedProcess
    proxy: object = None

    def ws_url(self, path: str) -> str:
        return self.url.replace("http://", "ws://") + path

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.web.stop()


def live_portal_start(log_dir: Path) -> LivePortal:
    from devtools.proxy import front_proxy_start

    port, proxy_port = free_port(), free_port()
    url = f"http://127.0.0.1:{proxy_port}"
    env = process_env(PORTAL_BASE_URL=url)
    web = spawn("web", web_command(port=port), env, log_dir)
    wait_http_ok(f"http://127.0.0.1:{port}/healthz", web)
    try:
        proxy = front_proxy_start(
            root=log_dir / "nginx",
            listen=f"127.0.0.1:{proxy_port}",
            portal=f"127.0.0.1:{port}",
            secret=env["PORTAL_PROXY_SECRET"],
        )
    except Exception:
        web.stop()
        raise
    return LivePortal(url=url, web=web, proxy=proxy)


@dataclass
class WorkerHandle:
    """The test run's Celery worker; a fault test may kill it and start a fresh one."""

    log_dir: Path
    base_url: str
    current: ManagedProcess | None = None
    generation: int = 0

    def start(self) -> ManagedProcess:
        self.generation += 1
        self.current = celery_worker_start(self.log_dir, self.base_url, name=f"worker-{self.generation}")
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()


def celery_worker_start(log_dir: Path, base_url: str, name: str = "worker") -> ManagedProcess:
    env = process_env(PORTAL_BASE_URL=base_url)
    worker = spawn(name, worker_command(solo=True), env, log_dir)
    wait_log(worker, "ready.")
    return worker


def celery_beat_start(log_dir: Path) -> ManagedProcess:
    env = process_env()
    beat = spawn("beat", beat_command(schedule=log_dir / "celerybeat-schedule"), env, log_dir)
    wait_log(beat, "beat: Starting")
    return beat


def workload_root_new(name: str) -> Path:
    """A fresh workload root for a test's agent, under the test data folder rather than pytest's
    tmp_path: pytest makes /tmp/pytest-of-<user> private again (0700) whenever another pytest
    session starts on the host, which takes the way through to their folders away from the
    workload accounts of any notebook running then ("No such directory: …/work")."""
    root = Path(os.environ.get("PORTAL_DATA_DIR", settings.BASE_DIR / ".data" / "test")) / "workloads"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))


def agent_start(
    log_dir: Path,
    *,
    portal_url: str,
    name: str,
    state_file: Path,
    token: str | None,
    simulate: str = "8xH100-80GB",
    notebook_pool: int = 0,
    address: str | None = None,
    ssh_ports: tuple[int, int] | None = None,
) -> ManagedProcess:
    """A real node agent process (provisioning/agent) reporting a simulated host; it runs real
    JupyterLab servers for notebook workloads, `notebook_pool` of them pre-started, and SSH
    instances on `address` and `ssh_ports` when given."""
    workload_root = workload_root_new(name)
    command = agent_command(
        portal_url=portal_url,
        state_file=state_file,
        workload_root=workload_root,
        notebook_pool=notebook_pool,
        token=token,
        simulate=simulate,
        hostname=name,
        telemetry_interval_s=1,
        address=address,
        ssh_ports=ssh_ports,
    )
    agent = spawn(f"agent-{name}", command, process_env(), log_dir)
    agent.leaves_behind = str(workload_root)
    return agent

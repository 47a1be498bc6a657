"""The run command: one process that starts the portal's processes and stops them on Ctrl-C.

    python -m devtools.launcher [--host 127.0.0.1] [--port 8000]

It starts embedded PostgreSQL, Redis and localstripe (unless DATABASE_URL / REDIS_URL /
STRIPE_API_BASE or STRIPE_SECRET_KEY are set), migrates, loads the demo data, then runs the ASGI
web server, a Celery worker, Celery beat and a local fleet of node agents (devtools/fleet.py: by
default two simulated hosts) as separate processes, exactly as they would run on separate
machines. The portal's settings start nothing themselves: every process started here, manage.py
included, gets the servers' URLs in its environment. PORTAL_WEB_WORKERS, PORTAL_CELERY_WORKERS
and PORTAL_CELERY_CONCURRENCY run several web and worker processes on the one database and
Redis, the web processes all behind the front proxy (devtools/scale.py).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

from provisioning.agent.workloads.notebook import workload_root_clear

from .commands import agent_command, beat_command, web_command, worker_command
from .embedded import EmbeddedServiceError, data_dir, postgres_stop, postgres_url, redis_start
from .fleet import FleetError, FleetHost, fleet_from_env
from .processes import REPO, free_port
from .proxy import ProxyError, front_proxy_start
from .scale import ProcessCounts, ScaleError, process_counts_from_env
from .stop_signals import Interrupted, StopSignals
from .stripe_local import localstripe_start, localstripe_webhook_register

DEMO_LOGIN = ("demo@neocloud.localhost", "demo-password-123")
OPERATOR_LOGIN = ("operator@neocloud.localhost", "operator-password-123")


class LaunchError(RuntimeError):
    """Printed as one line; the launcher never shows a traceback for an expected problem."""


@dataclass
class Supervisor:
    env: dict[str, str]
    children: dict[str, subprocess.Popen] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str]) -> None:
        # Each child gets its own process group so that Ctrl-C is handled here, in order.
        self.children[name] = subprocess.Popen(argv, cwd=REPO, env=self.env, start_new_session=True)

    def first_exited(self) -> tuple[str, int] | None:
        for name, child in self.children.items():
            code = child.poll()
            if code is not None:
                return name, code
        return None

    def stop_all(self, timeout: float = 15) -> None:
        for child in self.children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.wait(remaining)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env)
    if result.returncode != 0:
        raise LaunchError(f"'manage.py {' '.join(args)}' failed (exit {result.returncode}); see above")


def _wait_healthy(url: str, supervisor: Supervisor, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = supervisor.first_exited()
        if exited:
            raise LaunchError(f"{exited[0]} exited with code {exited[1]} while starting; see its output above")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise LaunchError(f"the web server did not answer {url}/healthz within {timeout:.0f} s")


# The demo catalog's first region, where the storefront opens: every local host registers there,
# so a request for more GPUs than one node has can be placed across them.
LOCAL_REGION = "us-east-1"


def _agent_argv(env: dict[str, str], url: str, root, host: FleetHost) -> list[str]:
    """One host of the local fleet: its own state file, workload root, address and SSH ports; a
    token (one per host) only until it has registered."""
    folder = host.folder(root)
    state_file = folder / "state.json"
    token = None
    if not state_file.exists():
        created = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "capacity_token_create",
                "--region",
                LOCAL_REGION,
                "--note",
                f"local agent of make run, host {host.number}",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        if created.returncode != 0:
            raise LaunchError(f"could not create the local agent's token: {created.stderr.strip()[-300:]}")
        token = created.stdout.strip()
    return agent_command(
        portal_url=url,
        state_file=state_file,
        workload_root=folder / "workloads",
        token=token,
        # One pre-started JupyterLab makes the first notebook launch take well under a second.
        notebook_pool=int(os.environ.get("PORTAL_NOTEBOOK_POOL", "1")),
        simulate=host.simulate,
        hostname=host.hostname,
        address=host.address,
        ssh_ports=host.ssh_ports,
    )


def _local_notebooks_stop(root, fleet: list[FleetHost]) -> None:
    """Ctrl-C ends the local notebooks too, and removes their accounts. (A real agent leaves them
    running across its own restarts and re-adopts them; on a laptop, stopping the portal should
    stop everything.) The next start brings back, cold, whatever the portal still wants running."""
    for host in fleet:
        workload_root_clear(host.folder(root) / "workloads")


def run(host: str, port: int) -> int:
    if not _port_free(host, port):
        raise LaunchError(f"port {port} on {host} is already in use; stop what uses it or pass --port N")
    try:
        # Before anything starts: a bad value starts nothing.
        fleet = fleet_from_env(dict(os.environ))
        counts = process_counts_from_env(os.environ)
    except (FleetError, ScaleError) as exc:
        raise LaunchError(str(exc)) from None
    signals = StopSignals()
    signals.install()
    try:
        return _run(host, port, signals, fleet, counts)
    finally:
        print("Neocloud portal stopped.", flush=True)


def _web_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports, one per web process."""
    ports: list[int] = []
    while len(ports) < count:
        if (candidate := free_port()) not in ports:
            ports.append(candidate)
    return ports


def _numbered(name: str, index: int) -> str:
    """The first process keeps the plain name it always had (web, worker); the others web-2, …"""
    return name if index == 1 else f"{name}-{index}"


def _run(host: str, port: int, signals: StopSignals, fleet: list[FleetHost], counts: ProcessCounts) -> int:
    root = data_dir()
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    # DEBUG stays off (PORTAL_DEBUG=1 turns it on): a person trying the portal gets its own 404
    # and 500 pages, not Django's technical ones with the URL list, and no process keeps every
    # SQL query in memory. Mail still goes to files and WhiteNoise still serves static/ (looking
    # files up on each request, so an edited stylesheet shows on reload).
    env.setdefault("PORTAL_STATIC_AUTOREFRESH", "1")
    url = f"http://{host}:{port}"
    env.setdefault("PORTAL_BASE_URL", url)
    env.setdefault("PORTAL_EMAIL_DIR", str(root / "mail"))
    # Shared by the web processes and the front proxy for this run only.
    env.setdefault("PORTAL_PROXY_SECRET", secrets.token_urlsafe(32))

    supervisor = Supervisor(env=env)
    started_postgres = started_redis = started_stripe = None
    try:
        # Each server is recorded as soon as it starts: a stop signal waits for the record.
        if not env.get("DATABASE_URL"):
            with signals.shielded():
                env["DATABASE_URL"] = postgres_url(root)
                started_postgres = root
        if not env.get("REDIS_URL"):
            with signals.shielded():
                started_redis = redis_start(root)
                env["REDIS_URL"] = started_redis.url
        if not env.get("STRIPE_API_BASE") and not env.get("STRIPE_SECRET_KEY"):
            with signals.shielded():
                started_stripe = localstripe_start(root, keep_store=True)
            env["STRIPE_API_BASE"] = started_stripe.api_base
            env.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_" + secrets.token_urlsafe(24))
            localstripe_webhook_register(
                api_base=started_stripe.api_base, portal_url=url, secret=env["STRIPE_WEBHOOK_SECRET"]
            )

        _manage(env, "migrate", "--noinput", "-v", "0")
        _manage(env, "demo_load")
        # The browser talks to the front proxy on `port`; the ASGI servers listen on loopback only.
        web_ports = _web_ports(counts.web)
        with signals.shielded():
            for index, web_port in enumerate(web_ports, start=1):
                supervisor.spawn(_numbered("web", index), web_command(port=web_port))
            for index in range(1, counts.workers + 1):
                # One worker keeps Celery's default node name; several need one each.
                name = f"worker{index}" if counts.workers > 1 else None
                supervisor.spawn(_numbered("worker", index), worker_command(concurrency=counts.concurrency, name=name))
            supervisor.spawn("beat", beat_command(schedule=root / "celerybeat-schedule"))
        for web_port in web_ports:
            _wait_healthy(f"http://127.0.0.1:{web_port}", supervisor)
        with signals.shielded():
            proxy = front_proxy_start(
                root=root / "nginx",
                listen=f"{host}:{port}",
                portal=[f"127.0.0.1:{web_port}" for web_port in web_ports],
                secret=env["PORTAL_PROXY_SECRET"],
            )
            supervisor.children["proxy"] = proxy.process
        for fleet_host in fleet:
            agent_argv = _agent_argv(env, url, root, fleet_host)
            with signals.shielded():
                supervisor.spawn(fleet_host.name, agent_argv)
        hosts = "".join(f"    {fleet_host.describe()}\n" for fleet_host in fleet)
        print(
            "\n"
            f"  Neocloud portal is up: {url}/\n"
            f"  Demo login:  {DEMO_LOGIN[0]} / {DEMO_LOGIN[1]}\n"
            f"  Operator:    {OPERATOR_LOGIN[0]} / {OPERATOR_LOGIN[1]}\n"
            f"  API docs:    {url}/api/docs/\n"
            f"  Mail (verification, invitations) is written to {env['PORTAL_EMAIL_DIR']}\n"
            f"  Data folder: {root}\n"
            f"  Processes:   {counts.describe()}\n"
            f"    web on {', '.join(f'127.0.0.1:{web_port}' for web_port in web_ports)}\n"
            f"  Fleet:       {len(fleet)} host(s) in {LOCAL_REGION}, each its own node agent\n"
            f"{hosts}"
            "  Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        while True:
            exited = supervisor.first_exited()
            if exited:
                raise LaunchError(f"{exited[0]} exited with code {exited[1]}; stopping the portal")
            time.sleep(0.5)
    except Interrupted as stop:
        print(f"\nStopping the portal ({stop})…", flush=True)
        return 0
    except (LaunchError, EmbeddedServiceError, ProxyError) as exc:
        # Said before the cleanup's output, so that the reason is not lost above it.
        print(f"portal: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signals.stopping()
        supervisor.stop_all()
        _local_notebooks_stop(root, fleet)
        if started_stripe:
            started_stripe.stop()
        if started_redis:
            started_redis.stop()
        if started_postgres:
            postgres_stop(started_postgres)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("PORTAL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORTAL_PORT", "8000")))
    args = parser.parse_args(argv)
    try:
        return run(args.host, args.port)
    except (LaunchError, EmbeddedServiceError, ProxyError) as exc:
        print(f"portal: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

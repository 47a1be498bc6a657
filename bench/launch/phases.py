"""The two phases of a run: pooled launches, each from a full warm pool; then cold launches from a
restarted agent without a pool, interleaved with the bare Jupyter baseline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .baseline import bare_start_time
from .config import POOL_TIMEOUT_S, BenchError
from .measure import CpuMeter, DetailPoller, Launch, instance_stop, launch_measure
from .processes import Child, Stack, condition_wait
from .startup import agent_pool_ready, agent_start


@dataclass
class Results:
    pooled: list[Launch] = field(default_factory=list)
    cold: list[Launch] = field(default_factory=list)
    bare_lab: list[float] = field(default_factory=list)
    bare_server: list[float] = field(default_factory=list)
    bare_polled: list[float] = field(default_factory=list)  # bare jupyter lab while the client polls a detail API
    stops: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # The detail API the polled baseline reads: the latest launch's, so the read is a real one.
    last_instance: str | None = None


def _launch_measure_and_stop(
    *, results: Results, client: Any, org: str, agent: Child, cpu: CpuMeter, kind: str, index: int, total: int
) -> None:
    """One measured launch of `kind` ("pooled" or "cold"), then its stop; a failure is recorded."""
    label = f"  {kind:6s} {index + 1:2d}/{total}"
    try:
        launch = launch_measure(
            client=client, org=org, name=f"bench-{kind}-{index + 1:02d}", kind=kind, agent=agent, cpu=cpu
        )
    except BenchError as exc:
        results.failures.append(f"{kind} #{index + 1}: {exc}")
        print(f"{label}  FAILED: {exc}", flush=True)
        return
    (results.pooled if kind == "pooled" else results.cold).append(launch)
    results.last_instance = launch.instance_id
    results.stops.append(instance_stop(client=client, org=org, instance_id=launch.instance_id))
    expected = launch.pooled if kind == "pooled" else not launch.pooled
    how = {True: "from the pool", False: "cold start"}[launch.pooled]
    print(
        f"{label}  {launch.seconds:6.3f} s  ({how if expected else 'NOT ' + kind + ': ' + how}; agent acted "
        f"{launch.pickup_ms or float('nan'):.0f} ms after scheduled; stop took {results.stops[-1]:.2f} s)",
        flush=True,
    )


def pooled_phase_run(
    *, results: Results, client: Any, org: str, agent: Child, cpu: CpuMeter, launches: int, pool: int
) -> None:
    print(
        f"\nPooled phase: {launches} launches, each from a full pool of {pool} "
        "(launch, time, stop, wait for stopped and for the pool to refill)",
        flush=True,
    )
    for index in range(launches):
        condition_wait(
            lambda: agent_pool_ready(agent) >= pool,
            timeout=POOL_TIMEOUT_S,
            what="the warm pool to fill",
            watch=[agent],
        )
        _launch_measure_and_stop(
            results=results, client=client, org=org, agent=agent, cpu=cpu, kind="pooled", index=index, total=launches
        )


def cold_phase_run(
    *,
    results: Results,
    stack: Stack,
    client: Any,
    org: str,
    agent: Child,
    portal_url: str,
    cpu: CpuMeter,
    cold: int,
    bare: int,
) -> Child:
    """Restarts `agent` without a pool; returns the restarted agent."""
    print(
        "\nCold phase: restarting the same agent with --notebook-pool 0; cold launches "
        "interleaved with bare `jupyter lab` starts",
        flush=True,
    )
    agent.stop(timeout=40)
    agent = agent_start(stack=stack, portal_url=portal_url, pool=0, token=None, name="agent-cold")
    time.sleep(2)  # let the restarted agent's first round of reports settle
    for index in range(max(cold, bare)):
        if index < bare:
            results.bare_lab.append(bare_start_time(stack=stack, program="lab"))
            print(f"  bare jupyter lab {index + 1}/{bare}  {results.bare_lab[-1]:6.3f} s", flush=True)
            if results.last_instance is not None:
                path = f"/api/v1/organizations/{org}/instances/{results.last_instance}/"
                results.bare_polled.append(
                    bare_start_time(stack=stack, program="lab", poller=DetailPoller(client, path))
                )
                print(
                    f"  bare jupyter lab {index + 1}/{bare}, with the client's 20 ms detail polling "
                    f"running  {results.bare_polled[-1]:6.3f} s",
                    flush=True,
                )
        if index < cold:
            _launch_measure_and_stop(
                results=results, client=client, org=org, agent=agent, cpu=cpu, kind="cold", index=index, total=cold
            )
    for index in range(bare):
        results.bare_server.append(bare_start_time(stack=stack, program="server"))
        print(
            f"  bare jupyter server (no extensions) {index + 1}/{bare}  {results.bare_server[-1]:6.3f} s",
            flush=True,
        )
    return agent

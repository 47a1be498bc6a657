"""The printed figures: percentiles of both phases next to the baseline and the goals, where the time
went in the p50 launches, CPU per launch, and the long-poll failures the logs show."""

from __future__ import annotations

import math
import os
import statistics
import time

from .config import COLD_GOAL_RATIO, POLL_S, POOL_GOAL_S, SIMULATE
from .measure import Launch
from .phases import Results
from .processes import Stack


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 20 samples is the 19th; of 5 samples, the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _summary(values: list[float]) -> str:
    return (
        f"p50 {_percentile(values, 50):6.3f} s   p95 {_percentile(values, 95):6.3f} s   "
        f"min {min(values):6.3f} s   max {max(values):6.3f} s   (n={len(values)})"
    )


def _median_launch(launches: list[Launch]) -> Launch:
    """The launch whose click-to-ready is the (nearest-rank) p50."""
    ordered = sorted(launches, key=lambda item: item.seconds)
    return ordered[max(0, math.ceil(len(ordered) / 2) - 1)]


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


def _baseline_print(results: Results) -> None:
    if results.bare_lab:
        print(
            "\nBASELINE: bare `jupyter lab` start (python -m jupyterlab, the program the agent runs; "
            "spawn → GET /api/status 200):"
        )
        print(f"  {_summary(results.bare_lab)}")
    if results.bare_server:
        print(
            "  for reference, bare `jupyter server` (python -m jupyter_server, JUPYTER_NO_CONFIG=1: "
            "no server extensions):"
        )
        print(f"  {_summary(results.bare_server)}")
    if results.bare_polled:
        print(
            "  for reference, bare `jupyter lab` while the bench client polls a detail API every 20 ms, as it "
            "does during a launch:"
        )
        print(f"  {_summary(results.bare_polled)}")


def _phase_print(label: str, launches: list[Launch], results: Results, pool: int) -> None:
    seconds = [x.seconds for x in launches]
    p50 = _percentile(seconds, 50)
    if label == "POOLED":
        served = sum(1 for x in launches if x.pooled)
        print(
            f"\nPOOLED click-to-ready (agent --notebook-pool {pool}; {served}/{len(launches)} "
            "served from the pool, each launched with the pool full):"
        )
        print(f"  {_summary(seconds)}")
        print(f"  goal p50 < {POOL_GOAL_S:.1f} s: {'met' if p50 < POOL_GOAL_S else 'NOT met'} (p50 {p50:.3f} s)")
    else:
        starts = sum(1 for x in launches if not x.pooled)
        print(
            f"\nCOLD click-to-ready (same agent restarted with --notebook-pool 0; {starts}/"
            f"{len(launches)} cold starts):"
        )
        print(f"  {_summary(seconds)}")
        lab_p50 = _percentile(results.bare_lab, 50) if results.bare_lab else None
        if lab_p50:
            ratio = p50 / lab_p50
            print(
                f"  ratio cold p50 / bare `jupyter lab` p50 = {p50:.3f} / {lab_p50:.3f} = {ratio:.2f}×"
                f"   goal ≤ {COLD_GOAL_RATIO}×: {'met' if ratio <= COLD_GOAL_RATIO else 'NOT met'}"
                f"   (overhead {p50 - lab_p50:+.3f} s)"
            )
        if results.bare_polled:
            polled_p50 = _percentile(results.bare_polled, 50)
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


def results_print(
    *, results: Results, stack: Stack, pool: int, fix_channel_timeout: bool, setup_s: float, began: float
) -> None:
    print("\n" + "=" * 96)
    print(
        f"Results (SIMULATED GPUs: agent --simulate {SIMULATE}; real nginx, uvicorn, Celery, PostgreSQL, "
        "Redis, JupyterLab)"
    )
    print(
        f"set-up {setup_s:.0f} s; the client polls every {POLL_S * 1000:.0f} ms (plus each request's own "
        "time); p50/p95 are nearest-rank"
    )
    _baseline_print(results)
    for label, launches in (("POOLED", results.pooled), ("COLD", results.cold)):
        if launches:
            _phase_print(label, launches, results, pool)
    if results.stops:
        print(
            f"\nstop → stopped (API call to state seen, 100 ms polls): p50 {_percentile(results.stops, 50):.2f} s, "
            f"max {max(results.stops):.2f} s"
        )
    agent_poll_errors = sum(c.text().count("workloads long-poll:") for c in stack.agents())
    web_poll_500s = stack.child("web").text().count("Internal Server Error: /api/v1/agent/workloads")
    print(
        f"agent long-poll failures: {agent_poll_errors} (web logged {web_poll_500s} HTTP 500s on "
        f"/api/v1/agent/workloads){'; web ran with --fix-channel-timeout' if fix_channel_timeout else ''}"
    )
    if results.failures:
        print(f"\n{len(results.failures)} launch(es) FAILED:")
        for failure in results.failures:
            print(f"  {failure}")
    if results.pooled:
        _breakdown(_median_launch(results.pooled), "Where the time goes: the p50 POOLED launch")
    if results.cold:
        _breakdown(_median_launch(results.cold), "Where the time goes: the p50 COLD launch")
    print(f"\nload average at end: {loadavg()}   total {time.monotonic() - began:.0f} s   logs: {stack.logs}")

"""What the heartbeat benchmark prints: per-request costs, the load run, and the figure asked for."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .cpu import Usage

# (kind, label) of the per-request phase, baselines first.
PER_REQUEST_KINDS = [
    ("healthz", "/healthz (baseline: SELECT 1 + Redis PING)"),
    ("auth_noop", "agent no-op (baseline: credential check)"),
    ("heartbeat", "heartbeat, inventory null (steady state)"),
    ("telemetry", "telemetry, 8 GPUs"),
    ("heartbeat_telemetry", "heartbeat carrying telemetry of 8 GPUs"),
    ("heartbeat_inventory", "heartbeat, inventory unchanged (restart)"),
]


@dataclass
class Measured:
    """One phase: the load processes' merged results and the portal's CPU over it."""

    result: dict
    usage: Usage
    elapsed_s: float

    def answered(self, kind: str) -> int:
        return sum(self.result["statuses"].get(kind, {}).values())


def merged(results: list[dict]) -> dict:
    out: dict = {"latency_ms": {}, "statuses": {}, "lag_ms": [], "late_pairs": 0, "unsent_pairs": 0, "cpu_s": 0.0}
    out["accepted_seq"], out["beats"] = {}, {}
    for result in results:
        out["accepted_seq"].update({int(k): v for k, v in result.get("accepted_seq", {}).items()})
        for index, times in result.get("beats", {}).items():
            out["beats"].setdefault(int(index), []).extend(times)
        for kind, values in result["latency_ms"].items():
            out["latency_ms"].setdefault(kind, []).extend(values)
        for kind, counts in result["statuses"].items():
            into = out["statuses"].setdefault(kind, {})
            for status, count in counts.items():
                into[status] = into.get(status, 0) + count
        out["lag_ms"].extend(result["lag_ms"])
        for key in ("late_pairs", "unsent_pairs", "cpu_s"):
            out[key] += result[key]
    return out


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def _statuses(counts: dict[str, int]) -> str:
    return " ".join(f"{status}×{count}" for status, count in sorted(counts.items())) or "-"


def per_request_print(rows: dict[str, Measured], count: int) -> dict[str, tuple[float, float]]:
    """Prints phase 1; returns kind -> (web, PG backends) CPU-ms per request."""
    print(f"\n1) Per-request cost: one keep-alive connection, {count} requests of each kind back to back")
    print(f"{'':<44}{'':>10}{'':>8}  {'CPU-ms per request':-^56}")
    print(
        f"{'request':<44}{'answers':>10}{'p50 ms':>8}  {'web':>8}{'PG':>8}{'web+PG':>8}{'workers':>8}"
        f"{'Redis':>8}{'PG bg':>8}"
    )
    costs = {}
    for kind, label in PER_REQUEST_KINDS:
        phase = rows[kind]
        n = max(1, phase.answered(kind))
        usage = phase.usage
        web, pg = 1000 * usage.web / n, 1000 * usage.pg_backends / n
        costs[kind] = (web, pg)
        p50 = statistics.median(phase.result["latency_ms"][kind] or [0.0])
        print(
            f"{label:<44}{_statuses(phase.result['statuses'][kind]):>10}{p50:>8.2f}  {web:>8.2f}{pg:>8.2f}"
            f"{web + pg:>8.2f}{1000 * usage.workers / n:>8.2f}{1000 * usage.redis / n:>8.2f}"
            f"{1000 * usage.pg_background / n:>8.2f}"
        )
    return costs


def _rates(*, agents: int, interval: float, load: Measured, kinds: list[str]) -> tuple[float, float, int]:
    offered = agents / interval * len(kinds)
    completed = sum(load.answered(kind) for kind in set(kinds))
    return offered, completed / load.elapsed_s, completed


def load_print(*, label: str, agents: int, interval: float, load: Measured, kinds: list[str], connections: str) -> None:
    offered, achieved, completed = _rates(agents=agents, interval=interval, load=load, kinds=kinds)
    usage, result = load.usage, load.result
    rounds = " then ".join(kinds)
    print(f"\n2) {label}: {agents} agents, each {rounds} every {interval:g} s, phase-shifted evenly; {connections}")
    print(
        f"   offered {offered:7.1f} req/s; achieved {achieved:7.1f} req/s over {load.elapsed_s:.1f} s "
        f"({100 * achieved / offered:.1f} % of offered)"
    )
    for kind in dict.fromkeys(kinds):
        latencies = result["latency_ms"].get(kind, [])
        print(
            f"   {kind:<20} answers {_statuses(result['statuses'].get(kind, {})):<14} "
            f"p50 {_percentile(latencies, 0.5):6.1f} ms  p99 {_percentile(latencies, 0.99):7.1f} ms"
        )
    print(
        f"   a due round waited for a free connection: p50 {_percentile(result['lag_ms'], 0.5):.1f} ms, "
        f"p99 {_percentile(result['lag_ms'], 0.99):.1f} ms; more than one interval late: {result['late_pairs']}; "
        f"never sent: {result['unsent_pairs']}"
    )
    minute = 60 / load.elapsed_s
    n = max(1, completed)
    print(f"   {'portal CPU':<22}{'web':>8}{'workers':>9}{'PG':>8}{'Redis':>8}{'total':>8}{'PG bg':>8}")
    for what, scale in (("CPU-s per minute", minute), ("CPU-ms per request", 1000 / n)):
        print(
            f"   {what:<22}{usage.web * scale:>8.2f}{usage.workers * scale:>9.2f}{usage.pg_backends * scale:>8.2f}"
            f"{usage.redis * scale:>8.2f}{usage.portal * scale:>8.2f}{usage.pg_background * scale:>8.2f}"
        )
    print(f"   load generator: {result['cpu_s']:.1f} CPU-s, not the portal's")


def summary_print(
    *, agents: int, interval: float, load: Measured, baseline: Measured, kinds: list[str], costs: dict
) -> None:
    offered, achieved, completed = _rates(agents=agents, interval=interval, load=load, kinds=kinds)
    _, base_achieved, base_completed = _rates(agents=agents, interval=interval, load=baseline, kinds=["healthz"])
    per_request = 1000 * load.usage.portal / max(1, completed)
    per_round = per_request * len(kinds)
    base_per_request = 1000 * baseline.usage.portal / max(1, base_completed)
    full = offered * 60 / 1000  # CPU-s per minute at the full rate, per CPU-ms per request
    derived = achieved < 0.99 * offered
    gpus = agents * 8
    print(
        f"\nPortal CPU (web + workers + PostgreSQL backends + Redis): {agents} agents ({gpus} GPUs), "
        f"each {' then '.join(kinds)} every {interval:g} s"
    )
    print(
        f"   achieved {100 * achieved / offered:.1f} % of the offered {offered:.0f} req/s; "
        f"p99 latency {max(_percentile(load.result['latency_ms'].get(k, []), 0.99) for k in kinds):.0f} ms"
    )
    print(
        f"   per report (what one agent sends each interval): {per_round:.2f} CPU-ms "
        f"({len(kinds)} request(s) × {per_request:.2f}); /healthz baseline {base_per_request:.2f} CPU-ms per request"
    )
    measured = load.usage.portal * 60 / load.elapsed_s
    print(f"   measured at the achieved {achieved:.1f} req/s: {measured:.1f} CPU-s/min")
    label = "DERIVED: CPU-ms per request × the full rate" if derived else "measured"
    print(
        f"   at the full {offered:.0f} req/s ({label}): {per_request * full:.1f} CPU-s/min, "
        f"{per_request * full / 60:.2f} cores; the /healthz baseline at the same rate: "
        f"{base_per_request * full:.1f} CPU-s/min"
    )
    if "heartbeat" in kinds and "telemetry" in kinds:
        per_kind = agents / interval * 60 / 1000
        print("   by kind at the full rate, DERIVED from the per-request costs (1), web + PG only:")
        for kind, name in (("heartbeat", "heartbeats"), ("telemetry", "telemetry"), ("auth_noop", "no-op floor")):
            web, pg = costs[kind]
            print(f"     {name:<12} ({web:.2f} web + {pg:.2f} PG) CPU-ms = {(web + pg) * per_kind:.1f} CPU-s/min")

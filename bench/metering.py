"""Metering and invoicing benchmark: usage ingest, and closing a month into invoices at Stripe.

    .venv/bin/python -m bench.metering [--runs 10000] [--passes 3] [--accounts 1000]
                                       [--instances 10] [--records 30] [--push 1000] [--seed 7]

It sets up its own database ("bench_metering" on the embedded PostgreSQL under .data/bench unless
PORTAL_DATA_DIR says otherwise) and its own localstripe, and prints (no assertions):

(a) ingest: `--runs` open runs metered `--passes` times by usage_open_runs_meter (the beat task's
    function: batches of 500 runs, one transaction each), as records written per second; baselines
    in the same run: one more pass run by run (usage_run_meter: a transaction, lock, insert and
    update per run, as the meter worked before), and the raw INSERT rate of as many UsageRecord
    rows through one bulk_create.
(b) month close: `--accounts` accounts × `--instances` instances, each with `--records` usage
    records last month; invoices_due_create builds every monthly invoice in PostgreSQL (lines,
    a tie row per record, credits), then invoice_push_run pushes `--push` of them to localstripe
    (items, invoice, finalize, pay). Baseline: one GROUP BY over the month's records, the least any
    invoice builder must read. A sum check compares the invoices with that GROUP BY.
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


def bench_ingest(*, runs: int, passes: int, seed: int) -> dict:
    from django.utils import timezone

    from apps.billing.models import MeteredRun, UsageRecord
    from apps.billing.services.metering import usage_open_runs_meter

    rng = random.Random(seed)
    _reset()
    instances = _instances(max(runs // 10, 1), 10, old_accounts=True)[:runs]
    start = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    MeteredRun.objects.bulk_create(
        (
            MeteredRun(
                instance=i,
                organization_id=i.organization_id,
                project_id=i.project_id,
                flavor_id=i.flavor_id,
                hourly_amount=Decimal(rng.randint(100_000, 40_000_000)).scaleb(-6),
                currency="USD",
                started_at=start - timedelta(seconds=rng.randint(0, 59)),
            )
            for i in instances
        ),
        batch_size=5000,
    )
    figures = {"runs": len(instances), "passes": []}
    for k in range(passes):
        cpu = _cpu_seconds()
        began = time.perf_counter()
        written = usage_open_runs_meter(now=start + timedelta(seconds=60 * (k + 1)))
        wall = time.perf_counter() - began
        cpu = [a - b for a, b in zip(_cpu_seconds(), cpu, strict=True)]
        figures["passes"].append((written, wall, cpu))
    # Baseline 1: the same pass run by run (a transaction, a lock, an insert, an update each).
    from apps.billing.services.metering import usage_run_meter

    began = time.perf_counter()
    written = sum(
        len(usage_run_meter(run_id=pk, now=start + timedelta(seconds=60 * (passes + 1))))
        for pk in MeteredRun.objects.filter(ended_at__isnull=True).values_list("pk", flat=True)
    )
    figures["per_run"] = (written, time.perf_counter() - began)
    # Baseline 2: the same number of rows, one bulk INSERT (no per-run transaction, lock or update).
    runs_by_id = list(MeteredRun.objects.all()[: len(instances)])
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
        for r in runs_by_id
    ]
    began = time.perf_counter()
    UsageRecord.objects.bulk_create(rows, batch_size=5000)
    figures["baseline"] = (len(rows), time.perf_counter() - began)
    return figures


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
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--instances", type=int, default=10, help="instances per account")
    parser.add_argument("--records", type=int, default=30, help="usage records per instance last month")
    parser.add_argument("--push", type=int, default=1_000, help="how many of the invoices to push to localstripe")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = _setup()
    load = os.getloadavg()[0]
    try:
        print(f"(a) metering {args.runs:,} open runs × {args.passes} passes …", flush=True)
        ingest = bench_ingest(runs=args.runs, passes=args.passes, seed=args.seed)
        print(f"(b) closing a month of {args.accounts:,} accounts × {args.instances} instances …", flush=True)
        close = bench_close(
            accounts=args.accounts, per_account=args.instances, records=args.records, push=args.push, seed=args.seed
        )
    finally:
        for service in started:
            service.stop()

    print(f"\n{os.cpu_count()} CPUs; load average when the benchmark started: {load:.1f}")
    print(f"\n(a) usage ingest: {ingest['runs']:,} open runs, usage_open_runs_meter")
    for k, (written, wall, (own, pg)) in enumerate(ingest["passes"], 1):
        print(
            f"  pass {k}: {written:,} records in {wall:.2f} s = {written / wall:,.0f} records/s "
            f"(CPU ms per record: Python {1000 * own / max(written, 1):.2f}, "
            f"PostgreSQL {1000 * pg / max(written, 1):.2f})"
        )
    n, wall = ingest["per_run"]
    print(
        f"  baseline, the same pass run by run (usage_run_meter per run): {n:,} records in {wall:.2f} s = "
        f"{n / wall:,.0f} records/s"
    )
    n, wall = ingest["baseline"]
    print(f"  baseline, one bulk INSERT of {n:,} UsageRecord rows: {wall:.2f} s = {n / wall:,.0f} rows/s")

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

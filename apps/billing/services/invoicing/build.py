"""Building invoices from usage records: the monthly invoice of the previous calendar month, and
threshold invoices for young accounts. One line per (instance, unit price), rounded once; credits
before the card; every record tied to its line (the database bills a record once)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.accounts.models import Organization
from apps.instances.models import Instance
from portal.ui.money import money_format

from ...models import (
    BillingAccount,
    BillingEvent,
    Invoice,
    InvoicedUsage,
    InvoiceKind,
    InvoiceLine,
    InvoiceLineKind,
    InvoiceStatus,
    MeteredRun,
    UsageRecord,
)
from ...money import usage_cost, usage_cost_exact
from ...selectors.usage import month_bounds
from ..metering import usage_open_runs_cut
from ..accounts import billing_account_get_or_create, billing_account_lock
from ..credits import credits_apply
from .reservations import (
    organizations_with_charges,
    reservation_charges_exact,
    reservation_charges_uninvoiced,
    reservation_lines_add,
)
from .status import invoice_transition

INVOICED_BATCH = 5000


def invoice_number_next(*, at: datetime) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('billing_invoice_number_seq')")
        (n,) = cursor.fetchone()
    return f"INV-{at:%Y}-{at:%m}-{n:06d}"


def records_uninvoiced(*, organization_id: int, before: datetime):
    """Records of the organization starting before `before` that no invoice line holds yet. Late
    corrections of an already invoiced month are among them and go on the next invoice."""
    billed = InvoicedUsage.objects.filter(record_id=OuterRef("pk"))
    return UsageRecord.objects.filter(organization_id=organization_id, period_start__lt=before).filter(~Exists(billed))


@dataclass
class _Group:
    instance_id: object
    hourly_amount: Decimal
    project_id: int
    seconds: int = 0
    record_ids: list[int] = field(default_factory=list)
    first_start: datetime | None = None


@dataclass(frozen=True)
class LinePlan:
    """One usage line as an invoice of some rows bills it: its records, instance and amount."""

    group: _Group
    instance: Instance
    amount: Decimal


def invoice_lines_plan(*, rows: list, currency: str) -> list[LinePlan]:
    """The usage lines of an invoice of `rows` (see `_rows`), in their order: one per (instance,
    unit price), rounded once. The builder writes them; the billing overview's preview of the
    month shows them, so the two agree to the cent. Rows may be sums of records (same instance,
    price and project): a line adds their seconds either way."""
    groups: dict[tuple, _Group] = {}
    for pk, instance_id, hourly, seconds, project_id, start, _end in rows:
        key = (instance_id, hourly)
        group = groups.get(key) or groups.setdefault(key, _Group(instance_id, hourly, project_id))
        group.seconds += seconds
        group.record_ids.append(pk)
        group.first_start = min(group.first_start or start, start)
    names = {
        i.pk: i
        for i in Instance.objects.filter(pk__in={g.instance_id for g in groups.values()}).select_related("flavor")
    }
    ordered = sorted(groups.values(), key=lambda g: (names[g.instance_id].name, g.first_start, g.hourly_amount))
    return [
        LinePlan(
            group=g,
            instance=names[g.instance_id],
            amount=usage_cost(seconds=g.seconds, hourly_amount=g.hourly_amount, currency=currency),
        )
        for g in ordered
    ]


def _invoice_build(
    *, account: BillingAccount, kind: str, period_start: datetime, period_end: datetime, rows: list, now: datetime,
    charges: list | None = None,
) -> Invoice:
    plan = invoice_lines_plan(rows=rows, currency=account.currency)
    invoice = Invoice.objects.create(
        account=account,
        number=invoice_number_next(at=now),
        kind=kind,
        period_start=period_start,
        period_end=period_end,
        currency=account.currency,
        idempotency_key=f"inv-{uuid.uuid4().hex}",
        created_at=now,
        status_changed_at=now,
    )
    lines = [
        InvoiceLine(
            invoice=invoice,
            kind=InvoiceLineKind.USAGE,
            instance_id=p.group.instance_id,
            project_id=p.group.project_id,
            description=p.instance.name,
            flavor_name=p.instance.flavor.name[:120],
            seconds=p.group.seconds,
            hourly_amount=p.group.hourly_amount,
            amount=p.amount,
        )
        for p in plan
    ]
    InvoiceLine.objects.bulk_create(lines)
    ties = [
        InvoicedUsage(record_id=pk, line=line) for line, p in zip(lines, plan, strict=True) for pk in p.group.record_ids
    ]
    # A record some other invoice already holds makes this INSERT fail and the whole invoice roll back.
    InvoicedUsage.objects.bulk_create(ties, batch_size=INVOICED_BATCH)
    lines += reservation_lines_add(invoice=invoice, charges=charges or [])  # reservations' windows (reservations.py)
    subtotal = sum((line.amount for line in lines), Decimal("0.00"))
    credits = credits_apply(invoice=invoice, up_to=subtotal)
    if credits > 0:
        InvoiceLine.objects.create(
            invoice=invoice, kind=InvoiceLineKind.CREDIT, description="Credits applied", amount=-credits
        )
    total = subtotal - credits
    Invoice.objects.filter(pk=invoice.pk).update(subtotal=subtotal, credits_applied=credits, total=total)
    invoice.refresh_from_db()
    BillingEvent.objects.create(
        account=account,
        kind="invoice.created",
        message=f"{invoice.number}: {invoice.get_kind_display().lower()} invoice of "
        f"{money_format(total, invoice.currency)} ({len(lines)} lines)",
    )
    if total <= 0:
        # Credits covered it (or nothing was used): there is nothing to charge, so nothing goes to Stripe.
        return invoice_transition(
            invoice_id=invoice.pk,
            to_status=InvoiceStatus.PAID,
            expected_from=[InvoiceStatus.DRAFT],
            message="nothing to charge",
            paid_at=now,
        )
    _push_on_commit(invoice.pk)
    return invoice


def _push_on_commit(invoice_id: int) -> None:
    from ...tasks.invoicing import invoice_push

    transaction.on_commit(lambda: invoice_push.delay(invoice_id))


def _rows(records) -> list:
    return list(
        records.order_by("period_start", "pk").values_list(
            "pk", "instance_id", "hourly_amount", "seconds", "project_id", "period_start", "period_end"
        )
    )


@transaction.atomic
def invoice_monthly_create(
    *, account: BillingAccount, month_start: datetime, now: datetime | None = None
) -> Invoice | None:
    """The invoice of the calendar month starting `month_start`: every unbilled record that starts
    before the month ends. Idempotent: the month's invoice is made once (and a unique constraint
    says so to a concurrent run). None when there is nothing to bill."""
    now = now or timezone.now()
    # Invoices of one account are built one at a time: credits are spent once, numbers stay ordered.
    account = billing_account_lock(account=account)
    month_start, month_end = month_bounds(month_start)
    existing = Invoice.objects.filter(account=account, kind=InvoiceKind.MONTHLY, period_start=month_start).first()
    if existing is not None:
        return existing
    rows = _rows(records_uninvoiced(organization_id=account.pk, before=month_end))
    charges = list(reservation_charges_uninvoiced(organization_id=account.pk, before=month_end))
    if not rows and not charges:
        return None
    return _invoice_build(
        account=account, kind=InvoiceKind.MONTHLY, period_start=month_start, period_end=month_end, rows=rows, now=now,
        charges=charges,
    )


def account_is_young(*, account: BillingAccount, now: datetime) -> bool:
    return account.created_at > now - timedelta(days=settings.BILLING["YOUNG_ACCOUNT_DAYS"])


@transaction.atomic
def invoice_threshold_create(*, account: BillingAccount, now: datetime | None = None) -> Invoice | None:
    """A young account pays as it goes: once its unbilled usage reaches BILLING["THRESHOLD_AMOUNT"]
    it is invoiced at once, so a new card's first month cannot run up an unbounded bill."""
    now = now or timezone.now()
    # Invoices of one account are built one at a time: credits are spent once, numbers stay ordered.
    account = billing_account_lock(account=account)
    if not account_is_young(account=account, now=now):
        return None
    # The meter writes finished hours only; a pay-as-you-go invoice bills up to now.
    usage_open_runs_cut(organization_id=account.pk, now=now)
    rows = _rows(records_uninvoiced(organization_id=account.pk, before=now))
    charges = list(reservation_charges_uninvoiced(organization_id=account.pk, before=now))
    exact = sum((usage_cost_exact(seconds=r[3], hourly_amount=r[2]) for r in rows), Decimal(0))
    exact += reservation_charges_exact(charges)
    if not (rows or charges) or exact < settings.BILLING["THRESHOLD_AMOUNT"]:
        return None
    return _invoice_build(
        account=account,
        kind=InvoiceKind.THRESHOLD,
        period_start=min([r[5] for r in rows] + [c.period_start for c in charges]),
        period_end=max([r[6] for r in rows] + [c.period_end for c in charges]),
        rows=rows,
        now=now,
        charges=charges,
    )


def organizations_to_close(*, month_start: datetime, month_end: datetime) -> list[int]:
    """Organizations that ran something in the month and have no monthly invoice for it yet.
    Read from runs, not records: far fewer rows, and the same answer."""
    ran = MeteredRun.objects.filter(started_at__lt=month_end).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gte=month_start)
    )
    invoiced = Invoice.objects.filter(
        account_id=OuterRef("organization_id"), kind=InvoiceKind.MONTHLY, period_start=month_start
    )
    ran_ids = set(ran.filter(~Exists(invoiced)).values_list("organization_id", flat=True).distinct())
    reserved = organizations_with_charges(month_start=month_start, month_end=month_end)
    already = set(
        Invoice.objects.filter(account_id__in=reserved, kind=InvoiceKind.MONTHLY, period_start=month_start)
        .values_list("account_id", flat=True)
    )
    return sorted(ran_ids | (reserved - already))


def young_accounts_over_threshold(*, now: datetime) -> list[int]:
    """Young accounts whose unbilled usage and reservation charges (exact, before rounding) reached
    the threshold, counting the seconds of open runs not written yet (the meter writes finished
    hours only, so without them the threshold could be passed up to an hour late)."""
    young = BillingAccount.objects.filter(
        created_at__gt=now - timedelta(days=settings.BILLING["YOUNG_ACCOUNT_DAYS"])
    ).values_list("pk", flat=True)
    sql = """
        SELECT organization_id FROM (
            SELECT r.organization_id, r.seconds * r.hourly_amount AS cost FROM billing_usagerecord r
            WHERE r.organization_id = ANY(%(ids)s) AND r.period_start < %(now)s
              AND NOT EXISTS (SELECT 1 FROM billing_invoicedusage u WHERE u.record_id = r.id)
            UNION ALL
            SELECT c.organization_id, c.seconds * c.hourly_amount FROM billing_reservationcharge c
            WHERE c.organization_id = ANY(%(ids)s) AND c.period_start < %(now)s
              AND NOT EXISTS (SELECT 1 FROM billing_invoicedreservationcharge i WHERE i.charge_id = c.id)
            UNION ALL
            SELECT m.organization_id,
                   GREATEST(FLOOR(EXTRACT(EPOCH FROM (%(now)s - m.started_at))) - m.metered_seconds, 0)
                   * m.hourly_amount
            FROM billing_meteredrun m
            WHERE m.organization_id = ANY(%(ids)s) AND m.ended_at IS NULL AND m.started_at < %(now)s
        ) unbilled
        GROUP BY organization_id HAVING SUM(cost) / 3600 >= %(threshold)s
    """
    ids = list(young)
    if not ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, {"ids": ids, "now": now, "threshold": settings.BILLING["THRESHOLD_AMOUNT"]})
        return [row[0] for row in cursor.fetchall()]


def invoices_due_create(*, now: datetime | None = None) -> list[Invoice]:
    """Close last month for every organization not yet invoiced for it, and invoice young accounts
    over the threshold. Each invoice is its own transaction, so one bad account stops no other."""
    now = now or timezone.now()
    this_month, _ = month_bounds(now)
    last_month, _ = month_bounds(this_month - timedelta(days=1))
    made = []
    for organization_id in organizations_to_close(month_start=last_month, month_end=this_month):
        account = billing_account_get_or_create(organization=_organization(organization_id))
        invoice = invoice_monthly_create(account=account, month_start=last_month, now=now)
        if invoice is not None:
            made.append(invoice)
    for organization_id in young_accounts_over_threshold(now=now):
        invoice = invoice_threshold_create(account=BillingAccount.objects.get(pk=organization_id), now=now)
        if invoice is not None:
            made.append(invoice)
    return made


def _organization(organization_id: int) -> Organization:
    return Organization.objects.get(pk=organization_id)

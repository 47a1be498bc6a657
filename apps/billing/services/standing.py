"""Payment standing (dunning). A failed payment starts a grace period; when it runs out new
launches are blocked (eligibility reads BillingAccount.standing); later, running instances are
stopped. Paying every overdue invoice restores good standing from any state.

Each change is a compare-and-set on the account's standing plus a BillingEvent row, and each
change is mailed to the organization's owners and billing members after commit. The account row
comes first in the lock order (portal/db.py); stopping instances is one transaction per instance.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import Membership, Role
from apps.instances.models import STOPPABLE_STATES, Instance
from apps.instances.services.actions import instance_stop_request
from portal.db import atomic_retry

from ..live import billing_changed_on_commit
from ..models import BillingAccount, BillingEvent, Invoice, InvoiceStatus, PaymentStanding

logger = logging.getLogger(__name__)
P = PaymentStanding
# Invoices whose payment failed and is not yet made good.
OVERDUE_STATUSES = (InvoiceStatus.PAYMENT_FAILED,)
# Instance states in which something runs, or is about to, on a node the customer pays for.
NOTICE_ROLES = (Role.OWNER, Role.BILLING)


def _grace() -> timedelta:
    return timedelta(seconds=settings.BILLING["PAYMENT_GRACE_S"])


def _suspend_after() -> timedelta:
    return _grace() + timedelta(seconds=settings.BILLING["PAYMENT_SUSPEND_AFTER_S"])


def _when(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def _notice_on_commit(event_id: int) -> None:
    from ..tasks.stripe import billing_notice_send

    transaction.on_commit(lambda: billing_notice_send.delay(event_id))


def _standing_move(
    *, account_id: int, expected: tuple[str, ...], to: str, kind: str, message: str, now: datetime, **fields
) -> BillingEvent | None:
    """Compare-and-set the standing from one of `expected` to `to`, with an event row and a
    notice. None if the account was not in an expected standing (someone moved it first).
    The caller holds a transaction."""
    current = (
        BillingAccount.objects.select_for_update(no_key=True).filter(pk=account_id).values_list("standing", flat=True)
    )
    current = current.first()
    if current is None or current not in expected:
        return None
    moved = BillingAccount.objects.filter(pk=account_id, standing=current).update(
        standing=to, standing_changed_at=now, **fields
    )
    if not moved:
        return None
    event = BillingEvent.objects.create(
        account_id=account_id, kind=kind, message=message[:500], from_standing=current, to_standing=to, created_at=now
    )
    _notice_on_commit(event.pk)
    billing_changed_on_commit(organization_id=account_id)
    return event


@atomic_retry
def account_standing_payment_failed(
    *, account: BillingAccount, invoice: Invoice | None, now: datetime | None = None
) -> None:
    """A payment failed: a GOOD account enters its grace period. An account already past due
    keeps its clock (the first failure counts) and gets an event row for the record."""
    now = now or timezone.now()
    what = f"invoice {invoice.number}" if invoice is not None else "an invoice"
    reason = (invoice.last_error if invoice is not None else "") or "the card was declined"
    deadline = now + _grace()
    moved = _standing_move(
        account_id=account.pk,
        expected=(P.GOOD,),
        to=P.GRACE,
        kind="standing_grace",
        message=(
            f"Payment of {what} failed ({reason}). Update the card and pay by {_when(deadline)}; "
            "after that new launches are blocked."
        ),
        now=now,
        past_due_since=now,
    )
    if moved is None:
        BillingEvent.objects.create(
            account_id=account.pk,
            kind="payment_failed",
            message=f"Payment of {what} failed ({reason}).",
            created_at=now,
        )
    account.refresh_from_db(fields=["standing", "standing_changed_at", "past_due_since"])


def account_overdue_exists(*, account: BillingAccount) -> bool:
    return Invoice.objects.filter(account=account, status__in=OVERDUE_STATUSES).exists()


@atomic_retry
def account_standing_restore(*, account: BillingAccount, now: datetime | None = None) -> None:
    """Back to GOOD once nothing is overdue. Instances stopped during a suspension stay stopped:
    their owners start them again."""
    now = now or timezone.now()
    BillingAccount.objects.select_for_update(no_key=True).filter(pk=account.pk).first()
    if not account_overdue_exists(account=account):
        _standing_move(
            account_id=account.pk,
            expected=(P.GRACE, P.BLOCKED, P.SUSPENDED),
            to=P.GOOD,
            kind="standing_restored",
            message="Payment received: the account is in good standing again and may launch.",
            now=now,
            past_due_since=None,
        )
    account.refresh_from_db(fields=["standing", "standing_changed_at", "past_due_since"])


@atomic_retry
def _account_block(*, account_id: int, now: datetime) -> bool:
    account = BillingAccount.objects.get(pk=account_id)
    stop_at = (account.past_due_since or now) + _suspend_after()
    return (
        _standing_move(
            account_id=account_id,
            expected=(P.GRACE,),
            to=P.BLOCKED,
            kind="standing_blocked",
            message=(
                "Payment is overdue: new launches are blocked. Running instances will be stopped "
                f"on {_when(stop_at)} unless the overdue invoice is paid."
            ),
            now=now,
        )
        is not None
    )


@atomic_retry
def _account_suspend(*, account_id: int, now: datetime) -> bool:
    return (
        _standing_move(
            account_id=account_id,
            expected=(P.GRACE, P.BLOCKED),
            to=P.SUSPENDED,
            kind="standing_suspended",
            message=(
                "Payment is overdue: running instances were stopped. Pay the overdue invoice to restore the account."
            ),
            now=now,
        )
        is not None
    )


def suspended_instances_stop() -> int:
    """Stop whatever still runs (or is about to) in suspended accounts, through the instances
    lifecycle. Repeated on every pass, so an instance that slipped through a race is caught."""
    stopped = 0
    instances = Instance.objects.filter(
        organization__billing_account__standing=P.SUSPENDED, state__in=STOPPABLE_STATES
    ).order_by("created_at", "pk")
    for instance in instances:
        try:
            moved = instance_stop_request(
                instance=instance,
                message="Stopped by billing: payment is overdue and the account is suspended.",
                source="billing",
            )
            stopped += moved is not None
        except Exception:  # noqa: BLE001 - one instance must not keep the others running
            logger.exception("could not stop instance %s of a suspended account", instance.pk)
    return stopped


def account_standings_enforce(*, now: datetime | None = None) -> dict[str, int]:
    """Advance standings by time: GRACE -> BLOCKED after PAYMENT_GRACE_S, -> SUSPENDED after a
    further PAYMENT_SUSPEND_AFTER_S (both counted from the first failure, so a late pass does
    not push the deadlines). Idempotent: a second pass finds nothing to move."""
    now = now or timezone.now()
    counts = {"blocked": 0, "suspended": 0, "stopped": 0}
    for account_id in BillingAccount.objects.filter(standing=P.GRACE, past_due_since__lte=now - _grace()).values_list(
        "pk", flat=True
    ):
        counts["blocked"] += _account_block(account_id=account_id, now=now)
    for account_id in BillingAccount.objects.filter(
        standing__in=(P.GRACE, P.BLOCKED), past_due_since__lte=now - _suspend_after()
    ).values_list("pk", flat=True):
        counts["suspended"] += _account_suspend(account_id=account_id, now=now)
    counts["stopped"] = suspended_instances_stop()
    return counts


def _notice_recipients(account_id: int) -> list[str]:
    return list(
        Membership.objects.filter(organization_id=account_id, role__in=NOTICE_ROLES)
        .order_by("created_at")
        .values_list("user__email", flat=True)
    )


def billing_notice_deliver(*, event_id: int) -> int:
    """Mail a standing change to the organization's owners and billing members; returns how many
    were mailed. At most once per event: a claim is taken first and given back if sending fails."""
    event = BillingEvent.objects.select_related("account__organization").filter(pk=event_id).first()
    if event is None or not event.to_standing:
        return 0
    claim = f"billing-notice-{event.pk}"
    if not cache.add(claim, 1, timeout=30 * 24 * 3600):
        return 0
    organization = event.account.organization
    context = {
        "event": event,
        "organization": organization,
        "standing": PaymentStanding(event.to_standing).label,
        "cards_url": settings.PORTAL_BASE_URL.rstrip("/") + reverse("billing-cards", args=[organization.slug]),
    }
    subject = f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{organization.name}: {context['standing']}"
    body = render_to_string("billing/standing/email/notice.txt", context)
    recipients = _notice_recipients(organization.pk)
    try:
        with get_connection() as connection:
            for email in recipients:
                EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [email], connection=connection).send()
    except Exception:
        cache.delete(claim)
        raise
    return len(recipients)

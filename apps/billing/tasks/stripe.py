"""Billing tasks: Stripe webhooks' retry path, payment standing, notices. Tasks take ids, are
idempotent, and retry only transient errors."""

from __future__ import annotations

from celery import shared_task

from ..services.standing import account_standings_enforce, billing_notice_deliver
from ..services.webhooks import webhook_events_retry


@shared_task(ignore_result=True)
def payment_standing_enforce() -> dict[str, int]:
    """Beat: advance payment standings by time, and give failed or stranded webhook events
    another go (one periodic entry does both, so no second beat entry is needed)."""
    counts = account_standings_enforce()
    counts["webhooks_retried"] = webhook_events_retry()
    return counts


@shared_task(autoretry_for=(ConnectionError, TimeoutError, OSError), retry_backoff=True, max_retries=5)
def billing_notice_send(event_id: int) -> int:
    return billing_notice_deliver(event_id=event_id)

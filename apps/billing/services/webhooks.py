"""Stripe webhook events: verified, stored under their unique Stripe id before anything acts,
then processed exactly once.

Processing runs inline, in the request that delivered the event, right after the event row is
committed: every handler is a few row writes (at most one Stripe read or attach), so Stripe gets
its answer quickly, and an effect is visible as soon as Stripe's delivery returns, without a
worker in the way. Exactly once comes from the event row: processing locks it and does the
handler's writes and the status change in one transaction, so a repeated or concurrent delivery
of the same event waits, then finds it done. A failure rolls the handler's writes back and
marks the event FAILED; it stays stored and `webhook_events_retry` (run by the beat task
payment_standing_enforce) gives it another go, as it does for an event stranded in RECEIVED by
a crash between storing and processing.

Once per event id is not enough: Stripe sends several events about one object (invoice.paid and
invoice.payment_succeeded for one payment; a resent or regenerated event), each under its own
id. So every handler is idempotent per object *state*: it compares the object with what is
already recorded here and does nothing when that state was already taken in (see
stripe_handlers). Events about one Stripe object are processed one at a time (a transaction-level
advisory lock on the object id), so two such events arriving together cannot both find the state
new.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import stripe
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..models import WebhookEvent, WebhookEventStatus
from ..stripe_api import stripe_client
from .stripe_handlers import WEBHOOK_HANDLERS

logger = logging.getLogger(__name__)
W = WebhookEventStatus
DONE = (W.PROCESSED, W.IGNORED)
# A FAILED event is retried this many times in all (about a day at the beat's default pace).
WEBHOOK_MAX_ATTEMPTS = 288
# An event still RECEIVED this long after it arrived lost its processing to a crash.
STRANDED_AFTER = timedelta(minutes=2)
# pg_advisory_xact_lock(key1, key2) namespace for "processing an event about Stripe object
# hashtext(id)" (other namespaces: apps/capacity/services, billing/services/invoicing/push.py).
OBJECT_LOCK = 0x7374_726F


class WebhookRejected(Exception):
    """The delivery is not a genuine Stripe event (bad or missing signature, stale, not JSON)."""


def webhook_event_receive(*, payload: bytes, signature: str | None) -> WebhookEvent:
    """Verify the delivery and store it (INSERT ... ON CONFLICT DO NOTHING on the Stripe id),
    committed before anything acts on it. A repeated delivery returns the stored row."""
    try:
        event = stripe_client().construct_event(
            payload, signature, settings.STRIPE_WEBHOOK_SECRET, settings.STRIPE_WEBHOOK_TOLERANCE_S
        )
        data = json.loads(payload)
    except (stripe.SignatureVerificationError, ValueError) as error:
        raise WebhookRejected(str(error) or "invalid signature") from error
    if not isinstance(data, dict) or not data.get("id") or not data.get("type"):
        raise WebhookRejected("not a Stripe event")
    with transaction.atomic():
        WebhookEvent.objects.bulk_create(
            [
                WebhookEvent(
                    stripe_event_id=event.id,
                    type=str(data["type"])[:100],
                    livemode=bool(data.get("livemode")),
                    payload=data,
                )
            ],
            ignore_conflicts=True,
        )
    return WebhookEvent.objects.get(stripe_event_id=event.id)


def webhook_event_process(*, event_id: int) -> str:
    """Run the event's handler once. Returns the event's status afterwards."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().filter(pk=event_id).first()
        if event is None:
            return ""
        if event.status in DONE:
            return event.status
        handler = WEBHOOK_HANDLERS.get(event.type)
        now = timezone.now()
        if handler is None:
            WebhookEvent.objects.filter(pk=event.pk).update(status=W.IGNORED, processed_at=now)
            return W.IGNORED
        obj = event.payload.get("data", {}).get("object") or {}
        _object_lock(obj)
        try:
            with transaction.atomic():
                handler(obj, event)
        except Exception as error:  # noqa: BLE001 - kept for the retry path, never lost
            logger.warning("webhook event %s (%s) failed", event.stripe_event_id, event.type, exc_info=True)
            WebhookEvent.objects.filter(pk=event.pk).update(
                status=W.FAILED, attempts=F("attempts") + 1, last_error=f"{type(error).__name__}: {error}"[:500]
            )
            return W.FAILED
        WebhookEvent.objects.filter(pk=event.pk).update(
            status=W.PROCESSED, attempts=F("attempts") + 1, last_error="", processed_at=now
        )
        return W.PROCESSED


def _object_lock(obj: dict) -> None:
    """Hold the Stripe object's lock until the transaction ends: another event about the same
    object (under another event id) waits, then sees what this one recorded."""
    object_id = obj.get("id")
    if object_id:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [OBJECT_LOCK, str(object_id)])


def webhook_events_retry(*, now=None, limit: int = 500) -> int:
    """Process failed events (up to WEBHOOK_MAX_ATTEMPTS) and stranded ones again, oldest first.
    Returns how many are done now."""
    now = now or timezone.now()
    pending = (
        WebhookEvent.objects.filter(
            Q(status=W.FAILED, attempts__lt=WEBHOOK_MAX_ATTEMPTS)
            | Q(status=W.RECEIVED, received_at__lte=now - STRANDED_AFTER)
        )
        .order_by("received_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(webhook_event_process(event_id=event_id) in DONE for event_id in list(pending))

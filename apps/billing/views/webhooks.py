"""Stripe's webhook endpoint. No session, no CSRF token: the Stripe-Signature header is the proof."""

from __future__ import annotations

from django.http import HttpResponseBadRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ..services.webhooks import WebhookRejected, webhook_event_process, webhook_event_receive


@csrf_exempt
@require_POST
def stripe_webhook(request):
    try:
        event = webhook_event_receive(payload=request.body, signature=request.headers.get("Stripe-Signature"))
    except WebhookRejected as rejected:
        return HttpResponseBadRequest(f"Webhook refused: {rejected}", content_type="text/plain")
    # Once stored, the event is ours to finish (retry path included): Stripe gets 200 either way.
    status = webhook_event_process(event_id=event.pk)
    return JsonResponse({"received": event.stripe_event_id, "status": status})

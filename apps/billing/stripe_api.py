"""The one place that builds a Stripe client. Every billing call to Stripe goes through
`stripe_client()`, so the keys, the API base (localstripe in development and tests) and the
network retry policy are set once."""

from __future__ import annotations

from functools import lru_cache

import stripe
from django.conf import settings

# Errors worth retrying later with the same idempotency key: Stripe was unreachable, timed out,
# rate-limited us, or failed on its side. Everything else (a declined card, a bad request) is an
# answer, and retrying it would only repeat it.
STRIPE_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    stripe.APIConnectionError,
    stripe.RateLimitError,
    stripe.APIError,
)


@lru_cache(maxsize=4)
def _client(api_key: str, api_base: str, retries: int) -> stripe.StripeClient:
    base = {"api": api_base} if api_base else None
    return stripe.StripeClient(api_key, base_addresses=base, max_network_retries=retries)


def stripe_client() -> stripe.StripeClient:
    return _client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_MAX_NETWORK_RETRIES)

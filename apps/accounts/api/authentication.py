"""API key authentication, with a bound on failed attempts.

A key's secret is 256 random bits, so limits are not what keeps keys safe; they bound the load
and noise of a client that keeps sending bad keys. Failures are counted in the cache (Redis,
shared by every web process) in fixed windows, per client address and per key prefix; a valid
key is never counted and never waits.

- An address over its budget is answered 429 with Retry-After before its key is even looked up.
- A prefix over its budget answers 429 only to wrong secrets: the key is checked first, so
  someone hammering a leaked prefix cannot lock its owner out.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from portal.validators import forbidden_character_find

from ..services import API_KEY_TOKEN_PREFIX, api_key_authenticate

TOO_MANY = "Too many failed API key attempts; try again later."


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer nck_<prefix>_<secret>`. The request acts for the key's organization
    with the key's role; request.user is the key's creator, for audit."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme != self.keyword:
            return None
        token = token.strip()
        address = _Failures("address", request.META.get("REMOTE_ADDR") or "unknown")
        address.refuse_if_over(settings.API_KEY_FAILURES_PER_ADDRESS)
        # A NUL in the token would reach the prefix lookup, which PostgreSQL refuses with an error.
        api_key = None if forbidden_character_find(token) else api_key_authenticate(token=token)
        if api_key is not None:
            return api_key.created_by, api_key
        address.count()
        prefix = _token_prefix(token)
        if prefix is not None:
            failures = _Failures("prefix", prefix)
            failures.count()
            failures.refuse_if_over(settings.API_KEY_FAILURES_PER_PREFIX)
        raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")

    def authenticate_header(self, request) -> str:
        return self.keyword


def _token_prefix(token: str) -> str | None:
    parts = token.split("_", 2)
    return parts[1] if len(parts) == 3 and parts[0] == API_KEY_TOKEN_PREFIX and parts[1] else None


class _Failures:
    """Failed attempts of one address or prefix in the current fixed window."""

    def __init__(self, kind: str, value: str):
        self.window = max(1, settings.API_KEY_FAILURE_WINDOW_S)
        now = time.time()
        self.retry_after = max(1, int(self.window - now % self.window) + 1)
        # Hashed: the value comes from the request and may be anything.
        digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]
        self.key = f"api-key-failures:{kind}:{digest}:{int(now // self.window)}"

    def count(self) -> None:
        cache.add(self.key, 0, timeout=self.window + 1)
        try:
            cache.incr(self.key)
        except ValueError:  # expired between add and incr: this failure opens the next window
            cache.add(self.key, 1, timeout=self.window + 1)

    def refuse_if_over(self, limit: int) -> None:
        if (cache.get(self.key) or 0) >= limit:
            raise exceptions.Throttled(wait=self.retry_after, detail=TOO_MANY)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "nck_<prefix>_<secret>"}

"""Live pages: a saved change is announced to a Channels group; each subscribed socket re-renders
the same partial template its page rendered on load, for its own user, and pushes it.

A page never misses a change, and never has an identical partial pushed over it:

- Every rendered partial carries its version, `data-live-version` on its root element: a
  fingerprint of its content rendered with a fixed placeholder in place of the CSRF token (the
  token is masked afresh on every render, so it must not count). The page computes it with the
  `{% live_partial %}` tag (portal/ui/templatetags/live_partials.py), a socket with
  `live_versioned`, both here, so the two agree byte for byte.
- static/js/live.js opens (and, after a network blip, re-opens) the page's socket with `?v=` set
  to the version the page shows at that moment, pushed ones included.
- On connect the consumer renders the partial and sends it only when its version differs from
  the announced one; afterwards it sends a re-render only when its version differs from the last
  one this socket sent. So a change made between render and subscription, or while the socket
  was down, reaches the page; a form being filled in a partial that did not change is left alone.

Rendering per socket (not once per group) keeps role-dependent parts of a partial, such as an
admin's buttons, correct for every viewer, and guarantees a reload and a push never disagree.
Time-derived text in a partial (a running cost, a heartbeat's age) is content too: a page whose
such text moved is sent the partial on connect. Those partials hold no input fields.
"""

from __future__ import annotations

import hashlib
import logging
import re

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, QueryDict
from django.middleware.csrf import get_token
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

REFRESH_EVENT = "partial.refresh"
VERSION_ATTR = "data-live-version"
VERSION_PARAM = "v"
# Rendered where the CSRF token goes, so the fingerprint does not change with the masked token;
# swapped for this browser's real token before the HTML leaves. Letters only: it is the same
# once escaped.
CSRF_PLACEHOLDER = "LIVECSRFPLACEHOLDERTOKEN"
# The partial's root element: its name and attributes, up to (not including) its closing '>'.
_FIRST_TAG = re.compile(r"""<[A-Za-z][A-Za-z0-9-]*(?:\s+[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?)*""")


def live_notify(*, group: str) -> None:
    """Tell every socket of `group` to re-render. A Redis hiccup never fails the caller's write."""
    try:
        async_to_sync(get_channel_layer().group_send)(group, {"type": REFRESH_EVENT})
    except Exception:  # noqa: BLE001 - the change is saved; the page catches up on reload
        logger.warning("live notify to %s failed", group, exc_info=True)


def live_notify_on_commit(*, group: str) -> None:
    transaction.on_commit(lambda: live_notify(group=group))


def live_fingerprint(html: str) -> str:
    """The version of a partial rendered with CSRF_PLACEHOLDER as its token."""
    return hashlib.sha256(html.encode()).hexdigest()[:16]


def live_versioned(html: str, *, csrf_token: str) -> tuple[str, str]:
    """Take a partial rendered with CSRF_PLACEHOLDER; return it with its version on its root
    element and `csrf_token` in place of the placeholder, and the version."""
    version = live_fingerprint(html)
    tagged = _FIRST_TAG.sub(lambda tag: f'{tag.group(0)} {VERSION_ATTR}="{version}"', html, count=1)
    return tagged.replace(CSRF_PLACEHOLDER, csrf_token), version


class LivePartialConsumer(AsyncWebsocketConsumer):
    """Base consumer. Subclasses say who may subscribe to what, and how to render the partial;
    the version check on (re)connect and the skipping of identical pushes are done here."""

    def authorize(self) -> list[str] | None:
        """Return the groups to join, or None to refuse the socket. Runs in a thread (ORM allowed)."""
        raise NotImplementedError

    def render(self) -> str:
        """Render the partial for this socket's user, with `render_partial` (or any plain HTML
        whose first element is the partial's root). Runs in a thread (ORM allowed)."""
        raise NotImplementedError

    def render_partial(self, template: str, context: dict) -> str:
        """Render `template` as the page did. The CSRF placeholder is swapped for a token of this
        browser once the version is taken, so forms inside a pushed partial still post (a push
        has no request to take one from)."""
        return render_to_string(template, {**context, "csrf_token": CSRF_PLACEHOLDER})

    def version(self) -> str:
        """What the partial shows now: the version a page showing the same renders. Runs in a
        thread (ORM allowed)."""
        return live_fingerprint(self.render())

    def page_query(self) -> QueryDict:
        """The socket's query string without the announced version (e.g. a page's filters)."""
        query = QueryDict(self.scope.get("query_string", b"").decode("latin-1"), mutable=True)
        query.pop(VERSION_PARAM, None)
        return query

    def _render_versioned(self) -> tuple[str, str]:
        return live_versioned(self.render(), csrf_token=self._csrf_token() or "")

    def _csrf_token(self) -> str | None:
        secret = self.scope.get("cookies", {}).get(settings.CSRF_COOKIE_NAME)
        if not secret:
            return None
        request = HttpRequest()
        request.META["CSRF_COOKIE"] = secret
        return get_token(request)  # masked afresh, as the page itself does on every render

    async def connect(self) -> None:
        groups = await database_sync_to_async(self.authorize)()
        if not groups:
            await self.close(code=4403)
            return
        self.live_groups = groups
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # The version the page shows (live.js sends it; none from a page that has no script, or
        # that shows a form's errors, which a push must not replace on connect). Compared after
        # joining the groups, so no change falls between the check and the push.
        self.shown_version = QueryDict(self.scope.get("query_string", b"").decode("latin-1")).get(VERSION_PARAM)
        if self.shown_version is not None:
            await self._push()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "live_groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def partial_refresh(self, event: dict) -> None:
        await self._push()

    async def _push(self) -> None:
        # Channels hands a consumer one message at a time, so shown_version is what the page
        # shows once it has read every message sent before this one.
        html, version = await database_sync_to_async(self._render_versioned)()
        if version == getattr(self, "shown_version", None):
            return
        self.shown_version = version
        await self.send(text_data=html)

"""Live pages: a saved change is announced to a Channels group; each subscribed socket re-renders
the same partial template its page rendered on load, for its own user, and pushes it. A page that
says which version of the partial it shows gets the partial on connect too when that is no longer
the current one (`LivePartialConsumer.version`).

Rendering per socket (not once per group) keeps role-dependent parts of a partial, such as an
admin's buttons, correct for every viewer, and guarantees a reload and a push never disagree.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

REFRESH_EVENT = "partial.refresh"


def live_notify(*, group: str) -> None:
    """Tell every socket of `group` to re-render. A Redis hiccup never fails the caller's write."""
    try:
        async_to_sync(get_channel_layer().group_send)(group, {"type": REFRESH_EVENT})
    except Exception:  # noqa: BLE001 - the change is saved; the page catches up on reload
        logger.warning("live notify to %s failed", group, exc_info=True)


def live_notify_on_commit(*, group: str) -> None:
    transaction.on_commit(lambda: live_notify(group=group))


class LivePartialConsumer(AsyncWebsocketConsumer):
    """Base consumer. Subclasses say who may subscribe to what, and how to render the partial."""

    def authorize(self) -> list[str] | None:
        """Return the groups to join, or None to refuse the socket. Runs in a thread (ORM allowed)."""
        raise NotImplementedError

    def render(self) -> str:
        """Render the partial for this socket's user. Runs in a thread (ORM allowed)."""
        raise NotImplementedError

    def version(self) -> str | None:
        """What the partial shows now, as a short string the page also put in its socket's URL
        (`?v=`), or None. A page with a version is sent the partial on connect when the two
        differ: a change saved between the page's render and its subscription (or during a
        reconnect) would otherwise never reach it. Without one nothing is pushed on connect, so
        a form the user is filling in inside a partial is never replaced by an identical one.
        Runs in a thread (ORM allowed)."""
        return None

    def render_partial(self, template: str, context: dict) -> str:
        """Render `template` as the page did, with a CSRF token for this browser so that forms
        inside a pushed partial still post (a push has no request to take one from)."""
        return render_to_string(template, {**context, "csrf_token": self._csrf_token()})

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
        # Compared after joining the groups, so no change falls between the check and the push.
        shown = parse_qs(self.scope.get("query_string", b"").decode()).get("v", [None])[0]
        if shown is not None:
            current = await database_sync_to_async(self.version)()
            if current is not None and current != shown:
                await self.partial_refresh({"type": REFRESH_EVENT})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "live_groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def partial_refresh(self, event: dict) -> None:
        html = await database_sync_to_async(self.render)()
        await self.send(text_data=html)

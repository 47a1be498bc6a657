"""Live pages as a browser with static/js/live.js sees them: the socket a page asks for, with the
version of the partial it shows, and the consumer that answers that socket."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from django.test import Client

from portal.routing import websocket_urlpatterns


@dataclass
class LivePage:
    socket_path: str  # the ws-connect address, as the page wrote it
    version: str | None  # data-live-version of the partial, None when the page announces none

    def announce(self, version: str | None = "") -> str:
        """The address live.js opens: the page's own version, or `version` when given."""
        shown = self.version if version == "" else version
        if shown is None:
            return self.socket_path
        glue = "&" if "?" in self.socket_path else "?"
        return f"{self.socket_path}{glue}{urlencode({'v': shown})}"


def live_page_read(client: Client, url: str) -> LivePage:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    text = response.content.decode()
    socket = re.search(r'ws-connect="([^"]+)"', text)
    assert socket, f"{url} has no live socket"
    version = re.search(r'data-live-version="([^"]+)"', text)
    return LivePage(socket_path=html.unescape(socket.group(1)), version=version and version.group(1))


def consumer_for(socket_path: str, *, user, cookies: dict | None = None):
    """The consumer instance that answers `socket_path` for `user`, its scope filled as the ASGI
    stack fills it (route kwargs converted, query string as sent), past its access check."""
    parts = urlsplit(socket_path)
    for pattern in websocket_urlpatterns:
        match = pattern.resolve(parts.path.lstrip("/"))
        if match:
            consumer = match.func.consumer_class()
            consumer.scope = {
                "type": "websocket",
                "path": parts.path,
                "query_string": parts.query.encode(),
                "user": user,
                "cookies": cookies or {},
                "url_route": {"args": match.args, "kwargs": match.kwargs},
            }
            assert consumer.authorize(), f"{user} may not listen to {socket_path}"  # as on connect
            return consumer
    raise AssertionError(f"no consumer for {socket_path}")

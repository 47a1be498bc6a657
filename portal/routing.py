"""Websocket URLs of every app, gathered in one list for the ASGI router."""

from apps.accounts.routing import websocket_urlpatterns as accounts_ws

websocket_urlpatterns = [*accounts_ws]

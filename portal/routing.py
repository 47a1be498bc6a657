"""Websocket URLs of every app, gathered in one list for the ASGI router."""

from apps.accounts.routing import websocket_urlpatterns as accounts_ws
from apps.billing.routing import websocket_urlpatterns as billing_ws
from apps.capacity.routing import websocket_urlpatterns as capacity_ws
from apps.instances.routing import websocket_urlpatterns as instances_ws

websocket_urlpatterns = [*accounts_ws, *capacity_ws, *instances_ws, *billing_ws]

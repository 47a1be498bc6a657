from django.urls import path

from .consumers import InventoryConsumer, NodeConsumer
from .consumers_reservations import ReservationsConsumer

websocket_urlpatterns = [
    path("ws/ops/inventory/", InventoryConsumer.as_asgi()),
    path("ws/ops/nodes/<uuid:node_id>/", NodeConsumer.as_asgi()),
    path("ws/orgs/<slug:slug>/reservations/", ReservationsConsumer.as_asgi()),
]

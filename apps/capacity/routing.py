from django.urls import path

from .consumers import InventoryConsumer, NodeConsumer

websocket_urlpatterns = [
    path("ws/ops/inventory/", InventoryConsumer.as_asgi()),
    path("ws/ops/nodes/<uuid:node_id>/", NodeConsumer.as_asgi()),
]

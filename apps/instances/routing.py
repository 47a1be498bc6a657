from django.urls import path

from .consumers import InstanceDetailConsumer, InstanceListConsumer

websocket_urlpatterns = [
    path("ws/orgs/<slug:slug>/instances/", InstanceListConsumer.as_asgi()),
    path("ws/orgs/<slug:slug>/instances/<uuid:instance_id>/", InstanceDetailConsumer.as_asgi()),
]

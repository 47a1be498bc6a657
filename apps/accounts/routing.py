from django.urls import path

from .consumers import MembersConsumer

websocket_urlpatterns = [
    path("ws/orgs/<slug:slug>/members/", MembersConsumer.as_asgi()),
]

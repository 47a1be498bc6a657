from django.urls import path

from . import views, views_reservations

app_name = "capacity"

urlpatterns = [
    path("", views.inventory_page, name="inventory"),
    path("nodes/<uuid:node_id>/", views.node_page, name="node-detail"),
    path("nodes/<uuid:node_id>/<slug:action>/", views.node_action_view, name="node-action"),
    path("tokens/", views.registration_tokens_page, name="registration-tokens"),
    path("reservations/", views_reservations.ops_reservations_page, name="reservations"),
]

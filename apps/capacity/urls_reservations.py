"""Customers' reservation pages (the capacity calendar of their organization); the operators'
view is under /ops/ (urls.py)."""

from django.urls import path

from . import views_reservations as views

app_name = "capacity-reservations"

urlpatterns = [
    path("orgs/<slug:slug>/reservations/", views.reservations_page, name="list"),
    path("orgs/<slug:slug>/reservations/<uuid:reservation_id>/cancel/", views.reservation_cancel_view, name="cancel"),
]

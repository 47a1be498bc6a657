"""Chargeback pages of one organization: the report (summary, daily chart, groups; ?format=csv
downloads its rows) and the idle holders."""

from django.urls import path

from . import views

urlpatterns = [
    path("orgs/<slug:slug>/chargeback/", views.chargeback_page, name="chargeback"),
    path("orgs/<slug:slug>/chargeback/export.csv", views.chargeback_csv, name="chargeback-csv"),
    path("orgs/<slug:slug>/chargeback/idle/", views.idle_page, name="chargeback-idle"),
]
